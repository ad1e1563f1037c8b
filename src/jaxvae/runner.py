"""``jaxvae train``: from a config to a finished run directory.

:func:`train` is a short loop over dispatches of the device-resident engine; the pieces it calls
each do one thing: :func:`jaxvae.experiment.build` (everything from the config), :func:`open_run`
(validate and prepare the workdir, restore or initialise the state), :class:`CheckpointClock`
(when to save), :func:`eval_due` (when to evaluate), :func:`test_metrics` and
:func:`final_summary` (the figures), :mod:`jaxvae.pictures` and :class:`Progress`. Process 0
writes files; every process takes part in the computation and in checkpoints.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import psutil
from tqdm import tqdm

from jaxvae import (
    checkpoint,
    curves,
    early_stopping,
    evaluate,
    layout,
    pictures,
    preemption,
    sharding,
    streaming,
    tensorboard,
)
from jaxvae import engine as engine_lib
from jaxvae import experiment as build_lib
from jaxvae import workdir as workdir_lib
from jaxvae.models import Params, num_params

run_keys = build_lib.run_keys  # re-exported: the run's named keys


def params_digest(params: Params) -> str:
    """sha256 over every parameter's path, dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    for path, leaf in sorted(
        jax.tree_util.tree_flatten_with_path(params)[0], key=lambda kv: jax.tree_util.keystr(kv[0])
    ):
        arr = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def test_metrics(exp: build_lib.Experiment, state: engine_lib.TrainState) -> dict[str, Any]:
    """The family's test figures, as ``test_<name>``."""
    m = evaluate.evaluate_model(
        exp.model,
        state.params,
        state.model_state,
        exp.split("test"),
        exp.keys["eval"],
        batch_size=exp.config.eval.batch_size,
        mesh=exp.mesh,
    )
    return {f"test_{k}": v for k, v in m.items()}


def validation_metrics(exp: build_lib.Experiment, state: engine_lib.TrainState) -> dict[str, Any]:
    """The family's figures on the validation set, as ``val_<name>``."""
    m = evaluate.evaluate_model(
        exp.model,
        state.params,
        state.model_state,
        exp.split("validation"),
        exp.keys["eval"],
        batch_size=exp.config.eval.batch_size,
        mesh=exp.mesh,
    )
    return {f"val_{k}": v for k, v in m.items() if k != "kl_per_dim"}


def headline(exp: build_lib.Experiment, m: dict[str, Any]) -> str:
    names = [n for n in exp.model.headline if f"test_{n}" in m]
    if not names:
        return ""
    first, rest = names[0], names[1:]
    more = ", ".join(f"{n} {m[f'test_{n}']:.4g}" for n in rest)
    return f"{first} {m[f'test_{first}']:.2f}" + (f" ({more})" if more else "")


def eval_due(step: int, *, per_epoch: int, total: int, every_epochs: int) -> bool:
    """Whether the test figures are computed after ``step``: at the end, and every
    ``every_epochs`` epochs (0 = only at the end)."""
    if step == total:
        return True
    return step % per_epoch == 0 and every_epochs > 0 and (step // per_epoch) % every_epochs == 0


class CheckpointClock:
    """Seconds since the last checkpoint this run wrote or resumed from, read on process 0 and
    shared, so that every process takes the same save decision."""

    def __init__(self, resumed: bool):
        self.last = time.time() if resumed else None

    def seconds_since_save(self, *, at_epoch_end: bool) -> float | None:
        if self.last is None:
            return None
        since = time.time() - self.last
        return sharding.from_process_0(since) if at_epoch_end else since

    def saved(self) -> None:
        self.last = time.time()


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
        if self.seconds_per_step is None:
            n = min(remaining, 8)  # a first measurement
        else:
            n = min(remaining, max(1, int(self.max_seconds / self.seconds_per_step)))
        return int(sharding.from_process_0(n)) if jax.process_count() > 1 else n

    def took(self, n: int, seconds: float) -> None:
        self.seconds_per_step = seconds / n


class Progress:
    """A progress bar on a terminal (not in log files), and lines from process 0."""

    def __init__(
        self, stream, *, total: int, initial: int, enabled: bool, main: bool, label: str = ""
    ):
        self.stream, self.main, self.label = stream, main, label
        tty = getattr(stream, "isatty", lambda: False)()
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            file=stream,
            disable=not (main and enabled and tty),
            dynamic_ncols=True,
        )

    def say(self, msg: str) -> None:
        if self.main:
            tqdm.write(f"{self.label}: {msg}" if self.label else msg, file=self.stream)

    def advance(self, n: int, loss: float) -> None:
        self.bar.update(n)
        self.bar.set_postfix(loss=f"{loss:.2f}")

    def close(self) -> None:
        self.bar.close()


def open_run(exp: build_lib.Experiment, workdir: str, say) -> tuple[Any, int, bool]:
    """Checks ``workdir`` (writable, same config, same format), then restores its newest readable
    checkpoint or initialises a fresh state and writes config.json and run.json.

    Returns:
      ``(state, start_step, resumed)``.
    """
    main = jax.process_index() == 0
    if main:
        workdir_lib.ensure_writable(workdir)
    existing = workdir_lib.check_compatible(workdir, exp.config)  # a mismatch fails everywhere
    # Process 0's answer on every process, and a barrier before it writes config.json below: a
    # process that checked later would otherwise see that file, take the resume path and run
    # other collectives than process 0 (the processes would wait on each other for ever).
    existing = bool(sharding.from_process_0(float(existing)))
    if not existing and checkpoint.steps(workdir):
        raise ValueError(
            f"workdir {workdir!r} has checkpoints but no {layout.CONFIG}; use a new --workdir"
        )
    restored = None
    if existing:
        restored = checkpoint.restore_newest(
            workdir, exp.abstract_state(), warn=lambda m: say(f"warning: {m}")
        )
    if restored is not None:
        state, start = restored
        say(f"resuming {workdir} from step {start}")
    else:
        state, start = exp.init_state(), 0
    if main and not existing:
        workdir_lib.write_json(layout.path(workdir, layout.CONFIG), exp.config.to_dict())
        workdir_lib.write_run_info(workdir, build_lib.info_dict(exp.info, exp.dataset.name))
    return state, start, existing


class Session:
    """The host side of one run: its workdir (opened, restored or initialised by :func:`open_run`),
    logs, TensorBoard events, checkpoints, early stopping and summary. :func:`drive` runs the
    training of one session, or of several seeds vectorized in one program (:mod:`jaxvae.seeds`),
    and hands each session its part at every boundary."""

    def __init__(self, exp: build_lib.Experiment, workdir: str, stream, *, label: str = ""):
        self.wall_start = time.time()
        self.exp, self.workdir, self.config = exp, workdir, exp.config
        t_cfg = self.config.train
        n_train = exp.dataset.train_images.shape[0]
        self.per_epoch = engine_lib.steps_per_epoch(n_train, t_cfg.batch_size)
        if self.per_epoch < 1:
            raise ValueError(
                f"train.batch_size={t_cfg.batch_size} is larger than the {n_train} training images"
            )
        self.main = jax.process_index() == 0
        self.total = t_cfg.epochs * self.per_epoch
        self.progress = Progress(
            stream,
            total=self.total,
            initial=0,
            enabled=t_cfg.progress,
            main=self.main,
            label=label,
        )
        self.state, self.start_step, existing = open_run(exp, workdir, self.progress.say)
        self.progress.bar.update(self.start_step)
        resume_step = self.start_step if existing else None
        self.metrics_log = workdir_lib.MetricsLog(
            workdir, resume_step=resume_step, enabled=self.main
        )
        self.events = tensorboard.EventLog(workdir, resume_step=resume_step, enabled=self.main)
        self.events.config(self.config.to_dict())
        self.intervals = (
            t_cfg.checkpoint_every_steps or self.per_epoch,
            t_cfg.log_every_steps,
            t_cfg.steps_per_dispatch,
        )
        self.manager = checkpoint.make_manager(workdir, keep=t_cfg.keep_checkpoints)
        self.wait_for_saves = jax.default_backend() == "cpu"  # see checkpoint.save
        self.clock = CheckpointClock(resumed=self.start_step > 0)
        self.validating = exp.dataset.validation_images.shape[0] > 0
        self.stopper = early_stopping.EarlyStopping.from_log(
            workdir,
            upto_step=self.start_step if existing else -1,
            patience=t_cfg.early_stopping_patience,
            metric=f"val_{exp.model.headline[0]}",
        )
        self.best_manager = None
        if self.stopper.patience:
            self.best_manager = checkpoint.make_manager(workdir, keep=1, name=layout.BEST)
        self.train_seconds, self.images_seen, self.compile_s = 0.0, 0, 0.0
        self.closed = False

    def trained(self, n: int, seconds: float) -> None:
        self.train_seconds += seconds
        self.images_seen += n * self.config.train.batch_size

    def boundary(self, step: int, n: int, sums: dict[str, Any], state_fn) -> None:
        """After the ``n`` steps up to the boundary ``step``: the log record, test and validation
        figures when due, early stopping and the checkpoint. ``state_fn()`` gives the state (only
        called when something needs it)."""
        exp, t_cfg, per_epoch, progress = self.exp, self.config.train, self.per_epoch, self.progress
        record = {k: float(v) / n for k, v in sums.items() if k != "skipped"}
        record |= {
            "step": step,
            "epoch": step / per_epoch,
            "skipped": int(sums["skipped"]),
            "images_per_sec": self.images_seen / self.train_seconds,
        }
        if record["skipped"]:
            progress.say(
                f"warning: {record['skipped']} update(s) skipped (non-finite loss/gradient)"
            )
        self.metrics_log.write(record)
        self.events.record(record)
        progress.advance(n, record["loss"])
        if eval_due(
            step, per_epoch=per_epoch, total=self.total, every_epochs=t_cfg.eval_every_epochs
        ):
            m = test_metrics(exp, state_fn())
            m.pop("test_kl_per_dim", None)
            self.metrics_log.write({"step": step, "epoch": step / per_epoch} | m)
            self.events.record({"step": step} | m)
            progress.say(
                f"epoch {step // per_epoch}/{t_cfg.epochs}  step {step}  train loss "
                f"{record['loss']:.3f}  test {headline(exp, m)}"
            )
        epoch_end = step % per_epoch == 0
        stopper = self.stopper
        if self.validating and epoch_end:
            v = validation_metrics(exp, state_fn())
            self.metrics_log.write({"step": step, "epoch": step / per_epoch} | v)
            self.events.record({"step": step} | v)
            if stopper.update(step, v[stopper.metric]) and self.best_manager is not None:
                checkpoint.save(self.best_manager, step, state_fn(), wait=True)
            if stopper.stop:
                progress.say(
                    f"early stop at step {step}: {stopper.metric} did not improve for "
                    f"{stopper.patience} epochs (best {stopper.best:.3f} at step "
                    f"{stopper.best_step})"
                )
        due = stopper.stop or checkpoint.save_due(
            step,
            total=self.total,
            per_epoch=per_epoch,
            every_steps=t_cfg.checkpoint_every_steps,
            min_interval_s=t_cfg.checkpoint_min_interval_s,
            seconds_since_save=self.clock.seconds_since_save(at_epoch_end=epoch_end),
        )
        if due:
            checkpoint.save(self.manager, step, state_fn(), wait=self.wait_for_saves)
            self.events.flush()
            self.clock.saved()

    def save_now(self, step: int, state) -> None:
        """A checkpoint at ``step``, written before returning (a stop request)."""
        checkpoint.save(self.manager, step, state, wait=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.progress.close()
        self.events.flush()
        checkpoint.finish(self.manager)
        self.manager.close()
        if self.best_manager is not None:
            self.best_manager.close()

    def finish(self, state) -> dict[str, Any]:
        """Closes the session and writes the run's figures, pictures and summary.json from its
        final ``state`` (the best epoch's under early stopping); returns the summary."""
        self.close()
        exp, stopper = self.exp, self.stopper
        trained_steps = int(state.step)
        early = {}
        if self.best_manager is not None and stopper.best_step is not None:
            # The figures and pictures of an early-stopped protocol are the best epoch's.
            state, _ = checkpoint.restore_newest(
                self.workdir, exp.abstract_state(), name=layout.BEST
            )
            early = {
                "best_step": stopper.best_step,
                f"best_{stopper.metric}": stopper.best,
                "stopped_early": stopper.stop,
                "trained_steps": trained_steps,
            }
        seconds = self.train_seconds
        summary = (
            final_summary(exp, state)
            | early
            | {
                "resumed_from_step": self.start_step,
                "compile_s": self.compile_s,
                "train_images_per_sec": self.images_seen / seconds if seconds else None,
                "wall_s": time.time() - self.wall_start,
            }
        )
        if self.main:
            drawn = draw(exp, state, self.workdir, kl_per_dim=summary.get("test_kl_per_dim"))
            self.events.images(int(state.step), {os.path.basename(p)[:-4]: _png(p) for p in drawn})
            workdir_lib.write_json(layout.path(self.workdir, layout.SUMMARY), summary)
            where = layout.path(self.workdir, layout.SUMMARY)
            self.progress.say(f"done: {headline(exp, summary)}  summary in {where}")
        self.events.close()
        return summary


def whole(tree, i: int):
    """The part of session ``i`` of a one-session drive: everything."""
    del i
    return tree


def drive(sessions: list[Session], feed, state, *, part=whole) -> list[dict[str, Any]]:
    """Trains ``sessions`` (runs of one config but the seed) together from ``state`` with
    ``feed``, to the end or their early stop; returns their summaries.

    ``part(tree, i)`` is session ``i``'s part of the state or of the metric sums (:func:`whole`
    for one session; a slice of the stacked seeds for :mod:`jaxvae.seeds`). Every session must
    start at the same step. A stop request (SIGTERM, SIGINT) saves every unfinished session's
    checkpoint and raises :class:`jaxvae.preemption.Preempted`.
    """
    lead = sessions[0]
    per_epoch, total, intervals = lead.per_epoch, lead.total, lead.intervals
    if any(s.start_step != lead.start_step for s in sessions):
        raise ValueError(
            "sessions driven together must start at one step, got "
            f"{[s.start_step for s in sessions]}"
        )
    summaries: dict[int, dict[str, Any]] = {}
    live = [i for i, s in enumerate(sessions) if not s.stopper.stop]  # a log may say it stopped
    pacer = DispatchPacer(lead.config.train.max_dispatch_s)
    step = lead.start_step
    try:
        with preemption.StopRequest() as stop:
            while step < total and live:
                boundary = engine_lib.next_boundary(
                    step, per_epoch=per_epoch, total=total, intervals=intervals
                )
                sums, done = None, step
                while done < boundary:  # dispatches of at most about max_dispatch_s each
                    n = pacer.steps(boundary - done)
                    t = time.time()
                    # the running sums continue on the device: the same additions, whatever the split
                    state, sums = feed.run(state, n, sums)
                    sums = jax.device_get(sums)  # host sync: once per dispatch
                    dt = time.time() - t
                    pacer.took(n, dt)
                    for i in live:
                        sessions[i].trained(n, dt)
                    done += n
                    if stop.due():
                        for i in live:
                            sessions[i].save_now(done, part(state, i))
                        raise preemption.Preempted(done, stop.signal_name)
                n, step = boundary - step, boundary
                for i in live:  # the state's part is sliced once, when first needed
                    state_fn = functools.cache(functools.partial(part, state, i))
                    sessions[i].boundary(step, n, part(sums, i), state_fn)
                for i in [i for i in live if sessions[i].stopper.stop]:
                    summaries[i] = sessions[i].finish(part(state, i))
                live = [i for i in live if i not in summaries]
        for i in range(len(sessions)):
            if i not in summaries:
                summaries[i] = sessions[i].finish(part(state, i))
    finally:
        for s in sessions:
            s.close()
    return [summaries[i] for i in range(len(sessions))]


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    mesh=None,
    stream=None,
) -> dict[str, Any]:
    """Trains (or resumes) the run of ``config`` in ``workdir``; returns its summary.

    ``stream`` receives progress lines (default: ``sys.stderr`` as it is at the call).

    A run already finished with ``config`` is left alone (its summary is returned).

    Raises:
      ValueError: a bad config, missing data, images that do not fit the model, an unwritable
        workdir, a workdir that holds a different run, or fewer ``train.epochs`` than the run in
        it has trained. Nothing in the workdir is changed then.
    """
    stream = sys.stderr if stream is None else stream
    finished = workdir_lib.finished_summary(workdir, config)  # left alone: nothing is rewritten
    if finished is not None:
        print(f"{workdir}: already finished ({finished.get('steps')} steps)", file=stream)
        return finished
    source = streaming.open_train_source(config)  # None: the training set lives on the device
    exp = build_lib.build(config, mesh=mesh, dataset=source.dataset if source else None)
    session = Session(exp, workdir, stream)
    try:
        feed = streaming.make_feed(exp, source, session.start_step, session.total)
        session.compile_s = feed.compile(session.state)
    except BaseException:
        session.close()
        raise
    state, session.state = session.state, None  # the engine donates it
    (summary,) = drive([session], feed, state)
    return summary


def draw(exp: build_lib.Experiment, state, workdir: str, *, kl_per_dim=None) -> list[str]:
    """Every picture of the run from ``state``, and curves.png from metrics.jsonl (also what
    ``jaxvae plot`` redraws for a finished or running run); returns the paths."""
    written = pictures.write_pictures(
        workdir,
        exp.model,
        state.params,
        state.model_state,
        exp.split("test"),
        exp.keys["pictures"],
        exp.config.eval.num_pictures,
        kl_per_dim=kl_per_dim,
    )
    metrics = layout.path(workdir, layout.METRICS)
    if os.path.exists(metrics):
        written.append(curves.plot_curves(metrics, layout.path(workdir, layout.CURVES)))
    return written


def _png(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)


def final_summary(exp: build_lib.Experiment, state: engine_lib.TrainState) -> dict[str, Any]:
    """The test figures, the NLL bound when asked for (``eval.iwae_k``), the data protocol and
    the run's facts."""
    config, model = exp.config, exp.model
    summary: dict[str, Any] = test_metrics(exp, state)
    if config.eval.iwae_k and model.has_likelihood:
        test = exp.split("test")
        n_iwae = min(config.eval.iwae_num_examples, test["image"].shape[0])
        iw = evaluate.evaluate_iwae(
            model,
            state.params,
            state.model_state,
            {k: v[:n_iwae] for k, v in test.items()},
            exp.keys["eval"],
            k=config.eval.iwae_k,
            mesh=exp.mesh,
        )
        summary |= {
            "test_nll": iw["nll"],
            "test_nll_se": iw["nll_se"],
            "iwae_k": iw["iwae_k"],
            "iwae_num_examples": iw["num_examples"],
        }
    summary |= nats_in_bits(model, summary)
    summary |= {
        "dataset": exp.dataset.name,
        "model": f"{model.name}/{model.architecture}",
        "likelihood": model.likelihood.name,
        "objective": exp.objective.name,
        "epochs": config.train.epochs,
        "steps": int(state.step),
        "seed": config.seed,
        "skipped_steps": int(state.skipped),
        "num_params": num_params(state.params),
        "params_digest": params_digest(state.params),
        "devices": exp.mesh.devices.size,
        "processes": jax.process_count(),
        "peak_host_memory_mb": peak_rss_mb(),
    }
    protocol = getattr(exp.dataset, "protocol", None)
    if protocol:
        summary["data_protocol"] = protocol
    return summary


def nats_in_bits(model, figures: dict[str, Any]) -> dict[str, float]:
    """Bits per dimension of the negative ELBO and NLL, for likelihoods over 8-bit values."""
    from jaxvae import likelihoods

    if not model.likelihood.discrete_8bit:
        return {}
    out = {}
    for name in ("test_nelbo", "test_nll"):
        if name in figures:
            out[name.replace("test_", "test_bpd_")] = likelihoods.bits_per_dim(
                figures[name], model.image_shape
            )
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:  # not on POSIX
        return psutil.Process().memory_info().rss / 2**20
