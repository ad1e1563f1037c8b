"""The training loop: from an :class:`~jaxvae.experiment.Experiment` to a finished run directory.

:func:`drive` is the loop, top to bottom: dispatches of the engine (a feed,
:class:`~jaxvae.engine.CompiledFeed`) up to each boundary, then each run's boundary work, then
the summaries. The concerns are small pieces it calls: :func:`open_run` (the run directory: validate, restore or initialise),
:class:`~jaxvae.workdir.RunLog` (metrics.jsonl and TensorBoard), :class:`~jaxvae.checkpoint.Checkpoints`
(when to save, the best state), :func:`eval_due` (when to evaluate),
:class:`~jaxvae.checkpoint.EarlyStopping`, :mod:`jaxvae.summary` (figures, pictures, summary) and
:class:`Progress`. :class:`Run` holds one run's pieces; a group of seeds vectorized in one program
(:mod:`jaxvae.seeds`) drives the same pieces once per seed. Process 0 writes files; every process
takes part in the computation and in checkpoints. The core never sees a config: the experiment
carries specs.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

import jax
from tqdm import tqdm

from jaxvae import (
    checkpoint,
    engine,
    io,
    layout,
    preemption,
    sharding,
    summary,
)
from jaxvae import workdir as workdir_lib


def eval_due(step: int, *, per_epoch: int, total: int, every_epochs: int) -> bool:
    """Whether the test figures are computed after ``step``: at the end, and every
    ``every_epochs`` epochs (0 = only at the end)."""
    epoch, within = divmod(step, per_epoch)
    return step == total or (within == 0 and every_epochs > 0 and epoch % every_epochs == 0)


class DispatchPacer:
    """How many steps the next dispatch runs: at most about ``max_seconds`` of work (from the
    measured time per step), so that a stop request is answered within seconds. The split
    changes no result: every step runs the same compiled program; log lines stay at the
    step-determined boundaries. With several processes, process 0's count is used everywhere
    (they must run the same programs)."""

    def __init__(self, max_seconds: float):
        self.max_seconds = max_seconds
        self.seconds_per_step: float | None = None

    def steps(self, remaining: int) -> int:
        if self.max_seconds <= 0:
            return remaining
        per_step = self.seconds_per_step  # None: 8 steps, a first measurement
        n = min(remaining, 8 if per_step is None else max(1, int(self.max_seconds / per_step)))
        return int(sharding.from_process_0(n)) if jax.process_count() > 1 else n

    def took(self, n: int, seconds: float) -> None:
        self.seconds_per_step = seconds / n


class Progress:
    """A progress bar on a terminal (not in log files), and lines from process 0."""

    def __init__(self, stream, *, total: int, enabled: bool, main: bool, label: str = ""):
        self.stream, self.main, self.label = stream, main, label
        shown = main and enabled and getattr(stream, "isatty", lambda: False)()
        self.bar = tqdm(
            total=total, unit="step", file=stream, disable=not shown, dynamic_ncols=True
        )

    def say(self, msg: str) -> None:
        if self.main:
            tqdm.write(f"{self.label}: {msg}" if self.label else msg, file=self.stream)

    def advance(self, n: int, loss: float) -> None:
        self.bar.update(n)
        self.bar.set_postfix(loss=f"{loss:.2f}")

    def close(self) -> None:
        self.bar.close()


def open_run(exp, workdir: str, say) -> tuple[Any, int, bool]:
    """Checks ``workdir`` (writable, same config, same format), then restores its newest readable
    checkpoint or initialises a fresh state and writes config.json and run.json.

    Returns:
      ``(state, start_step, resumed)``.
    """
    main = jax.process_index() == 0
    if main:
        workdir_lib.ensure_writable(workdir)
    existing = workdir_lib.check_compatible(workdir, exp.record())  # a mismatch fails everywhere
    # Process 0's answer on every process, and a barrier before it writes config.json below: a
    # process that checked later would otherwise see that file, take the resume path and run
    # other collectives than process 0 (the processes would wait on each other for ever).
    existing = bool(sharding.from_process_0(float(existing)))
    if not existing and checkpoint.steps(workdir):
        raise ValueError(
            f"workdir {workdir!r} has checkpoints but no {layout.CONFIG}; use a new --workdir"
        )
    warn = lambda m: say(f"warning: {m}")
    restored = existing and checkpoint.restore_newest(workdir, exp.abstract_state(), warn=warn)
    if restored:  # (state, step), or None without a readable checkpoint
        state, start = restored
        say(f"resuming {workdir} from step {start}")
    else:
        state, start = exp.init_state(), 0
    if main and not existing:
        io.write_json(layout.path(workdir, layout.CONFIG), exp.record())
        workdir_lib.write_run_info(workdir, exp.info.to_dict(exp.dataset.name))
    return state, start, existing


class Run:
    """One run's pieces, opened on its workdir: progress, state, logs, checkpoints, early stopping,
    and what it measured (time trained, images seen, compile time)."""

    def __init__(self, exp, workdir: str, stream, *, label: str = ""):
        self.wall_start = time.time()
        self.exp, self.workdir, t = exp, workdir, exp.train
        self.per_epoch = exp.steps_per_epoch
        if self.per_epoch < 1:
            raise ValueError(
                f"train.batch_size={t.batch_size} is larger than the {exp.info.num_train} "
                "training images"
            )
        self.main = jax.process_index() == 0
        self.total = t.epochs * self.per_epoch
        self.progress = Progress(
            stream, total=self.total, enabled=t.progress, main=self.main, label=label
        )
        self.state, self.start_step, existing = open_run(exp, workdir, self.progress.say)
        self.progress.bar.update(self.start_step)
        resume = self.start_step if existing else None
        logs = {"enabled": self.main, "config": exp.record(), "logging": exp.logging}
        self.log = workdir_lib.RunLog(workdir, resume_step=resume, **logs)
        policy = {"keep": t.keep_checkpoints, "every_steps": t.checkpoint_every_steps}
        policy |= {"min_interval_s": t.checkpoint_min_interval_s, "per_epoch": self.per_epoch}
        policy |= {"total": self.total, "resumed": self.start_step > 0}
        self.checkpoints = checkpoint.Checkpoints(
            workdir, **policy, best=t.early_stopping_patience > 0
        )
        self.stopper = checkpoint.EarlyStopping.from_log(
            workdir,
            upto_step=self.start_step if existing else -1,
            patience=t.early_stopping_patience,
            metric=f"val_{exp.model.presentation.headline[0]}",
        )
        self.intervals = (t.checkpoint_every_steps or self.per_epoch, t.log_every_steps)
        self.intervals += (t.steps_per_dispatch,)
        self.train_seconds, self.images_seen, self.compile_s = 0.0, 0, 0.0

    def next_boundary(self, step: int) -> int:
        return engine.next_boundary(
            step, per_epoch=self.per_epoch, total=self.total, intervals=self.intervals
        )

    def trained(self, n: int, seconds: float) -> None:
        self.train_seconds += seconds
        self.images_seen += n * self.exp.train.batch_size

    def at_boundary(self, step: int, n: int, sums: dict, state_fn) -> None:
        """The training line of the ``n`` steps up to ``step``, the test and validation figures
        when due, early stopping and the checkpoint. ``state_fn()`` gives the state."""
        exp, epoch, say = self.exp, step / self.per_epoch, self.progress.say
        record = self.log.training(step, epoch, n, sums, self.images_seen / self.train_seconds)
        if record["skipped"]:
            say(f"warning: {record['skipped']} update(s) skipped (non-finite loss/gradient)")
        self.progress.advance(n, record["loss"])
        every = exp.train.eval_every_epochs
        if eval_due(step, per_epoch=self.per_epoch, total=self.total, every_epochs=every):
            m = summary.split_metrics(exp, state_fn(), "test")
            m.pop("test_kl_per_dim", None)
            self.log.write({"step": step, "epoch": epoch} | m)
            say(
                f"epoch {step // self.per_epoch}/{exp.train.epochs}  step {step}  train loss "
                f"{record['loss']:.3f}  test {summary.headline(exp.model, m)}"
            )
        stopper = self.stopper
        if exp.dataset.validation_images.shape[0] and step % self.per_epoch == 0:
            v = summary.split_metrics(exp, state_fn(), "validation")
            self.log.write({"step": step, "epoch": epoch} | v)
            if stopper.update(step, v[stopper.metric]) and self.checkpoints.best is not None:
                self.checkpoints.save_best(step, state_fn())
            if stopper.stop:
                say(
                    f"early stop at step {step}: {stopper.metric} did not improve for "
                    f"{stopper.patience} epochs (best {stopper.best:.3f} at step "
                    f"{stopper.best_step})"
                )
        self.checkpoints.after(step, state_fn, force=stopper.stop, before=self.log.flush)

    def stop_now(self, step: int, since: int, state, sums) -> None:
        """A stop request inside the interval from ``since``: checkpoint and carried sums."""
        self.log.flush()
        self.checkpoints.now(step, state)
        self.log.carry(step, since, sums)

    def close(self) -> None:
        """Ends the progress bar, the checkpoints (saves finished) and the logs (tracked runs
        ended): after the summary, a stop or an error (closing twice is harmless)."""
        self.progress.close()
        self.checkpoints.close()
        self.log.close()

    def finish(self, state) -> dict[str, Any]:
        """Closes the run and writes its figures, pictures and summary.json from its final
        ``state`` (the best epoch's under early stopping); returns the summary."""
        self.progress.close()
        self.log.flush()
        self.checkpoints.write_best()
        self.checkpoints.close()
        exp, stopper = self.exp, self.stopper
        trained_steps, trained_skipped, early = int(state.step), int(state.skipped), {}
        if self.checkpoints.best is not None and stopper.best_step is not None:
            # The figures and pictures of an early-stopped protocol are the best epoch's.
            state, step = checkpoint.restore_newest(
                self.workdir, exp.abstract_state(), name=layout.BEST
            )
            if step != stopper.best_step:
                raise ValueError(
                    f"the best checkpoint in {self.workdir} is of step {step}, but the logged "
                    f"validation figures put the best at step {stopper.best_step}"
                )
            early = {"best_step": stopper.best_step, f"best_{stopper.metric}": stopper.best}
            early |= {"stopped_early": stopper.stop, "trained_steps": trained_steps}
            # skipped_steps is the best state's; updates skipped after it are the trained one's
            early["trained_skipped_steps"] = trained_skipped
        seconds = self.train_seconds
        out = summary.final_summary(exp, state) | early
        out |= {
            "resumed_from_step": self.start_step,
            "compile_s": self.compile_s,
            "train_images_per_sec": self.images_seen / seconds if seconds else None,
            "wall_s": time.time() - self.wall_start,
        }
        if self.main:
            kl, found = out.get("test_kl_per_dim"), out.get("disentanglement")
            drawn = summary.draw(exp, state, self.workdir, kl_per_dim=kl, disentanglement=found)
            self.log.pictures(int(state.step), drawn)
            where = layout.path(self.workdir, layout.SUMMARY)
            io.write_json(where, out)
            self.progress.say(f"done: {summary.headline(exp.model, out)}  summary in {where}")
        self.close()
        return out


def drive(runs: list[Run], feed, state, *, part, join) -> list[dict[str, Any]]:
    """Trains ``runs`` (of one config but the seed) together from ``state`` with ``feed``, to the
    end or their early stop; returns their summaries.

    ``part(tree, i)`` is run ``i``'s part of the state or of the metric sums, ``join(parts)`` the
    inverse (one run: the tree, the one part; stacked seeds: :mod:`jaxvae.seeds`). Every run must
    start at the same step. A stop request (SIGTERM, SIGINT) saves every unfinished run's checkpoint and
    raises :class:`jaxvae.preemption.Preempted`.
    """
    lead = runs[0]
    if any(r.start_step != lead.start_step for r in runs):
        raise ValueError(
            f"runs driven together must start at one step, got {[r.start_step for r in runs]}"
        )
    summaries: dict[int, dict[str, Any]] = {}
    live = [i for i, r in enumerate(runs) if not r.stopper.stop]  # a log may say it stopped
    pacer, step = DispatchPacer(lead.exp.train.max_dispatch_s), lead.start_step
    carried = [r.log.carried for r in runs]  # a resumed log interval's sums so far
    try:
        with preemption.StopRequest() as stop:
            while step < lead.total and live:
                boundary, since, sums = lead.next_boundary(step), step, None
                if all(carried):
                    since, sums = carried[0][0], join([c[1] for c in carried])
                carried = [None]
                done = step
                while done < boundary:  # dispatches of at most about max_dispatch_s each
                    n, t = pacer.steps(boundary - done), time.time()
                    state, sums = feed.run(state, n, sums)  # the sums continue on the device
                    sums = jax.device_get(sums)  # host sync: once per dispatch
                    pacer.took(n, dt := time.time() - t)
                    for i in live:
                        runs[i].trained(n, dt)
                    done += n
                    if stop.due():
                        for i in live:
                            runs[i].stop_now(done, since, part(state, i), part(sums, i))
                        raise preemption.Preempted(done, stop.signal_name)
                for i in live:  # the state's part is sliced once, when first needed
                    state_fn = functools.cache(functools.partial(part, state, i))
                    runs[i].at_boundary(boundary, boundary - since, part(sums, i), state_fn)
                    if runs[i].stopper.stop:
                        summaries[i] = runs[i].finish(part(state, i))
                live, step = [i for i in live if i not in summaries], boundary
        summaries |= {i: r.finish(part(state, i)) for i, r in enumerate(runs) if i not in summaries}
    finally:
        for r in runs:
            r.close()
    return [summaries[i] for i in range(len(runs))]


def train(exp, workdir: str, *, stream=None) -> dict[str, Any]:
    """Trains (or resumes) the run of the experiment ``exp`` in ``workdir``; returns its summary.

    A run already finished with ``config`` is left alone (its summary is returned).

    Raises:
      ValueError: an unwritable workdir, or a workdir that holds a different run. Nothing in the
        workdir is changed then.
    """
    run = Run(exp, workdir, sys.stderr if stream is None else stream)
    try:
        feed = exp.feed(run.start_step, run.total)
        run.compile_s = feed.compile(run.state)
    except BaseException:
        run.close()
        raise
    state, run.state = run.state, None  # the engine donates it
    return drive([run], feed, state, part=lambda tree, i: tree, join=lambda parts: parts[0])[0]
