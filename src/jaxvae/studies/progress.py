"""``jaxvae study status``: each run's state, its steps done of the steps planned, and an
estimate of the time left.

- **Steps planned**: ``train.epochs`` x the steps of an epoch (the run's training images, from
  its ``run.json``, // ``train.batch_size``). A run that has not started borrows the image count
  of a started run with the same ``data`` settings; with none, its plan is not known yet. A
  finished run planned what it trained (fewer steps when it stopped early).
- **Steps done**: a finished run's trained steps; a running run's last training line in
  ``metrics.jsonl``; any other run's newest checkpoint (what resuming keeps).
- **Rate**: every training line of ``metrics.jsonl`` carries ``images_per_sec``, the training
  throughput of the process that wrote it since that process took the run over (its training
  dispatches, host syncs included); the run's rate is its newest line's, divided by the batch
  size, in steps per second. A run without a line of its own takes the mean rate of the measured
  runs of its variant, or, when none of those has trained yet, of the measured runs of its model
  family (``model.kind``: the variants of one family share its networks, so their steps cost
  alike); a family none of whose runs has trained yet has no estimate.
- **Time left** of a run: its steps left / its rate. Of the study: the sum over its runs, the
  time of one process training one run after another at the measured rates. It counts training
  only: evaluation (the validation figure of every epoch under early stopping, the test figures,
  the final NLL) and compilation come on top, while early stopping may end runs sooner. Runs
  trained at the same time (``--shard`` processes, ``--seeds-at-once``: each seed of a group
  advances at the group's rate) finish sooner than the sum.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from jaxvae import io, layout
from jaxvae.studies import report, state


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """Where one run stands.

    Attributes:
      name, variant: the run and its variant.
      state, detail: as :class:`jaxvae.studies.state.RunState`.
      done: the steps done.
      planned: the steps planned (``None``: not known yet).
      rate: training steps per second (``None``: not measured for its variant or family).
      measured: whether ``rate`` is the run's own (else its variant's mean).
    """

    name: str
    variant: str
    state: str
    detail: str
    done: int
    planned: int | None
    rate: float | None
    measured: bool

    @property
    def left(self) -> int | None:
        """Steps left (``None``: the plan is not known)."""
        return None if self.planned is None else max(self.planned - self.done, 0)

    @property
    def left_s(self) -> float | None:
        """Seconds of training left at ``rate`` (``None``: no estimate)."""
        if self.left == 0:
            return 0.0
        return None if self.left is None or not self.rate else self.left / self.rate


def _measure(workdir: str, run: dict[str, Any], st: state.RunState) -> dict[str, Any]:
    """What one run's directory says: steps done, its training images, its own rate."""
    directory = state.run_dir(workdir, run["name"])
    batch = run["config"]["train"]["batch_size"]
    try:
        info = io.read_json(layout.path(directory, layout.RUN_INFO))
    except (OSError, ValueError):
        info = {}
    records = report.read_lines(layout.path(directory, layout.METRICS))
    lines = [r for r in records if "images_per_sec" in r and "step" in r]  # training lines
    rate = lines[-1]["images_per_sec"] / batch if lines else math.nan
    if st.state == state.DONE:
        done = int(st.summary.get("trained_steps", st.summary.get("steps", 0)))
    else:
        done = max(state.checkpoint_steps(directory), default=0)
        if st.state == state.RUNNING and lines:
            done = max(done, int(lines[-1]["step"]))
    num_train = n if isinstance(n := info.get("num_train"), int) else None
    return {"done": done, "num_train": num_train, "rate": rate if 0 < rate < math.inf else None}


def _data_key(run: dict[str, Any]) -> str:
    return json.dumps(run["config"].get("data", {}), sort_keys=True)


def progress(workdir: str) -> list[RunProgress]:
    """The progress of every run of the study in ``workdir``, in the canonical order."""
    runs = state.read_study(workdir)["identity"]["runs"]
    states = [state.run_state(workdir, run) for run in runs]
    measured = [_measure(workdir, run, st) for run, st in zip(runs, states, strict=True)]
    num_train: dict[str, int] = {}  # data settings -> training images, from started runs
    rates: dict[str, list[float]] = {}  # variant, or model family -> its measured runs' rates
    family = lambda run: "model.kind=" + run["config"]["model"]["kind"]
    for run, m in zip(runs, measured, strict=True):
        if m["num_train"] is not None:
            num_train.setdefault(_data_key(run), m["num_train"])
        if m["rate"] is not None:
            rates.setdefault(run["variant"], []).append(m["rate"])
            rates.setdefault(family(run), []).append(m["rate"])
    out = []
    for run, st, m in zip(runs, states, measured, strict=True):
        train = run["config"]["train"]
        images = m["num_train"] or num_train.get(_data_key(run)) or 0
        planned = train["epochs"] * (images // train["batch_size"]) or None
        planned = m["done"] if st.state == state.DONE else planned
        mean = rates.get(run["variant"]) or rates.get(family(run))
        rate = m["rate"] or (sum(mean) / len(mean) if mean else None)
        where = (run["name"], run["variant"], st.state, st.detail)
        out.append(RunProgress(*where, m["done"], planned, rate, measured=bool(m["rate"])))
    return out


def format_duration(seconds: float) -> str:
    """``2 d 3 h``, ``3 h 25 min``, ``12 min 5 s``, ``40 s``."""
    s = int(round(seconds))
    days, hours, minutes, rest = s // 86400, s % 86400 // 3600, s % 3600 // 60, s % 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{s} s"


def totals(runs: list[RunProgress]) -> dict[str, Any]:
    """The study's steps done and planned (over the runs whose plan is known), the seconds of
    training left (over the runs with an estimate), the runs without a plan, and the planned runs
    without a rate."""
    known = [r for r in runs if r.planned is not None]
    estimated = [r for r in runs if r.left_s is not None]
    return {
        "done": sum(r.done for r in known),
        "planned": sum(r.planned for r in known),
        "left_s": sum(r.left_s for r in estimated),
        "unplanned": len(runs) - len(known),
        "unestimated": len(known) - len(estimated),
    }


def total_line(runs: list[RunProgress]) -> str:
    """``total: D of P steps (x %), about T of training left at the measured rates``."""
    t = totals(runs)
    share = f" ({100 * t['done'] / t['planned']:.1f} %)" if t["planned"] else ""
    text = f"total: {t['done']} of {t['planned']} steps{share}"
    if t["unplanned"]:
        text += f" ({t['unplanned']} run(s) not planned yet: none of their data started)"
    if all(r.state == state.DONE for r in runs):
        return text + ", every run done"
    if any(r.left_s is not None and r.state != state.DONE for r in runs):
        text += f", about {format_duration(t['left_s'])} of training left at the measured rates"
    if t["unestimated"]:
        text += f" (+ {t['unestimated']} run(s) of model families not measured yet)"
    return text


def format_status(runs: list[RunProgress]) -> str:
    """The text of ``jaxvae study status``: a line per run under a header, the total, then the
    counts. A rate marked ``*`` is its variant's mean (else its model family's)."""
    rows = [["run", "state", "steps", "rate", "left", ""]]
    for r in runs:
        rate = left = ""
        if r.state != state.DONE:
            rate = f"{r.rate:.3g} steps/s" + ("" if r.measured else "*") if r.rate else "-"
            left = format_duration(r.left_s) if r.left_s is not None else "-"
        planned = r.planned if r.planned is not None else "?"
        rows.append([r.name, r.state, f"{r.done}/{planned}", rate, left, r.detail])
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)), row[5]]).rstrip()
        for row in rows
    ]
    lines.append(total_line(runs))
    if any(r.rate and not r.measured and r.state != state.DONE for r in runs):
        lines.append("* the mean rate of the variant's measured runs (else its model family's)")
    return "\n".join([*lines, report.counts_line([r.state for r in runs])])
