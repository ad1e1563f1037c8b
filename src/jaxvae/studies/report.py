"""``jaxvae study status`` and ``jaxvae study report``: where a study stands, and its results.

The report reads only the study directory (``study.json`` and each run's ``summary.json`` and
``metrics.jsonl``) and writes ``DIR/report/``: ``report.md`` (mean +- std over seeds and n per
variant, references beside them with the difference), ``results.csv`` (a row per run, every seed's
values), ``results.json``, ``learning_curves.png``, ``comparison.png`` (left out when one of the
study's own figures shows the same again, as the ``distributions`` kind does) and the study's own
figures.
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
from jaxvae.studies import figures, state

STATES = (state.DONE, state.RUNNING, state.FAILED, state.PENDING)


def counts_line(states: list[str], grid: str = "") -> str:
    """``N runs<grid>: a done, b running, c failed, d pending`` of the runs' ``states``."""
    c = Counter(states)
    return f"{len(states)} runs{grid}: " + ", ".join(f"{c[k]} {k}" for k in STATES)


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """``(mean, sample std with ddof=1, n)`` of the finite ``values``; NaN where undefined."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if (n := int(x.size)) == 0:
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


def read_lines(path: str) -> list[dict[str, Any]]:
    """The lines of a run's ``metrics.jsonl`` (a last line torn by a kill left out); none when
    the file cannot be read or is damaged elsewhere."""
    try:
        return io.read_jsonl(path)
    except (OSError, ValueError):
        return []


def _read_curves(path: str, keys: list[str]) -> dict[str, list[tuple[int, float, float]]]:
    """``key -> [(step, epoch, value)]`` from a run's ``metrics.jsonl``.

    A test metric (``test_*``) is a value at its step. A train term is the mean over the steps
    since the previous line that has it, so it is placed at the middle of those steps: windows of
    different lengths (a short one at an epoch's end) then lie on one curve. A last line torn by
    a kill is left out; a file that cannot be read, or is damaged elsewhere, gives no curves.
    """
    out: dict[str, list[tuple[int, float, float]]] = {k: [] for k in keys}
    previous = {k: (0, 0.0) for k in keys}
    for r in filter(lambda r: "step" in r, read_lines(path)):
        step, epoch = int(r["step"]), float(r.get("epoch", r["step"]))
        for k in keys:
            if not math.isfinite(v := figures.number(r.get(k))):
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
        summary = st.summary
        row = {k: run[k] for k in ("name", "variant", "seed")} | {"state": st.state}
        runs.append(
            row | {"detail": st.detail, "values": {m: (summary or {}).get(m) for m in metrics}}
        )
        if summary is None:
            continue
        for m in metrics:
            values[run["variant"]][m].append(figures.number(summary.get(m)))
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


def markdown_table(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def results_table(data: ReportData) -> list[str]:
    """The markdown table of mean ± std per variant (rows) and metric (columns)."""
    body = []
    for v in data.variants:
        stats = [data.stats(v["name"], m) for m in data.metrics]
        n = max((s[2] for s in stats), default=0)
        body.append([v["name"], str(n), *(fmt_mean_std(mean, std) for mean, std, _ in stats)])
    return markdown_table(
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
    return markdown_table(header, body, {2, 3, 4, 5})


def _markdown(data: ReportData, figure_files: list[tuple[str, str, list[str]]]) -> str:
    seeds = sorted({r["seed"] for r in data.runs})
    lines = [f"# Study `{data.name}`", ""]
    if data.description:
        lines += [data.description.strip(), ""]
    grid = f" ({len(data.variants)} variants x {len(seeds)} seeds {seeds})"
    lines.append(counts_line([r["state"] for r in data.runs], grid) + ".")
    if any(r["state"] != state.DONE for r in data.runs):
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
        lines += [*reference_table(data), "", "difference: this study's mean minus the reference."]
    else:
        lines.append("This study has no reference values.")
    lines += ["", "## Figures", ""]
    for title, file, text in figure_files:
        lines += [f"### {title}", "", f"![{title}]({file})", "", *text]
    if failed := [[r["name"], r["detail"]] for r in data.runs if r["state"] == state.FAILED]:
        lines += ["## Failed runs", "", *markdown_table(["run", "error"], failed, set()), ""]
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
    data = collect(workdir)
    out = os.path.join(workdir, state.REPORT)
    storage.makedirs(out)
    paths = {name: os.path.join(out, name) for name in ("report.md", "results.csv", "results.json")}
    write_results_csv(paths["results.csv"], data)
    results = {
        "study": data.name,
        "overrides": data.overrides,
        "counts": {k: sum(r["state"] == k for r in data.runs) for k in STATES},
        "metrics": data.metrics,
        "runs": [dict(r, values={m: r["values"][m] for m in data.metrics}) for r in data.runs],
        "rows": rows(data),
    }
    io.write_json(paths["results.json"], results)
    figure_files = []
    replaced = {r for spec in data.figures for r in figures.KINDS[spec["kind"]].replaces}
    for name, (title, draw) in figures.STANDARD.items():
        file = f"{name}.png"
        if name in replaced:
            continue
        if draw(data, path := os.path.join(out, file)):
            paths[file] = path
            figure_files.append((title, file, []))
    for spec in data.figures:
        file = f"{spec['name']}.png"
        kind = figures.KINDS[spec["kind"]]
        paths[file] = os.path.join(out, file)
        kind.draw(data, spec, paths[file])
        text = kind.text(data, spec) if kind.text else []
        figure_files.append((spec["title"] or figures.default_title(spec), file, text))
    io.write_atomic(paths["report.md"], _markdown(data, figure_files))
    return paths
