"""``jaxvae study status`` and ``jaxvae study report``: where a study stands, and its results.

The report reads only the study directory (``study.json`` and each run's ``summary.json`` and
``metrics.jsonl``) and writes ``DIR/report/``: ``report.md`` (mean +- std over seeds and n per
variant, references beside them with the difference), ``results.csv`` (a row per run, every seed's
values), ``results.json``, ``learning_curves.png``, ``comparison.png`` and the study's own figures.
Statistics are over the finished runs: the mean and the sample standard deviation (ddof=1; none
for a single seed).
"""

from __future__ import annotations

import csv
import dataclasses
import io as io_lib
import math
import os
from collections import Counter
from typing import Any

import numpy as np

from jaxvae import io, layout, storage
from jaxvae.studies import state

STATES = (state.DONE, state.RUNNING, state.FAILED, state.PENDING)


def status(workdir: str) -> list[state.RunState]:
    """The state of every run of the study in ``workdir``, in the canonical order."""
    study_json = state.read_study(workdir)
    return [state.run_state(workdir, run) for run in study_json["identity"]["runs"]]


def counts_line(states) -> str:
    """``N runs: a done, b running, c failed, d pending`` of anything with a ``state``."""
    c = Counter(s.state for s in states)
    return f"{len(states)} runs: " + ", ".join(f"{c[k]} {k}" for k in STATES)


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """``(mean, sample std with ddof=1, n)`` of the finite ``values``; NaN where undefined."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if n > 1 else math.nan, n


@dataclasses.dataclass
class ReportData:
    """Everything the tables and figures show, read from a study directory.

    Attributes:
      name: the study's name.
      description: its description.
      overrides: the command-line overrides of every run.
      axes: ``[{"name", "values"}]`` of the grid.
      variants: ``[{"name", "coords"}]`` in grid order.
      metrics: the reported metrics.
      runs: ``[{"name", "variant", "seed", "state", "detail", "values": {metric: value}}]``.
      values: variant -> metric -> the finished runs' values, in seed order.
      references: ``(variant, metric)`` -> ``{"value", "std", "source"}``.
      curves: curve key -> variant -> one ``[(step, epoch, value)]`` per finished run.
      figures: the study's extra figures (``definition.Figure`` fields as dicts).
    """

    name: str
    description: str
    overrides: dict[str, str]
    axes: list[dict[str, Any]]
    variants: list[dict[str, Any]]
    metrics: list[str]
    runs: list[dict[str, Any]]
    values: dict[str, dict[str, list[float]]]
    references: dict[tuple[str, str], dict[str, Any]]
    curves: dict[str, dict[str, list[list[tuple[int, float, float]]]]]
    figures: list[dict[str, Any]]

    def stats(self, variant: str, metric: str) -> tuple[float, float, int]:
        return mean_std(self.values[variant][metric])


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x)


def _read_curves(path: str, keys: list[str]) -> dict[str, list[tuple[int, float, float]]]:
    """``key -> [(step, epoch, value)]`` from a run's ``metrics.jsonl``.

    A test metric (``test_*``) is a value at its step. A train term is the mean over the steps
    since the previous line that has it, so it is placed at the middle of those steps: windows of
    different lengths (a short one at an epoch's end) then lie on one curve. A last line torn by
    a kill is left out; a file that cannot be read, or is damaged elsewhere, gives no curves.
    """
    out: dict[str, list[tuple[int, float, float]]] = {k: [] for k in keys}
    try:
        records = io.read_jsonl(path)
    except (OSError, ValueError):
        return out
    previous = {k: (0, 0.0) for k in keys}
    for r in records:
        if "step" not in r:
            continue
        step, epoch = int(r["step"]), float(r.get("epoch", r["step"]))
        for k in keys:
            v = _number(r.get(k))
            if v is None or not math.isfinite(v):
                continue
            at = epoch if k.startswith("test_") else (previous[k][1] + epoch) / 2
            out[k].append((step, at, v))
            previous[k] = (step, epoch)
    return out


def collect(workdir: str) -> ReportData:
    """Reads the study in ``workdir`` into a :class:`ReportData`."""
    study_json = state.read_study(workdir)
    identity, settings = study_json["identity"], study_json["report"]
    metrics = settings["metrics"]
    variants = [{"name": v["name"], "coords": v["coords"]} for v in identity["variants"]]
    values = {v["name"]: {m: [] for m in metrics} for v in variants}
    curves = {k: {v["name"]: [] for v in variants} for k in settings["curves"]}
    runs = []
    for run in identity["runs"]:
        st = state.run_state(workdir, run)
        done = st.state == state.DONE
        summary = state.summary_of(workdir, run["name"], run["config"]) if done else None
        row = {k: run[k] for k in ("name", "variant", "seed")} | {"state": st.state}
        runs.append(
            row | {"detail": st.detail, "values": {m: (summary or {}).get(m) for m in metrics}}
        )
        if summary is None:
            continue
        for m in metrics:
            v = _number(summary.get(m))
            values[run["variant"]][m].append(math.nan if v is None else v)
        metrics_path = layout.path(state.run_dir(workdir, run["name"]), layout.METRICS)
        for k, points in _read_curves(metrics_path, settings["curves"]).items():
            curves[k][run["variant"]].append(points)
    references = {
        (r["variant"], r["metric"]): {"value": r["value"], "std": r["std"], "source": r["source"]}
        for r in settings["references"]
    }
    study = (identity["name"], settings["description"], identity["overrides"], identity["axes"])
    found = (variants, metrics, runs, values, references, curves)
    return ReportData(*study, *found, figures=settings["figures"])


# --- tables ------------------------------------------------------------------------------------


def _decimals(std: float, mean: float) -> int:
    if math.isfinite(std) and std > 0:
        return int(min(6, max(0, 1 - math.floor(math.log10(std)))))
    if (std == 0 or math.isnan(std)) and math.isfinite(mean) and mean == round(mean):
        return 0  # 16 ± 0; a lone 16
    magnitude = math.floor(math.log10(abs(mean))) if math.isfinite(mean) and mean != 0 else 0
    return int(min(6, max(0, 3 - magnitude)))


def fmt_mean_std(mean: float, std: float) -> str:
    """``240.53 ± 0.41``: the std to two significant digits and the mean to the same place."""
    if not math.isfinite(mean):
        return "–"
    d = _decimals(std, mean)
    return f"{mean:.{d}f} ± {std:.{d}f}" if math.isfinite(std) else f"{mean:.{d}f}"


def rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per (variant, metric): the statistics, every value, the reference, the difference."""
    out = []
    for v in data.variants:
        for m in data.metrics:
            mean, std, n = data.stats(v["name"], m)
            ref = data.references.get((v["name"], m))
            out.append(
                {
                    "variant": v["name"],
                    "coords": v["coords"],
                    "metric": m,
                    "n": n,
                    "mean": _json_float(mean),
                    "std": _json_float(std),
                    "values": [_json_float(x) for x in data.values[v["name"]][m]],
                    "reference": ref,
                    "difference": _json_float(mean - ref["value"]) if ref and n else None,
                }
            )
    return out


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _markdown_table(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def results_table(data: ReportData) -> list[str]:
    """The markdown table of mean ± std per variant (rows) and metric (columns)."""
    body = []
    for v in data.variants:
        n = max((data.stats(v["name"], m)[2] for m in data.metrics), default=0)
        cells = [v["name"], str(n)]
        cells += [fmt_mean_std(*data.stats(v["name"], m)[:2]) for m in data.metrics]
        body.append(cells)
    return _markdown_table(
        ["variant", "n", *data.metrics], body, set(range(1, 2 + len(data.metrics)))
    )


def reference_table(data: ReportData) -> list[str]:
    body = []
    for (variant, metric), ref in data.references.items():
        mean, std, n = data.stats(variant, metric)
        ref_std = ref["std"]
        d = _decimals(std if math.isfinite(std) else (ref_std or math.nan), mean)
        ref_text = f"{ref['value']:.{d}f}" + (f" ± {ref_std:.{d}f}" if ref_std is not None else "")
        diff = f"{mean - ref['value']:+.{d}f}" if n else "–"
        body.append(
            [variant, metric, fmt_mean_std(mean, std), str(n), ref_text, diff, ref["source"]]
        )
    header = ["variant", "metric", "this study", "n", "reference", "difference", "source"]
    return _markdown_table(header, body, {2, 3, 4, 5})


def _markdown(data: ReportData, figure_files: list[tuple[str, str, list[str]]]) -> str:
    seeds = sorted({r["seed"] for r in data.runs})
    lines = [f"# Study `{data.name}`", ""]
    if data.description:
        lines += [data.description.strip(), ""]
    c = Counter(r["state"] for r in data.runs)
    grid = f"{len(data.variants)} variants x {len(seeds)} seeds {seeds}"
    lines.append(
        f"{len(data.runs)} runs ({grid}): " + ", ".join(f"{c[k]} {k}" for k in STATES) + "."
    )
    if c[state.DONE] < len(data.runs):
        lines.append("**Incomplete**: the figures below are over the finished runs only.")
    if data.overrides:
        shown = ", ".join(f"`{k}={v}`" for k, v in data.overrides.items())
        lines.append(f"Every run with the overrides {shown}.")
    lines += [
        "",
        "Each cell: mean ± standard deviation over seeds (sample std, ddof=1; a lone seed has "
        "none); n: the finished seeds. Every run's values are in `results.csv`.",
        "",
        "## Results",
        "",
        *results_table(data),
        "",
        "## Against references",
        "",
    ]
    if data.references:
        lines += [
            *reference_table(data),
            "",
            "difference: this study's mean minus the reference.",
            "",
        ]
    else:
        lines += ["This study has no reference values.", ""]
    lines += ["## Figures", ""]
    for title, file, text in figure_files:
        lines += [f"### {title}", "", f"![{title}]({file})", "", *text]
    failed = [r for r in data.runs if r["state"] == state.FAILED]
    if failed:
        lines += ["## Failed runs", ""]
        lines += _markdown_table(
            ["run", "error"], [[r["name"], r["detail"]] for r in failed], set()
        )
        lines.append("")
    return "\n".join(lines)


def _csv_value(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return repr(x) if isinstance(x, float) else str(x)


def write_results_csv(path: str, data: ReportData) -> None:
    axis_names = [a["name"] for a in data.axes]
    coords = {v["name"]: v["coords"] for v in data.variants}
    text = io_lib.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["run", "variant", *axis_names, "seed", "state", *data.metrics])
    for r in data.runs:
        c = coords[r["variant"]]
        cells = [r["name"], r["variant"], *(_csv_value(c.get(a)) for a in axis_names), r["seed"]]
        w.writerow([*cells, r["state"], *(_csv_value(r["values"][m]) for m in data.metrics)])
    io.write_atomic(path, text.getvalue())


def write_report(workdir: str) -> dict[str, str]:
    """Writes ``DIR/report/`` and returns the paths it wrote, by name."""
    from jaxvae.studies import figures

    data = collect(workdir)
    out = state.report_dir(workdir)
    storage.makedirs(out)
    paths = {name: os.path.join(out, name) for name in ("report.md", "results.csv", "results.json")}
    write_results_csv(paths["results.csv"], data)
    c = Counter(r["state"] for r in data.runs)
    results = {
        "study": data.name,
        "overrides": data.overrides,
        "counts": {k: c[k] for k in STATES},
        "metrics": data.metrics,
        "runs": [dict(r, values={m: r["values"][m] for m in data.metrics}) for r in data.runs],
        "rows": rows(data),
    }
    io.write_json(paths["results.json"], results)
    figure_files = []
    for name, (title, draw) in figures.STANDARD.items():
        file = f"{name}.png"
        if draw(data, os.path.join(out, file)):
            paths[file] = os.path.join(out, file)
            figure_files.append((title, file, []))
    for spec in data.figures:
        file = f"{spec['name']}.png"
        kind = figures.KINDS[spec["kind"]]
        kind.draw(data, spec, os.path.join(out, file))
        paths[file] = os.path.join(out, file)
        text = kind.text(data, spec) if kind.text else []
        figure_files.append((spec["title"] or figures.default_title(spec), file, text))
    io.write_atomic(paths["report.md"], _markdown(data, figure_files))
    return paths
