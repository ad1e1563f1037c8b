"""Figure kinds for studies that score many metrics per run (the disentanglement study):
distributions, the rank correlation between metrics, and the paper's findings computed.

* ``Figure(kind="distributions", x=<group coord>, y=<level coord>)``: a panel per metric, a box
  per variant (over its seeds), grouped by the variants' ``x`` coordinate (the model) and
  labelled by their ``y`` coordinate (the hyperparameter).
* ``Figure(kind="rank_correlation", x="metrics", y="metrics")``: the Spearman rank correlation
  between every pair of the study's metrics over the finished runs (:func:`spearman_matrix`),
  as a heat map and a table.
* ``Figure(kind="findings", x=<level coord>, y=<group coord>)``: Locatello et al.'s Figure 1 (the
  Gaussian total correlation of the sampled and of the mean representation against the
  regularisation, per model) with the Spearman correlation of each against the regularisation,
  and where each metric's variance lies (:func:`variance_split`: between seeds of a variant,
  between hyperparameters of a model, between models).

Each kind registers itself in :data:`jaxvae.studies.figures.KINDS` when this module is imported
(``jaxvae.studies`` imports it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.patches import Rectangle

from jaxvae.studies import figures, report, state

TC_SAMPLED = "gaussian_total_correlation_sampled"
TC_MEAN = "gaussian_total_correlation_mean"


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``, ties given their average rank."""
    _, inverse, counts = np.unique(
        np.asarray(x, np.float64), return_inverse=True, return_counts=True
    )
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(x, y) -> tuple[float, int]:
    """``(rho, n)``: Spearman's rank correlation over the pairs where both are finite (the
    Pearson correlation of the average ranks); NaN for fewer than 3 pairs or a constant side."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3:
        return math.nan, n
    rx, ry = ranks(x[ok]), ranks(y[ok])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return (float((rx * ry).sum()) / den if den > 0 else math.nan), n


def spearman_matrix(values: np.ndarray) -> np.ndarray:
    """``[M, M]`` Spearman correlations between the columns of ``values`` ``[runs, M]``,
    pairwise over the runs where both are finite."""
    values = np.asarray(values, np.float64)
    m = values.shape[1]
    return np.array([[spearman(values[:, i], values[:, j])[0] for j in range(m)] for i in range(m)])


def run_values(data, metrics) -> np.ndarray:
    """``[finished runs, len(metrics)]`` of the runs' values (NaN where missing)."""
    done = [r["values"] for r in data.runs if r["state"] == state.DONE]
    rows = [[figures.number(values.get(m)) for m in metrics] for values in done]
    return np.asarray(rows, np.float64).reshape(len(rows), len(metrics))


def variance_split(data, metric: str, group: str) -> dict[str, float]:
    """Standard deviations of ``metric``: ``seed`` (pooled within variants of two or more
    seeds: the root of the mean of their ddof=1 variances), ``hyperparameter`` (the same over the
    variant means within each ``group``), ``model`` (the ddof=1 std of the group means); NaN
    where not enough runs finished."""
    within, by_group = [], {}
    for v in data.variants:
        vals = [x for x in data.values[v["name"]][metric] if math.isfinite(x)]
        if len(vals) > 1:
            within.append(np.var(vals, ddof=1))
        if vals:
            by_group.setdefault(v["coords"][group], []).append(float(np.mean(vals)))
    hyper = [np.var(means, ddof=1) for means in by_group.values() if len(means) > 1]
    groups = [float(np.mean(means)) for means in by_group.values()]
    return {
        "seed": math.sqrt(np.mean(within)) if within else math.nan,
        "hyperparameter": math.sqrt(np.mean(hyper)) if hyper else math.nan,
        "model": float(np.std(groups, ddof=1)) if len(groups) > 1 else math.nan,
    }


def _coords_check(figure, study, *names) -> None:
    for name in names:
        coord = getattr(figure, name)
        for v in study.grid():
            if coord not in v.coords:
                raise ValueError(
                    f"figure {figure.name!r}: {name}={coord!r} is not a coordinate of variant "
                    f"{v.name!r} (its coordinates: {sorted(v.coords)})"
                )


def _draw_distributions(data, spec: dict[str, Any], path: str) -> None:
    groups = list(dict.fromkeys(v["coords"][spec["x"]] for v in data.variants))
    palette = figures._colors(data, len(groups))
    width = max(5.0, 0.22 * len(data.variants) + 1.5)
    fig, axes = figures.panels(len(data.metrics), 3, width, 3.2)
    colors = [palette[groups.index(v["coords"][spec["x"]])] for v in data.variants]
    for ax, metric in zip(axes, data.metrics, strict=False):
        cols = [
            [x for x in data.values[v["name"]][metric] if math.isfinite(x)] for v in data.variants
        ]
        kept = [i for i, vals in enumerate(cols) if vals]
        if kept:  # one boxplot call per panel (the drawing is the report's slowest part)
            box = ax.boxplot([cols[i] for i in kept], positions=kept, widths=0.6, patch_artist=True)
            for i, patch in zip(kept, box["boxes"], strict=True):
                patch.set(facecolor=colors[i], alpha=0.5)
            xs = [i for i in kept for _ in cols[i]]
            ax.scatter(xs, [x for i in kept for x in cols[i]], **figures.SEED_STYLE)
        levels = [f"{v['coords'][spec['y']]:g}" for v in data.variants]
        ax.set_xticks(range(len(data.variants)), levels, fontsize=6)
        ax.set_xlim(-0.7, len(data.variants) - 0.3)
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles = [Rectangle((0, 0), 1, 1, color=c, alpha=0.5) for c in palette]
    # the legend in a line of its own between the title and the panels
    fig.legend(handles, groups, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(groups))
    fig.suptitle(
        f"{data.name}: {spec['title'] or 'distributions'} (x: {spec['y']}; n seeds "
        f"{figures._seed_count(data)})",
        y=1.0 + 0.5 / fig.get_figheight(),
    )
    figures._save(fig, path)


def _check_rank_correlation(figure, study) -> None:
    if figure.x != "metrics" or figure.y != "metrics" or len(study.metrics) < 2:
        raise ValueError(
            f"figure {figure.name!r}: a rank correlation needs x='metrics', y='metrics' and at "
            f"least two metrics, got x={figure.x!r}, y={figure.y!r}, metrics {study.metrics}"
        )


def _draw_rank_correlation(data, spec: dict[str, Any], path: str) -> None:
    values = run_values(data, data.metrics)
    rho, m, n = spearman_matrix(values), len(data.metrics), values.shape[0]
    fig, (ax,) = figures.panels(1, 1, 1.2 + 0.55 * m, 0.8 + 0.5 * m)
    im = ax.imshow(rho, cmap="RdBu_r", vmin=-1, vmax=1)
    for (i, j), r in np.ndenumerate(rho):
        ax.text(j, i, _cell(r), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(m), data.metrics, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(m), data.metrics, fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"{data.name}: Spearman rank correlation over {n} finished runs", fontsize=9)
    figures._save(fig, path)


def _rank_correlation_text(data, spec: dict[str, Any]) -> list[str]:
    rho, m = spearman_matrix(run_values(data, data.metrics)), len(data.metrics)
    header = ["metric", *(f"({i + 1})" for i in range(m))]
    body = [[f"({i + 1}) {name}", *map(_cell, rho[i])] for i, name in enumerate(data.metrics)]
    return [*report.markdown_table(header, body, set(range(1, m + 1))), ""]


SUBS = (1.0, 2.0, 5.0)  # the total correlation axes' ticks in each decade


def _check_findings(figure, study) -> None:
    _coords_check(figure, study, "x", "y")
    if missing := [m for m in (TC_SAMPLED, TC_MEAN) if m not in study.metrics]:
        raise ValueError(f"figure {figure.name!r}: needs the metrics {missing} in the study")


def _points(data, spec, metric):
    """group -> ([regularisation], [value]) over the finished runs."""
    out: dict[Any, tuple[list, list]] = {}
    for v in data.variants:
        for x in data.values[v["name"]][metric]:
            xs, ys = out.setdefault(v["coords"][spec["y"]], ([], []))
            xs.append(float(v["coords"][spec["x"]]))
            ys.append(x)
    return out


def _draw_findings(data, spec: dict[str, Any], path: str) -> None:
    fig, axes = figures.panels(2, 2, 5.5, 4)
    for ax, metric in zip(axes, (TC_SAMPLED, TC_MEAN), strict=True):
        by = _points(data, spec, metric)
        colors = figures._colors(data, len(by))
        for (group, (xs, ys)), color in zip(by.items(), colors, strict=True):
            levels = sorted(set(xs))  # each model's levels at ranks 0..5 (their scales differ)
            pos = [levels.index(x) for x in xs]
            ax.scatter(pos, ys, color=color, s=14)
            med = [np.nanmedian(np.asarray(ys)[np.asarray(pos) == i]) for i in range(len(levels))]
            ax.plot(range(len(levels)), med, color=color, label=str(group))
        ax.set(xlabel=f"{spec['x']} (rank of the level, weak to strong)", ylabel=metric)
        # log (symlog where a value is 0 or below), ticks at 1, 2, 5 of each decade, so that
        # values within one decade get labels too
        if all(y > 0 for _, ys in by.values() for y in ys):
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=SUBS))
        else:
            ax.set_yscale("symlog", linthresh=0.1)
            locator = ticker.SymmetricalLogLocator(linthresh=0.1, base=10, subs=SUBS)
            ax.yaxis.set_major_locator(locator)
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"{data.name}: {spec['title'] or 'findings'} (lines: medians over seeds)")
    figures._save(fig, path)


def _cell(x: float, spec: str = ".2f") -> str:
    return format(x, spec) if math.isfinite(x) else "–"


def _findings_text(data, spec: dict[str, Any]) -> list[str]:
    sampled, mean = _points(data, spec, TC_SAMPLED), _points(data, spec, TC_MEAN)
    lines = [
        "Finding 1 (the paper's Figure 1): the total correlation of the sampled representation "
        "falls as the regularisation grows, that of the mean representation does not. Spearman "
        f"rho between {spec['x']} and each, over the finished runs of each {spec['y']}:",
        "",
        f"| {spec['y']} | runs | rho(reg, TC sampled) | rho(reg, TC mean) | the paper | holds here |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    exceptions = spec.get("exceptions") or ()  # (absent from studies made before the field)
    for group in sampled:
        rs, n = spearman(*sampled[group])
        rm, _ = spearman(*mean[group])
        exception = group in exceptions
        paper = "both fall (its exception)" if exception else "sampled falls, mean does not"
        holds = rs < 0 and (rm < 0 if exception else rm >= 0)
        verdict = "–" if math.isnan(rs) or math.isnan(rm) else "yes" if holds else "no"
        cells = f"{_cell(rs, '+.2f')} | {_cell(rm, '+.2f')} | {paper} | {verdict}"
        lines.append(f"| {group} | {n} | {cells} |")
    lines += [
        "",
        "Finding 2 (the paper's Figures 6 and 7: the seed and the hyperparameters matter as much "
        "as the model): the standard deviation of each metric between seeds of a variant "
        f"(pooled), between hyperparameters of a {spec['y']} (pooled over the variants' means) "
        f"and between {spec['y']}s (of their means); – where too few runs finished.",
        "",
        "| metric | seed | hyperparameter | model | seed >= model |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for metric in data.metrics:
        s = variance_split(data, metric, spec["y"])
        cells = [_cell(v, ".3g") for v in s.values()]
        ok = math.isfinite(s["seed"]) and math.isfinite(s["model"])
        verdict = ("yes" if s["seed"] >= s["model"] else "no") if ok else "–"
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {verdict} |")
    return [*lines, ""]


figures.KINDS.update(
    distributions=figures.Kind(  # every metric of every variant, as the comparison, by model
        lambda f, s: _coords_check(f, s, "x", "y"), _draw_distributions, replaces=("comparison",)
    ),
    rank_correlation=figures.Kind(
        _check_rank_correlation, _draw_rank_correlation, _rank_correlation_text
    ),
    findings=figures.Kind(_check_findings, _draw_findings, _findings_text),
)
