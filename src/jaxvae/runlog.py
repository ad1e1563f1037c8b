"""A run's logs: ``metrics.jsonl``, TensorBoard's event files and the experiment trackers the run
asks for (:mod:`jaxvae.trackers`), written together, and the running metric sums of an
interrupted log interval.

Training lines are the step metrics averaged over the steps since the previous line. A run
stopped inside a log interval (a stop request saves a checkpoint there) writes the sums so far
beside the checkpoint (``layout.CARRIED_SUMS``); the resumed run continues them, so the line at
the end of that interval averages every step of it, as the uninterrupted run's does, bit for bit.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxvae import io, layout, storage, summary, tensorboard, trackers
from jaxvae import workdir as workdir_lib
from jaxvae.specs import LoggingSpec


class RunLog:
    """``metrics.jsonl``, TensorBoard events and trackers of one run (process 0 only).

    Args:
      resume_step: the checkpoint step a resumed run starts from (later lines are dropped), or
        ``None`` for a new run (earlier logs are removed).
      config: the run's config as a plain dict (TensorBoard's text and hparams, the trackers'
        params).
      logging: the experiment trackers to send the lines and pictures to (none by default).
    """

    def __init__(
        self,
        workdir: str,
        *,
        resume_step: int | None,
        enabled: bool,
        config: dict,
        logging: LoggingSpec | None = None,
    ):
        self.workdir, self.enabled = workdir, enabled
        self.metrics = workdir_lib.MetricsLog(workdir, resume_step=resume_step, enabled=enabled)
        self.events = tensorboard.EventLog(workdir, resume_step=resume_step, enabled=enabled)
        self.events.config(config)
        self.carried = _read_carried(workdir, resume_step)
        spec = (logging or LoggingSpec()) if enabled else None  # process 0 sends
        try:
            self.trackers = trackers.Trackers(spec, workdir, resume_step=resume_step, config=config)
        except BaseException:
            self.metrics.close()
            self.events.close()
            raise

    def write(self, record: dict[str, Any]) -> None:
        """One line (``step`` and figures) in every log."""
        self.metrics.write(record)
        self.events.record(record)
        self.trackers.metrics(record)

    def pictures(self, step: int, paths: list[str]) -> None:
        """The run's PNG files, drawn from the state of ``step``: TensorBoard images and the
        trackers' pictures."""
        if self.enabled:
            pngs = {os.path.basename(p)[:-4]: summary.png(p) for p in paths}
            self.events.images(step, pngs)
            self.trackers.pictures(step, paths)

    def training(self, step: int, epoch: float, n: int, sums: dict, images_per_sec: float):
        """The training line at ``step``: the metric ``sums`` of its last ``n`` steps, averaged
        (``skipped`` summed). Returns the record."""
        record = {k: float(v) / n for k, v in sums.items() if k != "skipped"}
        record |= {"step": step, "epoch": epoch, "skipped": int(sums["skipped"])}
        record["images_per_sec"] = images_per_sec
        self.write(record)
        return record

    def carry(self, step: int, since: int, sums: dict) -> None:
        """Saves the running ``sums`` of the steps ``since .. step`` (a stop inside a log
        interval), for :attr:`carried` of the run resumed from ``step``."""
        if self.enabled:
            d = {"step": step, "since": since}
            d["sums"] = {k: np.asarray(v).tolist() for k, v in sums.items()}
            io.write_json(layout.path(self.workdir, layout.CARRIED_SUMS), d)

    def flush(self) -> None:
        """Both logs, durable up to here (called before each checkpoint is saved, so that a
        resumed run finds every line up to its checkpoint, in a workdir on an object store too)."""
        self.metrics.flush()
        self.events.flush()

    def close(self) -> None:
        """Closes metrics.jsonl and the event file and ends the tracked runs (closing twice is
        harmless)."""
        self.metrics.close()
        self.events.close()
        self.trackers.close()


def _read_carried(workdir: str, resume_step: int | None) -> tuple[int, dict] | None:
    """``(since, sums)`` saved at ``resume_step`` by :meth:`RunLog.carry`, or ``None``."""
    path = layout.path(workdir, layout.CARRIED_SUMS)
    if resume_step is None or not storage.exists(path):
        return None
    d = io.read_json(path)
    if d.get("step") != resume_step:
        return None  # saved at another checkpoint: the resumed interval starts afresh
    return int(d["since"]), {k: np.asarray(v, np.float32) for k, v in d["sums"].items()}
