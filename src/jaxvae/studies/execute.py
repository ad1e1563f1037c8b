"""``jaxvae study run``: train every run of a study (or of one shard) that is not done yet.

Each run is an ordinary jaxvae run directory, trained by ``jaxvae.train``; a run directory
left by a killed process resumes from its checkpoint there. A run that raises is recorded with its
error and the others go on; a stop request (SIGTERM, Ctrl-C) ends the study after the running
runs' checkpoints (``jaxvae study run`` exits 75, like ``jaxvae train``). Runs that a live
process holds (another shard, or a second process started on the same directory without
``--shard``) are left to it, so several processes can also share a study by taking whatever is
still pending.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from jaxvae.studies import definition, state
from jaxvae.studies import runs as runs_lib


@dataclasses.dataclass
class Outcome:
    """What one ``study run`` did with its share of the runs."""

    runs: int  # runs in this shard
    trained: list[str] = dataclasses.field(default_factory=list)
    done_before: list[str] = dataclasses.field(default_factory=list)
    elsewhere: list[str] = dataclasses.field(default_factory=list)  # held by a live process
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> error

    def line(self) -> str:
        counts = (self.trained, self.done_before, self.elsewhere, self.failed)
        words = ("trained", "done before", "running elsewhere", "failed")
        text = ", ".join(f"{len(c)} {w}" for c, w in zip(counts, words, strict=True))
        text = f"{self.runs} runs: {text}"
        if self.failed:
            text += " (" + "; ".join(f"{k}: {v}" for k, v in self.failed.items()) + ")"
        return text


def run_study(
    study: definition.Study,
    workdir: str,
    *,
    shard: tuple[int, int] = (0, 1),
    select: str | None = None,
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    seeds_at_once: int | None = None,
    train: Callable[[Any, str], dict[str, Any]] | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> Outcome:
    """Trains the pending runs of ``study``'s shard ``shard`` in ``workdir``.

    Args:
      shard: ``(I, N)``: this process takes the runs whose canonical index is I mod N.
      select: comma-separated shell patterns of run names (:func:`jaxvae.studies.runs.select`):
        only those runs are trained, and ``shard`` splits them (the k-th selected run goes to
        shard k mod N); the study and its directory are the whole study's either way.
      seeds: keep the first ``seeds`` seeds only.
      overrides: ``"KEY=VALUE"`` config overrides applied to every run (recorded in study.json).
      seeds_at_once: train up to this many pending seeds of a variant in one vectorized program
        (:mod:`jaxvae.seeds`); ``None``: the backend's default
        (:func:`jaxvae.seeds.default_group_size`); 1: one run at a time. Not part of the study:
        the runs are the same either way.
      train: ``(config, run_dir) -> summary``; default: :func:`jaxvae.train`.

    Raises:
      ValueError: a bad study, shard, seed count, override or ``seeds_at_once``, or a directory
        that holds another study (before anything is written). A run that fails does not raise:
        see :attr:`Outcome.failed`.
    """
    import jaxvae
    from jaxvae import seeds as seeds_lib
    from jaxvae.preemption import Preempted

    train = train or jaxvae.train
    if seeds_at_once is not None and seeds_at_once < 1:
        raise ValueError(f"--seeds-at-once must be >= 1, got {seeds_at_once}")
    runs = runs_lib.expand(study, seeds=seeds, overrides=overrides)
    selected = runs_lib.select(runs, select)
    if select is not None:  # number the selected runs afresh, so shards split them evenly
        selected = [dataclasses.replace(r, index=k) for k, r in enumerate(selected)]
    mine = runs_lib.shard(selected, *shard)
    study_json = runs_lib.canonical(study, runs, overrides=overrides)
    state.init_study_dir(workdir, study_json)
    seeds_at_once = seeds_at_once or seeds_lib.default_group_size()
    configs = {r["name"]: r["config"] for r in study_json["identity"]["runs"]}
    outcome = Outcome(runs=len(mine))
    where = f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else ""
    log(f"study {study.name}{where}: {len(mine)} of {len(runs)} runs in {workdir}")

    def done(run) -> bool:
        return state.summary_of(workdir, run.name, configs[run.name]) is not None

    def tag(run) -> str:
        return f"[{number[run.name]}/{len(mine)}] {run.name}"

    def train_some(todo) -> None:
        """Trains ``todo`` (one run, or seeds of one variant together); records the outcome."""
        dirs = [state.run_dir(workdir, run.name) for run in todo]
        try:
            if len(todo) == 1:
                summaries = [train(todo[0].config, dirs[0])]
            else:
                summaries = seeds_lib.train_seeds([run.config for run in todo], dirs)
        except Preempted:  # checkpoints written: the study stops (exit 75) and resumes later
            raise
        except Exception as e:  # noqa: BLE001 -- recorded; the other runs go on
            for run in todo:
                if done(run):  # a seed that stopped early finished before the group failed
                    outcome.trained.append(run.name)
                    continue
                outcome.failed[run.name] = state.record_failure(workdir, run.name, e)["error"]
                log(f"{tag(run)}: FAILED: {outcome.failed[run.name]}")
            return
        for run, summary in zip(todo, summaries, strict=True):
            outcome.trained.append(run.name)
            shown = {m: v for m in study.metrics if isinstance(v := summary.get(m), int | float)}
            log(f"{tag(run)}: done ({', '.join(f'{m} {v:.4g}' for m, v in shown.items())})")

    number = {run.name: k for k, run in enumerate(mine, 1)}
    pending = [run for run in mine if not done(run)]
    outcome.done_before += [run.name for run in mine if run not in pending]
    for group in seeds_lib.groups([r.config for r in pending], seeds_at_once):
        with contextlib.ExitStack() as held:  # the locks, released however the group ends
            todo = []
            for run in (pending[i] for i in group):
                lock = state.RunLock(state.lock_path(workdir, run.name))
                if not lock.acquire():
                    log(f"{tag(run)}: running in another process; left to it")
                    outcome.elsewhere.append(run.name)
                    continue
                held.callback(lock.release)
                if done(run):  # it may have finished between the first look and the lock
                    outcome.done_before.append(run.name)
                    continue
                state.clear_failure(workdir, run.name)
                log(f"{tag(run)}: training in {state.run_dir(workdir, run.name)}")
                todo.append(run)
            if todo:
                train_some(todo)
    log(f"study {study.name}{where}: {outcome.line()}")
    return outcome
