"""A run's logs: ``metrics.jsonl`` and TensorBoard's event files, written together, and the
running metric sums of an interrupted log interval.

Training lines are the step metrics averaged over the steps since the previous line. A run
stopped inside a log interval (a stop request saves a checkpoint there) writes the sums so far
beside the checkpoint (``layout.CARRIED_SUMS``); the resumed run continues them, so the line at
the end of that interval averages every step of it, as the uninterrupted run's does, bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvae import io, layout, storage, tensorboard
from jaxvae import workdir as workdir_lib


class RunLog:
    """``metrics.jsonl`` and TensorBoard events of one run (written by process 0 only).

    Args:
      workdir: the run directory.
      resume_step: the checkpoint step a resumed run starts from (later lines are dropped), or
        ``None`` for a new run (earlier logs are removed).
      enabled: whether this process writes.
      config: the run's config as a plain dict (TensorBoard's text and hparams).
    """

    def __init__(self, workdir: str, *, resume_step: int | None, enabled: bool, config: dict):
        self.workdir, self.enabled = workdir, enabled
        self.metrics = workdir_lib.MetricsLog(workdir, resume_step=resume_step, enabled=enabled)
        self.events = tensorboard.EventLog(workdir, resume_step=resume_step, enabled=enabled)
        self.events.config(config)
        self.carried = _read_carried(workdir, resume_step)

    def write(self, record: dict[str, Any]) -> None:
        """One line (``step`` and figures) in both logs."""
        self.metrics.write(record)
        self.events.record(record)

    def training(self, step: int, epoch: float, n: int, sums: dict, images_per_sec: float):
        """The training line at ``step``: the metric ``sums`` of its last ``n`` steps, averaged
        (``skipped`` summed). Returns the record."""
        record = {k: float(v) / n for k, v in sums.items() if k != "skipped"}
        record |= {
            "step": step,
            "epoch": epoch,
            "skipped": int(sums["skipped"]),
            "images_per_sec": images_per_sec,
        }
        self.write(record)
        return record

    def carry(self, step: int, since: int, sums: dict) -> None:
        """Saves the running ``sums`` of the steps ``since .. step`` (a stop inside a log
        interval), for :attr:`carried` of the run resumed from ``step``."""
        if self.enabled:
            d = {
                "step": step,
                "since": since,
                "sums": {k: np.asarray(v).tolist() for k, v in sums.items()},
            }
            io.write_json(layout.path(self.workdir, layout.CARRIED_SUMS), d)

    def flush(self) -> None:
        """Both logs, durable up to here (called before each checkpoint is saved, so that a
        resumed run finds every line up to its checkpoint, in a workdir on an object store too)."""
        self.metrics.flush()
        self.events.flush()

    def close(self) -> None:
        self.metrics.close()
        self.events.close()


def _read_carried(workdir: str, resume_step: int | None) -> tuple[int, dict] | None:
    """``(since, sums)`` saved at ``resume_step`` by :meth:`RunLog.carry`, or ``None``."""
    path = layout.path(workdir, layout.CARRIED_SUMS)
    if resume_step is None or not storage.exists(path):
        return None
    d = io.read_json(path)
    if d.get("step") != resume_step:
        return None  # saved at another checkpoint: the resumed interval starts afresh
    return int(d["since"]), {k: np.asarray(v, np.float32) for k, v in d["sums"].items()}
