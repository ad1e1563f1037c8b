"""Experiment trackers: a run's config, metrics lines and pictures, sent to Weights & Biases or
MLflow as well as to metrics.jsonl and TensorBoard.

A tracker is one module of this package that registers a class under the name of its switch in
the config section ``logging`` (``logging.wandb``, ``logging.mlflow``; its own options are
``logging.<name>_*``)::

    @trackers.register("name")
    class Name:
        def __init__(self, spec: LoggingSpec, *, name: str, run_id: str | None): ...
            # starts a tracked run called ``name``, or continues the one of ``run_id``
        run_id: str
        def log_params(self, params: dict[str, Any]) -> None: ...  # the flattened config
        def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
        def log_image(self, step: int, path: str) -> None: ...  # a PNG file of the run
        def close(self) -> None: ...

It imports its client library in ``__init__`` (through :func:`require`), so a run that asks for
no tracker never imports one. :class:`Trackers` is what :class:`jaxvae.workdir.RunLog` holds: the
trackers a run asks for, fed from the one place that writes metrics lines and pictures (process 0
only, as RunLog).

A resumed run continues the same tracked runs, and sends nothing twice. ``trackers.json`` in the
run directory records, per tracker, its run id and what it has been sent: the step of the newest
line sent and the keys sent at that step. Only what is newer is sent: lines of later steps, and
keys of that step not yet sent. A resumed run writes no line at or below its checkpoint's step,
and after a stop inside a log interval the line at the interval's end is of a later step (it
averages the carried sums and the new steps, once). After a kill, the lines past the last
checkpoint are computed again (the same values but the timing); the tracked run keeps those it
was first sent. A tracker first asked for when a run resumes starts its tracked run with the
lines metrics.jsonl already holds; a new run in the directory starts new tracked runs.

What a command computes on a trained run (``jaxvae eval``'s figures, the pictures of ``jaxvae
sample`` and ``jaxvae plot``) goes to the same tracked runs through :func:`report`. A picture in
an object store (``gs://``) reaches a tracker as a temporary local copy
(:func:`jaxvae.storage.local_copy`): the trackers' clients open local files only.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any

from jaxvae import io, layout, storage
from jaxvae.specs import LoggingSpec

_TRACKERS: dict[str, type] = {}
_LOADED = False


def register(name: str):
    """Class decorator: makes a class the tracker switched on by ``logging.<name>``."""

    def deco(cls: type) -> type:
        if name in _TRACKERS and _TRACKERS[name] is not cls:
            raise ValueError(f"tracker {name!r} is registered twice")
        _TRACKERS[name] = cls
        return cls

    return deco


def registered() -> dict[str, type]:
    """Every registered tracker, by name (every module of this package imported first)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(_TRACKERS)


class MissingPackage(Exception):
    """A tracker's client library is not installed."""


def require(module: str, extra: str) -> Any:
    """Imports ``module``, the client library of the tracker ``extra``.

    Raises:
      MissingPackage: it is not installed (the message says which extra installs it).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackage(
            f"needs the {module.split('.')[0]!r} package ({e}): pip install 'jaxvae[{extra}]'"
        ) from None


def numbers(record: dict[str, Any]) -> dict[str, float]:
    """The figures of a metrics line: its numbers but the step."""
    number = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    return {k: v for k, v in record.items() if k != "step" and number(v)}


def _run_name(spec: LoggingSpec, workdir: str) -> str:
    return spec.run_name or os.path.basename(storage.abspath(workdir))


def _open(kind: str, cls: type, spec: LoggingSpec, name: str, run_id: str | None) -> Any:
    """The tracker ``kind``, on a new tracked run or on the one of ``run_id``."""
    try:
        return cls(spec, name=name, run_id=run_id)
    except Exception as e:  # the client's own errors (no login, no server), in one line
        detail = e if isinstance(e, MissingPackage) else f"{type(e).__name__}: {e}"
        raise ValueError(f"config logging.{kind}={getattr(spec, kind)!r}: {detail}") from e


def _send_pictures(opened, step: int, paths: list[str]) -> None:
    """Each PNG to each tracker; a picture in an object store (``gs://``) as a local copy, the
    only kind the trackers' clients open."""
    for path in paths:
        with storage.local_copy(path) as local:
            for tracker in opened:
                tracker.log_image(step, local)


class Trackers:
    """The trackers ``spec`` asks for, opened on the run in ``workdir``.

    Args:
      spec: the run's ``logging`` section, or ``None`` on a process that sends nothing (and
        leaves ``trackers.json`` alone).
      workdir: the run directory (``trackers.json``; its name names the tracked runs).
      resume_step: the checkpoint step a resumed run starts from, or ``None`` for a new run.
      config: the run's config as a plain dict (sent flattened, when a tracked run starts).

    Raises:
      ValueError: a tracker's package is missing, or its tracked run could not be started.
    """

    def __init__(
        self, spec: LoggingSpec | None, workdir: str, *, resume_step: int | None, config: dict
    ):
        self.path = layout.path(workdir, layout.TRACKERS)
        self.sent: dict[str, dict[str, Any]] = {}
        self.open: dict[str, Any] = {}
        if spec is None:
            return
        if resume_step is None and storage.exists(self.path):
            storage.remove(self.path)  # a new run: new tracked runs
        elif resume_step is not None and storage.exists(self.path):
            self.sent = io.read_json(self.path)
        name = _run_name(spec, workdir)
        wanted = [(kind, cls) for kind, cls in registered().items() if getattr(spec, kind)]
        try:
            for kind, cls in wanted:
                if self._start(kind, cls, spec, name):  # a new tracked run
                    self.open[kind].log_params(io.flatten(config))
                    if resume_step is not None:  # first asked for now: the lines so far
                        for record in io.read_jsonl(layout.path(workdir, layout.METRICS)):
                            self._send(kind, record)
            self._save()
        except BaseException:
            self.close()
            raise

    def _start(self, kind: str, cls: type, spec: LoggingSpec, name: str) -> bool:
        """Opens the tracker ``kind``; returns whether its tracked run is new."""
        before = self.sent.get(kind)
        tracker = _open(kind, cls, spec, name, before["run_id"] if before else None)
        self.open[kind] = tracker
        if before is not None and before["run_id"] == tracker.run_id:
            return False
        self.sent[kind] = {"run_id": tracker.run_id, "step": -1, "keys": []}
        return True

    def _send(self, kind: str, record: dict[str, Any]) -> None:
        """``record``'s figures the tracked run of ``kind`` has not been sent."""
        sent, step = self.sent[kind], int(record["step"])
        if step < sent["step"]:
            return
        if step > sent["step"]:
            sent["step"], sent["keys"] = step, []
        new = {k: v for k, v in numbers(record).items() if k not in sent["keys"]}
        if new:
            self.open[kind].log_metrics(step, new)
            sent["keys"] = sorted(set(sent["keys"]) | new.keys())

    def _save(self) -> None:
        if self.sent:
            io.write_json(self.path, self.sent)

    def metrics(self, record: dict[str, Any]) -> None:
        """A metrics line (``step`` and figures), to every tracker."""
        if self.open:
            for kind in self.open:
                self._send(kind, record)
            self._save()

    def pictures(self, step: int, paths: list[str]) -> None:
        """The run's PNG files, drawn at ``step``, to every tracker."""
        if self.open:
            _send_pictures(self.open.values(), step, paths)

    def close(self) -> None:
        """Ends the tracked runs (they can be continued); closing twice is harmless."""
        trackers, self.open = self.open, {}
        for tracker in trackers.values():
            tracker.close()


EVAL_PREFIX = "eval/"


def report(
    workdir: str,
    spec: LoggingSpec,
    *,
    figures: dict[str, Any] | None = None,
    pictures: list[str] = (),
) -> list[str]:
    """What a command computes on a trained run (``jaxvae eval``'s figures, the pictures of
    ``jaxvae sample`` and ``jaxvae plot``), to the tracked runs of its training.

    The trackers are those ``trackers.json`` in ``workdir`` records that the run's ``logging``
    section ``spec`` switches on; each gets the numbers of ``figures`` (``step`` left out) under
    :data:`EVAL_PREFIX` (``eval/test_nll``) and the pictures, at the newest step it was sent (the
    run's final step, for a finished run), then is closed. A run that was not tracked sends
    nothing. ``trackers.json`` is left as it is: running a command again sends its figures again.

    Returns:
      The names of the trackers reported to.

    Raises:
      ValueError: a tracker's package is missing, or its tracked run could not be continued.
    """
    path = layout.path(workdir, layout.TRACKERS)
    if not storage.exists(path):
        return []
    sent = io.read_json(path)
    metrics = {f"{EVAL_PREFIX}{k}": v for k, v in numbers(figures or {}).items()}
    done = []
    for kind, cls in registered().items():
        if kind not in sent or not getattr(spec, kind):
            continue
        tracker = _open(kind, cls, spec, _run_name(spec, workdir), sent[kind]["run_id"])
        try:
            step = int(sent[kind]["step"])
            if metrics:
                tracker.log_metrics(step, metrics)
            _send_pictures([tracker], step, list(pictures))
        finally:
            tracker.close()
        done.append(kind)
    return done
