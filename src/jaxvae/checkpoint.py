"""Orbax checkpoints of the train state in ``WORKDIR/checkpoints``.

Saves go through one ``CheckpointManager`` (every process takes part; Orbax coordinates the writes).
Restoring takes an abstract state whose leaves carry the target shardings, so a checkpoint written on
4 devices restores onto 1 (or 2 processes) and back. A newest checkpoint that cannot be read is moved
to ``WORKDIR/checkpoints-corrupt/`` (never deleted) and the previous one is used, with a warning.

A save that fails (a full disk, a directory gone read-only) raises ``ValueError`` with one line
that names the step, the directory and the reason and says that the previous checkpoints are kept:
Orbax writes into ``<step>.orbax-checkpoint-tmp`` and renames it only once complete, and deletes old
checkpoints only after a complete save, so the newest finished checkpoint stays the one restored.
The half-written directory is removed, to give the space back.

Early stopping (:class:`EarlyStopping`) on a validation figure keeps the best state: with
``data.validation_size > 0`` the run evaluates the validation set at every epoch end
(``val_<figure>`` lines in metrics.jsonl). With ``train.early_stopping_patience = P > 0`` it keeps the
state of the best epoch in ``checkpoints-best/`` and stops once ``P`` epochs in a row did not
improve on it; the test figures and pictures are then those of the best state. An improving epoch
keeps a copy of its state and writes it with the next regular checkpoint (just before it), so
short epochs do not pay for a synchronous save each, and a killed run's best directory matches the
checkpoint it resumes from. The stopper's
state is a function of the logged validation figures alone, so a resumed run rebuilds it from
metrics.jsonl and takes the same decisions as one that was never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import math
import os
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxvae import io, layout, sharding, storage

log = logging.getLogger(__name__)


def checkpoint_dir(workdir: str, name: str = layout.CHECKPOINTS) -> str:
    """``WORKDIR/checkpoints`` (or another checkpoint directory of the run, e.g. the best one).

    A workdir on an object store (``gs://...``) is Orbax's and TensorStore's to write there;
    :mod:`jaxvae.storage` sets up the filesystem that Orbax's path layer (etils.epath) uses
    first, so that Orbax lists what other processes wrote.
    """
    if storage.is_remote(workdir):
        storage.filesystem(workdir)
    return os.path.join(storage.abspath(workdir), name)


# The step each manager is writing in the background (asynchronous saves), to name it on failure.
_IN_FLIGHT: weakref.WeakKeyDictionary[ocp.CheckpointManager, int] = weakref.WeakKeyDictionary()


def make_manager(
    workdir: str, *, keep: int, name: str = layout.CHECKPOINTS
) -> ocp.CheckpointManager:
    """A manager that keeps the newest ``keep`` checkpoints; saving is asynchronous.

    Temporary directories of saves that never finished (a killed run) are removed when it starts.
    """
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir, name), options=options)


def _reason(error: BaseException) -> str:
    """A short reason for a failed write: the OS error's text where one is found, else the first
    line of the message."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        # Orbax (tensorstore) wraps OS errors in ValueError("RESOURCE_EXHAUSTED: ...
        # No space left on device [os_error_code='28']").
        code = re.search(r"os_error_code='(\d+)'", str(seen))
        if code:
            return os.strerror(int(code.group(1)))
        seen = seen.__cause__ or seen.__context__
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first[:200]}"


def _drain(manager: ocp.CheckpointManager) -> None:
    """Waits for what a failed save left running and discards its errors, so that they do not
    resurface at the next save or at ``close``."""
    inner = getattr(manager, "_checkpointer", None)  # its background commit thread
    waits = (manager.wait_until_finished, getattr(inner, "wait_until_finished", None))
    for wait in filter(None, (*waits, manager.check_for_errors)):
        for _ in range(3):  # each call raises at most one stored error
            with contextlib.suppress(Exception):  # the failure is reported by the caller
                wait()
                break


def _remove_tmp_dirs(directory: str, *, settle_s: float = 0.2, limit_s: float = 10.0) -> None:
    """Removes the half-written ``*.orbax-checkpoint-tmp`` directories.

    When one write of a save fails, the save's other writes may still be finishing in background
    threads and create files again in a directory just removed; so removal repeats until the
    directory stays absent for ``settle_s`` (at most ``limit_s`` in all).
    """
    pattern = os.path.join(directory, f"*{ocp.utils.TMP_DIR_SUFFIX}*")
    deadline = time.monotonic() + limit_s
    while time.monotonic() <= deadline:
        found = storage.glob(pattern)
        for tmp in found:
            storage.rmtree(tmp)
        if not found:
            time.sleep(settle_s)
            if not storage.glob(pattern):
                return


def _save_failed(
    manager: ocp.CheckpointManager, step: int | None, error: BaseException
) -> ValueError:
    """The one-line error of a failed save, after the half-written directory is removed."""
    _drain(manager)
    directory = str(manager.directory)
    if jax.process_index() == 0:
        _remove_tmp_dirs(directory)
    kept = steps(os.path.dirname(directory), os.path.basename(directory))
    previous = "there is no previous checkpoint"
    if kept:
        previous = f"the previous checkpoints are kept (steps {', '.join(map(str, kept))})"
    what = "checkpoint" if step is None else f"checkpoint at step {step}"
    reason = _reason(error)
    hint = " (free some space)" if reason == os.strerror(errno.ENOSPC) else ""
    return ValueError(f"{what} could not be written to {directory}: {reason}{hint}; {previous}")


def finish(manager: ocp.CheckpointManager) -> None:
    """Waits for an asynchronous save to be written (call it before ``manager.close()``).

    Raises:
      ValueError: the save failed (see :func:`save`).
    """
    step = _IN_FLIGHT.pop(manager, None)
    try:
        manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - Orbax raises ValueError, OSError and others
        raise _save_failed(manager, step, e) from e


def save(manager: ocp.CheckpointManager, step: int, state: Any, *, wait: bool = False) -> None:
    """Saves ``state`` as ``step``.

    Asynchronous unless ``wait``: the write goes on in background threads while training continues
    on the accelerator (call :func:`finish` before exit). On the CPU backend the
    writer and the training program share the same cores; waiting (about 20 ms for a 650k-parameter
    model's state) then costs less than the contention (measured: 50-100 ms per checkpoint).

    Raises:
      ValueError: this save, or the previous asynchronous one, could not be written (one line: the
        step, the directory, the reason; the previous checkpoints are kept and the half-written
        directory is removed). The manager can save again once the cause is gone.
    """
    finish(manager)  # a failure of the previous asynchronous save is reported under its step
    try:
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
    except Exception as e:  # noqa: BLE001 - as in finish
        raise _save_failed(manager, step, e) from e
    _IN_FLIGHT[manager] = step
    if wait:
        finish(manager)


def save_due(
    step: int,
    *,
    total: int,
    per_epoch: int,
    every_steps: int,
    min_interval_s: float,
    seconds_since_save: float | None,
) -> bool:
    """Whether the run saves a checkpoint after ``step``.

    Always after the last step. With ``every_steps`` > 0, every ``every_steps`` steps. Otherwise at
    epoch ends, but no sooner than ``min_interval_s`` after the previous checkpoint
    (``seconds_since_save`` is None while this run has none, written or restored: the first epoch's
    end then saves, so a disk problem shows at once). Short epochs thus do not pay for a checkpoint
    each, and a killed run loses at most about ``min_interval_s`` of training.
    """
    if step == total:
        return True
    if every_steps > 0:
        return step % every_steps == 0
    if step % per_epoch != 0:
        return False
    return seconds_since_save is None or seconds_since_save >= min_interval_s


def steps(workdir: str, name: str = layout.CHECKPOINTS) -> list[int]:
    """Steps of the finished checkpoints in ``workdir``, oldest first."""
    directory = checkpoint_dir(workdir, name)
    if not storage.isdir(directory):
        return []
    with ocp.CheckpointManager(directory) as manager:
        return sorted(manager.all_steps())


def _quarantine(workdir: str, step: int) -> str:
    """Moves checkpoint ``step`` aside so that training can write that step again (on an object
    store by copying and deleting its objects: a stop in between leaves both, and the next start
    moves it again under another name)."""
    src = os.path.join(checkpoint_dir(workdir), str(step))
    dst_root = os.path.join(storage.abspath(workdir), layout.CORRUPT)
    dst = os.path.join(dst_root, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    if jax.process_index() == 0 and storage.exists(src):
        storage.makedirs(dst_root)
        storage.move(src, dst)
    return dst


def restore_newest(
    workdir: str,
    abstract_state: Any,
    *,
    warn: Callable[[str], None] = log.warning,
    quarantine: bool = True,
    name: str = layout.CHECKPOINTS,
) -> tuple[Any, int] | None:
    """Restores the newest readable checkpoint onto ``abstract_state``'s shapes and shardings.

    Args:
      abstract_state: a pytree of ``jax.ShapeDtypeStruct`` (with ``sharding``) like the saved state.
      warn: called with a message for each checkpoint that could not be read.
      quarantine: move unreadable checkpoints to ``checkpoints-corrupt/`` (else leave them).

    Returns:
      ``(state, step)``, or ``None`` when there is no checkpoint at all.

    Raises:
      ValueError: checkpoints exist but none could be read.
    """
    available = steps(workdir, name)
    if not available:
        return None
    directory = checkpoint_dir(workdir, name)
    errors = []
    with ocp.CheckpointManager(directory) as manager:
        for step in reversed(available):
            try:
                return manager.restore(step, args=ocp.args.StandardRestore(abstract_state)), step
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                errors.append(f"step {step}: {reason}")
                where = f"; moved to {_quarantine(workdir, step)}" if quarantine else ""
                warn(f"checkpoint at step {step} in {directory} cannot be read ({reason}){where}")
    raise ValueError(f"no readable checkpoint in {directory}: " + "; ".join(errors))


class Checkpoints:
    """A run's checkpoint policy: the newest states (``keep`` of them, saved when
    :func:`save_due` says so), the best validation epoch's state under early stopping, and the
    clock of the last save, read on process 0 and shared so that every process decides alike.

    Args:
      keep: checkpoints kept; every_steps, min_interval_s: as :func:`save_due`.
      per_epoch, total: steps per epoch and in all.
      resumed: whether the run resumed from a checkpoint (the clock starts then).
      best: whether a best-state manager is kept (early stopping).
    """

    def __init__(
        self, workdir, *, keep, every_steps, min_interval_s, per_epoch, total, resumed, best
    ):
        self.manager = make_manager(workdir, keep=keep)
        self.best = make_manager(workdir, keep=1, name=layout.BEST) if best else None
        self.policy = {"total": total, "per_epoch": per_epoch, "every_steps": every_steps}
        self.policy["min_interval_s"], self.per_epoch = min_interval_s, per_epoch
        self.last = time.time() if resumed else None
        self.wait = jax.default_backend() == "cpu"  # see save
        self.closed = False
        # (step, state) of a best epoch not yet written: written with the next save
        self.pending_best: tuple[int, Any] | None = None

    def after(self, step: int, state_fn, *, force: bool = False, before=lambda: None) -> bool:
        """Saves ``state_fn()`` at ``step`` when due (or ``force``), calling ``before()`` first
        (the logs' flush); returns whether it saved."""
        since = None if self.last is None else time.time() - self.last
        if since is not None and not force and step % self.per_epoch == 0:
            since = sharding.from_process_0(since)  # where save_due reads it: alike everywhere
        due = force or save_due(step, **self.policy, seconds_since_save=since)
        if due:
            before()
            self.write_best()
            save(self.manager, step, state_fn(), wait=self.wait)
            self.last = time.time()
        return due

    def now(self, step: int, state) -> None:
        """A checkpoint at ``step``, written before returning (a stop request)."""
        self.write_best()
        save(self.manager, step, state, wait=True)

    def save_best(self, step: int, state) -> None:
        """Keeps ``state`` (a copy: the engine donates the live one) as the best, of ``step``;
        it is written by :meth:`write_best` just before the next regular checkpoint (or the
        summary). A kill loses it together with the training since that checkpoint, which the
        resumed run repeats, reaching the same best again."""
        self.pending_best = (step, jax.tree.map(lambda a: a.copy(), state))

    def write_best(self) -> None:
        """Writes the kept best state, if any, replacing what the best directory holds.

        A run killed after its best state was written but before the regular checkpoint that
        follows resumes from an earlier step and reaches the best's step again: the best
        directory then already holds that step (or a later one of the attempt that was stopped,
        which the resumed stopper, rebuilt from the log up to the resume step, does not know).
        Those are removed first, so that the new best is the one kept (Orbax keeps the highest
        step) and the save is not refused as a step that exists.
        """
        if self.pending_best is None:
            return
        step, state = self.pending_best
        stale = [s for s in self.best.all_steps() if s >= step]
        for s in stale:
            self.best.delete(s)
        save(self.best, step, state, wait=True)
        self.pending_best = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        finish(self.manager)
        self.manager.close()
        if self.best is not None:
            self.best.close()


@dataclasses.dataclass
class EarlyStopping:
    """Tracks the best (lowest) validation figure.

    Attributes:
      patience: epochs without improvement before stopping (0 = never stop).
      metric: the metrics.jsonl key watched, e.g. ``"val_nelbo"``.
      best: the lowest value seen; ``best_step`` its step; ``bad_epochs`` evaluations since.
    """

    patience: int
    metric: str
    best: float = math.inf
    best_step: int | None = None
    bad_epochs: int = 0

    def update(self, step: int, value: float) -> bool:
        """Records the figure of ``step``; returns whether it is a new best."""
        if value < self.best:
            self.best, self.best_step, self.bad_epochs = float(value), int(step), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    @classmethod
    def from_log(cls, workdir: str, *, upto_step: int, patience: int, metric: str) -> EarlyStopping:
        """The stopper as it stood after ``upto_step``, from metrics.jsonl's validation lines."""
        stopper = cls(patience, metric)
        path = layout.path(workdir, layout.METRICS)
        # a last line torn by a kill is left out
        for record in io.read_jsonl(path) if storage.exists(path) else []:
            if metric in record and record.get("step", 0) <= upto_step:
                stopper.update(record["step"], record[metric])
        return stopper
