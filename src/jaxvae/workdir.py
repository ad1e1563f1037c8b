"""The run directory's config, run info and logs, and the checks that protect it.

The file names are :mod:`jaxvae.layout`'s; a workdir may be a URL (``gs://bucket/path``), its
files read and written through :mod:`jaxvae.storage`. Nothing here overwrites a run with a
different configuration, or resumes a run directory of another format.

A run's logs (:class:`RunLog`): ``metrics.jsonl``, TensorBoard's event files and the experiment
trackers the run asks for (:mod:`jaxvae.trackers`), written together. Training lines are the step
metrics averaged over the steps since the previous line. A run stopped inside a log interval (a
stop request saves a checkpoint there) writes the sums so far beside the checkpoint
(``layout.CARRIED_SUMS``); the resumed run continues them, so the line at the end of that interval
averages every step of it, as the uninterrupted run's does, bit for bit.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import numpy as np

from jaxvae import config as config_lib
from jaxvae import io, layout, specs, storage, summary, tensorboard, trackers
from jaxvae.layout import CONFIG, METRICS, RUN_INFO, SUMMARY  # noqa: F401 (re-exported)

# Keys that change neither what a run computes nor the files it writes, the experiment trackers
# (section ``logging``) among them: a finished run differing only in them is left alone (a tracker
# turned on after the end is sent nothing).
_PRESENTATION = ("train.progress", "train.max_dispatch_s")
_PRESENTATION += tuple(f"logging.{name}" for name in specs.fields(specs.LoggingSpec))
# Keys that may differ when a run is continued: how long it trains and how it reports.
RESUMABLE_CHANGES = (*_PRESENTATION, "train.epochs", "eval.iwae_k", "eval.iwae_num_examples")


def ensure_writable(workdir: str) -> None:
    """Creates ``workdir`` if needed and checks that files can be written in it (for a URL: an
    object is written and removed, which also checks the bucket and the credentials)."""
    try:
        storage.makedirs(workdir)
        probe = layout.path(workdir, f".write-check-{secrets.token_hex(4)}")
        io.write_atomic(probe, b"")
        storage.remove(probe)
    except OSError as e:
        raise ValueError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None


def check_compatible(workdir: str, config: Any) -> bool:
    """Whether ``workdir`` already holds a run; raises ``ValueError`` if its config differs.

    Returns:
      ``True`` when ``workdir`` holds a run of this config (to be resumed), ``False`` when it holds
      none. ``config``: the run's config as a dict (or a ConfigDict).
    """
    path = layout.path(workdir, CONFIG)
    if not storage.exists(path):
        return False
    info = read_run_info(workdir) if storage.exists(layout.path(workdir, RUN_INFO)) else {}
    saved_dict, new_dict = _read(path), _plain(config)
    saved, new = io.flatten(saved_dict), io.flatten(new_dict)
    differ = config_lib.config_differences(saved_dict, new_dict)
    differ = [k for k in differ if k not in RESUMABLE_CHANGES]
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in differ[:4])
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise ValueError(
            f"workdir {workdir!r} holds a run with a different config ({shown}{more}); "
            "use a new --workdir"
        )
    check_epochs(workdir, new_dict["train"], info)
    check_schedule(saved_dict, new_dict)
    return True


def _read(path: str) -> Any:
    """A JSON file of the run; a damaged one is named with its path, and another workdir asked
    for."""
    try:
        return io.read_json(path)
    except ValueError as e:
        raise ValueError(f"{e}; use another --workdir") from None


def _plain(config: Any) -> dict[str, Any]:
    """A config as plain JSON data (from a ConfigDict or a dict)."""
    return json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else config))


def check_schedule(saved: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuses a change of ``train.epochs`` for a learning-rate schedule stretched over the
    run's length (:data:`jaxvae.specs.LENGTH_DEPENDENT`): the continued run's learning rate would
    differ from the one it trained with, silently.

    Raises:
      ValueError: naming ``train.epochs`` and ``train.lr_schedule``.
    """
    before, after = saved["train"]["epochs"], new["train"]["epochs"]
    schedule = new["train"].get("lr_schedule", "constant")
    if before != after and schedule in specs.LENGTH_DEPENDENT:
        raise ValueError(
            f"train.epochs={after} differs from the run's {before}, but train.lr_schedule="
            f"{schedule!r} spans train.epochs: the learning rate of every later step would "
            f"change; keep --config.train.epochs={before} or use a new --workdir"
        )


def trained_steps(workdir: str) -> int:
    """The step of the newest checkpoint in ``workdir`` (0 without one)."""
    from jaxvae import checkpoint  # Orbax: imported only when a run directory is examined

    return max(checkpoint.steps(workdir), default=0)


def check_epochs(workdir: str, train: dict[str, Any], info: dict[str, Any]) -> None:
    """Refuses to continue the run in ``workdir`` (whose run.json is ``info``) with fewer epochs
    than it has trained.

    More epochs than before continue the run; as many as it has trained finish it.

    Raises:
      ValueError: ``train["epochs"]`` is fewer than the epochs of the newest checkpoint.
    """
    steps = trained_steps(workdir)
    per_epoch = int(info.get("num_train", 0)) // train["batch_size"]
    if not steps or per_epoch < 1 or train["epochs"] * per_epoch >= steps:
        return
    epochs = -(-steps // per_epoch)
    raise ValueError(
        f"workdir {workdir!r} holds a run trained for {steps} steps ({steps / per_epoch:g} "
        f"epochs of {per_epoch} steps); train.epochs={train['epochs']} is fewer: pass "
        f"--config.train.epochs={epochs} or more to continue it, or use a new --workdir"
    )


def finished_summary(workdir: str, config: Any) -> dict[str, Any] | None:
    """The summary of the run in ``workdir`` when it has finished with ``config`` (its
    summary.json is of its newest checkpoint, for ``config.train.epochs``, and the config is
    config.json's up to how it reports progress): the run is then to be left alone. ``None``
    otherwise: no run, or one to start, resume or continue, or one that
    :func:`check_compatible` refuses (called later, once the config and the data are known to be
    good, so that their errors come first).
    """
    paths = [layout.path(workdir, name) for name in (SUMMARY, CONFIG, RUN_INFO)]
    try:
        summary, saved, info = (io.read_json(p) for p in paths)
        check_format(workdir, info)
    except (OSError, ValueError):  # a missing file, or a damaged one
        return None
    new = _plain(config)
    ignored = (*_PRESENTATION, "train.epochs")
    differ = [k for k in config_lib.config_differences(saved, new) if k not in ignored]
    steps = summary.get("trained_steps", summary.get("steps"))
    if differ or summary.get("epochs") != new["train"]["epochs"] or steps != trained_steps(workdir):
        return None
    return summary


def write_run_info(workdir: str, info: dict[str, Any]) -> None:
    """Records what the config alone does not say (image shape, classes, dataset), with the
    run directory's format."""
    io.write_json(layout.path(workdir, RUN_INFO), {"format": layout.RUN_FORMAT} | dict(info))


def read_run_info(workdir: str) -> dict[str, Any]:
    """``run.json`` of ``workdir``; refuses a run directory of another format."""
    path = layout.path(workdir, RUN_INFO)
    if not storage.exists(path):
        raise ValueError(f"workdir {workdir!r} holds no run ({RUN_INFO} is missing)")
    info = _read(path)
    check_format(workdir, info)
    return info


def check_format(workdir: str, info: dict[str, Any]) -> None:
    found = info.get("format", 1)
    if found != layout.RUN_FORMAT:
        raise ValueError(
            f"workdir {workdir!r} holds a run of format {found} (this jaxvae reads format "
            f"{layout.RUN_FORMAT}: its checkpoints hold a different train state); "
            "use a new --workdir, or the jaxvae version that wrote it"
        )


def read_config(workdir: str) -> Any:
    path = layout.path(workdir, CONFIG)
    if not storage.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} does not exist")
    if not storage.exists(path):
        raise ValueError(f"workdir {workdir!r} holds no run ({CONFIG} is missing)")
    return config_lib.from_json(storage.read_text(path))


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl``; on resume, drops lines past the restored step.

    Each line reaches the file at once; in a workdir on an object store, at :meth:`flush`
    (:class:`jaxvae.storage.Appender`), which the run calls before each checkpoint.
    """

    def __init__(self, workdir: str, *, resume_step: int | None, enabled: bool = True):
        self.path = layout.path(workdir, METRICS)
        self._out = None
        if not enabled:
            return
        if resume_step is not None and storage.exists(self.path):
            # A line torn by a kill during the write is left out: its step is past the checkpoint.
            records = io.read_jsonl(self.path)
            io.write_jsonl(self.path, [r for r in records if r.get("step", 0) <= resume_step])
        self._out = storage.Appender(self.path, fresh=resume_step is None)

    def write(self, record: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.write((json.dumps(record, sort_keys=True) + "\n").encode())
            self._out.flush()

    def flush(self) -> None:
        """Makes every line written so far durable (on an object store: written)."""
        if self._out is not None:
            self._out.flush(sync=True)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()  # a second close does nothing


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
        logging: specs.LoggingSpec | None = None,
    ):
        self.workdir, self.enabled = workdir, enabled
        self.metrics = MetricsLog(workdir, resume_step=resume_step, enabled=enabled)
        self.events = tensorboard.EventLog(workdir, resume_step=resume_step, enabled=enabled)
        self.events.config(config)
        self.carried = _read_carried(workdir, resume_step)
        spec = (logging or specs.LoggingSpec()) if enabled else None  # process 0 sends
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
