"""``jaxvae study run``: train every run of a study (or of one shard) that is not done yet.

Each run is an ordinary jaxvae run directory, trained by ``jaxvae.runner.train``; a run directory
left by a killed process resumes from its checkpoint there. A run that raises is recorded with its
error and the others go on. Runs that a live process holds (another shard, or a second process
started on the same directory without ``--shard``) are left to it, so several processes can also
share a study by taking whatever is still pending.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from jaxvae.studies import definition, state


@dataclasses.dataclass
class Outcome:
    """What one ``study run`` did with its share of the runs."""

    runs: int  # runs in this shard
    trained: list[str] = dataclasses.field(default_factory=list)
    done_before: list[str] = dataclasses.field(default_factory=list)
    elsewhere: list[str] = dataclasses.field(default_factory=list)  # held by a live process
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> error

    def line(self) -> str:
        parts = [
            f"{len(self.trained)} trained",
            f"{len(self.done_before)} done before",
            f"{len(self.elsewhere)} running elsewhere",
            f"{len(self.failed)} failed",
        ]
        text = f"{self.runs} runs: " + ", ".join(parts)
        if self.failed:
            text += " (" + "; ".join(f"{k}: {v}" for k, v in self.failed.items()) + ")"
        return text


def _default_train(config, workdir: str) -> dict[str, Any]:
    from jaxvae import runner

    return runner.train(config, workdir)


def run_study(
    study: definition.Study,
    workdir: str,
    *,
    shard: tuple[int, int] = (0, 1),
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    train: Callable[[Any, str], dict[str, Any]] = _default_train,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> Outcome:
    """Trains the pending runs of ``study``'s shard ``shard`` in ``workdir``.

    Args:
      study: the study.
      workdir: the study directory.
      shard: ``(I, N)``: this process takes the runs whose canonical index is I mod N.
      seeds: keep the first ``seeds`` seeds only.
      overrides: ``"KEY=VALUE"`` config overrides applied to every run (recorded in study.json).
      train: ``(config, run_dir) -> summary``; the jaxvae runner.
      log: where progress lines go.

    Raises:
      ValueError: a bad study, shard, seed count or override, or a directory that holds another
        study (before anything is written). A run that fails does not raise: see
        :attr:`Outcome.failed`.
    """
    runs = definition.expand(study, seeds=seeds, overrides=overrides)
    mine = definition.shard(runs, *shard)
    study_json = definition.canonical(study, runs, overrides=overrides)
    state.init_study_dir(workdir, study_json)
    configs = {r["name"]: r["config"] for r in study_json["identity"]["runs"]}
    outcome = Outcome(runs=len(mine))
    where = f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else ""
    log(f"study {study.name}{where}: {len(mine)} of {len(runs)} runs in {workdir}")
    for k, run in enumerate(mine, 1):
        tag = f"[{k}/{len(mine)}] {run.name}"
        if state.summary_of(workdir, run.name, configs[run.name]) is not None:
            outcome.done_before.append(run.name)
            continue
        lock = state.RunLock(state.lock_path(workdir, run.name))
        if not lock.acquire():
            log(f"{tag}: running in another process; left to it")
            outcome.elsewhere.append(run.name)
            continue
        try:
            # It may have finished between the first look and the lock.
            if state.summary_of(workdir, run.name, configs[run.name]) is not None:
                outcome.done_before.append(run.name)
                continue
            state.clear_failure(workdir, run.name)
            log(f"{tag}: training in {state.run_dir(workdir, run.name)}")
            try:
                summary = train(run.config, state.run_dir(workdir, run.name))
            except Exception as e:  # noqa: BLE001 -- recorded; the other runs go on
                record = state.record_failure(workdir, run.name, e)
                outcome.failed[run.name] = record["error"]
                log(f"{tag}: FAILED: {record['error']}")
                continue
            outcome.trained.append(run.name)
            shown = ", ".join(
                f"{m} {summary[m]:.4g}"
                for m in study.metrics
                if isinstance(summary.get(m), int | float)
            )
            log(f"{tag}: done ({shown})")
        finally:
            lock.release()
    log(f"study {study.name}{where}: {outcome.line()}")
    return outcome
