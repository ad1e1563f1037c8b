"""The report's figures: learning curves and the comparison for every study, and figure kinds that
a study asks for by name (``Figure(kind="metrics" | "axis", ...)``).

A kind is a ``check(figure, study)`` that validates a figure when the study is made and a
``draw(data, spec, path)`` that plots it from :class:`jaxvae.studies.report.ReportData`; adding a
kind adds an entry to :data:`KINDS`, not a branch. Mean and error bars are over seeds (±1 sample
std); small grey dots are the single seeds; references are red diamonds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import matplotlib
import numpy as np

from jaxvae import io, plots

REFERENCE_STYLE = {"marker": "D", "color": "#d62728", "markersize": 7, "zorder": 5}
REFERENCE_BAR = {"fmt": "D", "color": "#d62728", "capsize": 3, "ms": 6, "zorder": 5}
SEED_STYLE = {"marker": ".", "color": "0.4", "s": 22, "zorder": 4, "linewidths": 0}


def _colors(data, n: int) -> list:
    """A sequential palette for a grid on one numeric axis (the order means something), else
    categorical colours."""
    numeric = len(data.axes) == 1 and all(not math.isnan(number(v)) for v in data.axes[0]["values"])
    if numeric:
        return [matplotlib.colormaps["viridis"](x) for x in np.linspace(0.0, 0.85, max(n, 2))][:n]
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def number(x: Any) -> float:
    """``x`` as a float; NaN when it is not a real number (a bool, ``None``, text)."""
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def _save(fig, path: str) -> None:
    """Lays ``fig`` out and writes it as a PNG (atomically; ``path`` may be a URL)."""
    fig.tight_layout()
    io.write_figure(path, fig, dpi=110, bbox_inches="tight")


def panels(n: int, cols: int, width: float, height: float, **options: Any):
    """A figure of ``n`` panels of ``width`` x ``height`` inches, at most ``cols`` to a row: the
    figure and its axes in a flat list (those past ``n`` hidden)."""
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = plots.figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False, **options)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _seed_count(data) -> str:
    ns = sorted({len(vals) for by_metric in data.values.values() for vals in by_metric.values()})
    return "0" if not ns else f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


def _seed_note(data) -> str:
    return f"mean ± 1 std over seeds (n = {_seed_count(data)})"


# --- standard figures --------------------------------------------------------------------------


def _mean_curve(runs: list[list[tuple[int, float, float]]]):
    """Mean and std over runs at the steps every run logged: ``(epochs, mean, std)``."""
    by_step = [{s: (e, v) for s, e, v in r} for r in runs if r]
    steps = sorted(set.intersection(*map(set, by_step))) if by_step else []
    if not steps:
        return None
    epochs = np.asarray([by_step[0][s][0] for s in steps])
    vals = np.asarray([[d[s][1] for s in steps] for d in by_step])
    std = vals.std(axis=0, ddof=1) if len(vals) > 1 else np.zeros(len(steps))
    return epochs, vals.mean(axis=0), std


def learning_curves(data, path: str) -> bool:
    """One panel per logged curve: a line per variant, the band ±1 std over seeds."""
    keys = [k for k, by_variant in data.curves.items() if any(any(r) for r in by_variant.values())]
    if not keys:
        return False
    fig, axes = panels(len(keys), 3, 4.6, 3.4, sharex=True)
    colors = _colors(data, len(data.variants))
    for ax, key in zip(axes, keys, strict=False):
        for v, color in zip(data.variants, colors, strict=True):
            curve = _mean_curve(data.curves[key][v["name"]])
            if curve is None:
                continue
            epochs, mean, std = curve
            few = len(epochs) <= 3
            ax.plot(epochs, mean, color=color, label=v["name"], marker="o" if few else None, ms=4)
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set(title=key if key.startswith("test_") else f"{key} (train)", xlabel="epoch")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(
        f"{data.name}: learning curves; lines: mean over seeds (n = {_seed_count(data)}), "
        "bands: ±1 std; train terms at the middle of each logged window"
    )
    _save(fig, path)
    return True


def comparison(data, path: str) -> bool:
    """One panel per metric: each variant's mean with ±1 std error bars, its seeds, the reference."""
    if not data.metrics:
        return False
    width = max(4.8, 0.55 * len(data.variants) + 2.0)
    fig, axes = panels(len(data.metrics), 2, width, 3.6)
    colors = _colors(data, len(data.variants))
    names = [v["name"] for v in data.variants]
    x = np.arange(len(names))
    for ax, metric in zip(axes, data.metrics, strict=False):
        for i, (name, color) in enumerate(zip(names, colors, strict=True)):
            _mean_and_seeds(ax, data, name, metric, i, color, jitter=True)
            if ref := data.references.get((name, metric)):
                ax.errorbar(i + 0.25, ref["value"], yerr=ref["std"] or 0, **REFERENCE_BAR)
        ax.set_title(metric)
        ax.set_xlim(-0.5, len(names) - 0.5)
        _integer_ticks(ax, [v for name in names for v in data.values[name][metric]])
        long = max(map(len, names)) > 6
        ax.set_xticks(x, names, rotation=30 if long else 0, ha="right" if long else "center")
        ax.grid(axis="y", alpha=0.3)
    note = _seed_note(data) + "; grey dots: single seeds"
    if data.references:  # (each is of a variant and a metric of the study)
        note += "; red diamonds: references"
    fig.suptitle(f"{data.name}: {note}")
    _save(fig, path)
    return True


def _integer_ticks(ax, values) -> None:
    """Whole-number ticks for a metric whose values are whole numbers (counts such as units)."""
    from matplotlib.ticker import MaxNLocator

    finite = [v for v in values if math.isfinite(v)]
    if finite and all(float(v).is_integer() for v in finite):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _mean_and_seeds(ax, data, name, metric, x, color, *, jitter: bool = False) -> float | None:
    """``name``'s seeds of ``metric`` as grey dots at ``x`` (spread out a little with
    ``jitter``) and their mean with ±1 std error bars; the mean, ``None`` without a finite seed."""
    vals = [v for v in data.values[name][metric] if math.isfinite(v)]
    mean, std, n = data.stats(name, metric)
    if not n:
        return None
    spread = (np.linspace(-0.12, 0.12, n) if n > 1 else np.zeros(n)) if jitter else 0
    ax.scatter(np.full(len(vals), x) + spread, vals, **SEED_STYLE)
    ax.errorbar(x, mean, yerr=np.nan_to_num(std), fmt="o", color=color, capsize=4, ms=6, zorder=3)
    return mean


def _finish(fig, ax, data, spec: dict[str, Any], path: str, note: str) -> None:
    """A figure kind's y limits, axis labels, title (with ``note``) and grid; then saved."""
    if spec.get("ylim"):
        ax.set_ylim(*spec["ylim"])
    ax.set(xlabel=spec["xlabel"] or spec["x"], ylabel=spec["ylabel"] or spec["y"])
    ax.set_title(f"{data.name}: {spec['title'] or default_title(spec)}\n{note}", fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, path)


# The figures every report has: file name -> (title, draw).
STANDARD: dict[str, tuple[str, Callable]] = {
    "learning_curves": ("Learning curves", learning_curves),
    "comparison": ("Comparison of the variants", comparison),
}


# --- figure kinds that a study asks for ----------------------------------------------------


class Kind(NamedTuple):
    check: Callable[[Any, Any], None]  # (Figure, Study) -> raises ValueError
    draw: Callable[[Any, dict, str], None]  # (ReportData, figure spec, path)
    text: Callable[[Any, dict], list[str]] | None = None  # markdown lines under the figure
    # the STANDARD figures that this kind shows again in another arrangement: a report whose study
    # asks for this kind leaves them out
    replaces: tuple[str, ...] = ()


def default_title(spec: dict[str, Any]) -> str:
    return f"{spec['y']} against {spec['x']}"


def _check_metrics(figure, study, *axis_names: str) -> None:
    for axis_name in axis_names:
        if (m := getattr(figure, axis_name)) not in study.metrics:
            raise ValueError(
                f"figure {figure.name!r}: {axis_name}={m!r} is not one of the study's metrics {study.metrics}"
            )


def _draw_metrics(data, spec: dict[str, Any], path: str) -> None:
    """Metric ``y`` against metric ``x``: a point per variant, error bars over seeds both ways."""
    fig, (ax,) = panels(1, 1, 6.4, 4.6)
    colors = _colors(data, len(data.variants))
    means = []
    for v, color in zip(data.variants, colors, strict=True):
        mx, sx, nx = data.stats(v["name"], spec["x"])
        my, sy, ny = data.stats(v["name"], spec["y"])
        if not (nx and ny):
            continue
        style = {"fmt": "o", "color": color, "capsize": 4, "ms": 7, "label": v["name"], "zorder": 3}
        ax.errorbar(mx, my, xerr=np.nan_to_num(sx), yerr=np.nan_to_num(sy), **style)
        ax.annotate(v["name"], (mx, my), textcoords="offset points", xytext=(7, 5), fontsize=8)
        means.append((mx, my))
        rx, ry = (data.references.get((v["name"], spec[a])) for a in ("x", "y"))
        if rx and ry:
            ax.plot(rx["value"], ry["value"], linestyle="none", **REFERENCE_STYLE)
    ax.plot(*np.reshape(means, (-1, 2)).T, color="0.6", linestyle=":", zorder=1)
    if spec["log_x"]:
        ax.set_xscale("log", base=2)
    _finish(fig, ax, data, spec, path, _seed_note(data))


def _check_axis(figure, study) -> None:
    names = [a.name for a in study.axes]
    if figure.x not in names:
        raise ValueError(
            f"figure {figure.name!r}: x={figure.x!r} is not an axis of the study {names}"
        )
    _check_metrics(figure, study, "y")
    axis = study.axes[names.index(figure.x)]
    if figure.log_x and not all(number(v) > 0 for v in axis.values):
        raise ValueError(
            f"figure {figure.name!r}: log_x needs positive numbers on axis {figure.x!r}, got {axis.values}"
        )


def _draw_axis(data, spec: dict[str, Any], path: str) -> None:
    """Metric ``y`` against grid axis ``x``; a line per combination of the other axes' levels."""
    fig, (ax,) = panels(1, 1, 6.4, 4.4)
    axis = next(a for a in data.axes if a["name"] == spec["x"])
    numeric = all(not math.isnan(number(v)) for v in axis["values"])
    position = {repr(v): (v if numeric else i) for i, v in enumerate(axis["values"])}
    groups: dict[str, list] = {}
    for v in data.variants:
        rest = ",".join(f"{k}={c}" for k, c in v["coords"].items() if k != spec["x"])
        groups.setdefault(rest, []).append(v)
    palette = _colors(data, len(groups)) if len(groups) > 1 else ["#1f77b4"]
    for (rest, members), color in zip(groups.items(), palette, strict=True):
        xs, means = [], []
        for v in members:
            x = position[repr(v["coords"][spec["x"]])]
            mean = _mean_and_seeds(ax, data, v["name"], spec["y"], x, color)
            if mean is None:
                continue
            if ref := data.references.get((v["name"], spec["y"])):
                ax.plot(x, ref["value"], linestyle="none", **REFERENCE_STYLE)
            xs.append(x)
            means.append(mean)
        ax.plot(xs, means, color=color, label=rest or None, zorder=2)
    if spec["log_x"]:
        ax.set_xscale("log", base=2)
    if numeric:
        ax.set_xticks(axis["values"], [f"{v:g}" for v in axis["values"]])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(axis["values"])), axis["values"])
    if len(groups) > 1:
        ax.legend(frameon=False, fontsize=8)
    _integer_ticks(ax, [y for v in data.variants for y in data.values[v["name"]][spec["y"]]])
    _finish(fig, ax, data, spec, path, f"{_seed_note(data)}; grey dots: single seeds")


KINDS: dict[str, Kind] = {
    "metrics": Kind(lambda f, s: _check_metrics(f, s, "x", "y"), _draw_metrics),
    "axis": Kind(_check_axis, _draw_axis),
}
