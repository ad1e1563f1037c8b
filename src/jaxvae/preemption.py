"""Stopping a run cleanly on SIGTERM (cluster schedulers, spot machines) or a first Ctrl-C.

On the first signal the run finishes the dispatch in flight, writes a checkpoint of the step it
reached, says so, and :func:`jaxvae.runner.train` raises :class:`Preempted`; ``jaxvae train``
then exits with :data:`EXIT_PREEMPTED` (75, ``EX_TEMPFAIL``: run the same command again to
resume). A second signal ends the process at once.

With several processes, JAX's own preemption sync point decides
(``multihost_utils.reached_preemption_sync_point``): ``jax.distributed`` installs a SIGTERM
notifier on every process, and every process agrees on the same dispatch to stop after, so they
all write the same checkpoint. It is called once per dispatch with the dispatch count, which is
the same on every process.
"""

from __future__ import annotations

import os
import signal
import threading

import jax

EXIT_PREEMPTED = 75


class Preempted(Exception):
    """The run stopped on a signal after writing a checkpoint of ``step``."""

    def __init__(self, step: int, signal_name: str):
        super().__init__(
            f"stopped by {signal_name} at step {step}; a checkpoint of that step is written: "
            "run the same command again to resume"
        )
        self.step, self.signal_name = step, signal_name


class StopRequest:
    """Catches SIGTERM and SIGINT while a run trains (a context manager).

    In a single process the handlers here record the first signal; a second one restores the
    default handler and re-sends the signal, which ends the process. In a multi-process run
    SIGTERM is left to JAX's preemption notifier and :meth:`due` asks JAX's sync point (Ctrl-C
    there interrupts as usual).
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}
        self._dispatches = 0
        self._multi = jax.process_count() > 1

    def _handler(self, signum, frame):
        del frame
        if self.signal_name is not None:  # the second signal: end now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        # Several processes must agree: only JAX's notifier (SIGTERM) may decide there.
        if threading.current_thread() is threading.main_thread() and not self._multi:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()

    def due(self) -> bool:
        """Called after every dispatch, on every process: whether to save and stop now."""
        self._dispatches += 1
        if self._multi:
            from jax.experimental import multihost_utils

            if not multihost_utils.reached_preemption_sync_point(self._dispatches):
                return False
            self.signal_name = self.signal_name or "SIGTERM"
        return self.signal_name is not None
