"""``curves.png``: a run's training loss and test metric against steps, drawn from ``metrics.jsonl``.

``metrics.jsonl`` (:class:`jaxvae.workdir.MetricsLog`) has two kinds of lines: training lines
(``step``, ``epoch``, ``loss``, ``recon``, ``kl`` for a VAE, ...) and evaluation lines (``step``,
``epoch`` and ``test_*`` figures: ``test_nelbo`` for a VAE, ``test_recon`` for an autoencoder). The
file can belong to a run still in progress: its last line may be cut short, and it may have no
evaluation yet.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxvae import io, storage

# The test metric drawn, the first one the evaluation lines have, and its legend label.
TEST_METRICS = (
    ("test_nelbo", "test negative ELBO"),
    ("test_recon", "test reconstruction error"),
    ("test_recon_l2", "test reconstruction error (L2)"),
)
_MARKERS_UP_TO = 60  # points per curve drawn with markers (a short run has a handful)


class Curves(NamedTuple):
    """The data of ``curves.png``: steps and values, sorted by step, one value per step."""

    train_steps: np.ndarray  # int64 [T]
    train_loss: np.ndarray  # float64 [T]
    test_name: str | None  # the key of the test metric, None without evaluation lines
    test_steps: np.ndarray  # int64 [E]
    test_values: np.ndarray  # float64 [E]
    steps_per_epoch: float | None  # from the records' step/epoch, None if unknown


def _series(pairs: Iterable[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    by_step = dict(pairs)  # a step logged twice keeps its later value
    steps = np.array(sorted(by_step), np.int64)
    return steps, np.array([by_step[s] for s in steps], np.float64)


def extract_curves(records: Iterable[Mapping[str, Any]]) -> Curves:
    """Training loss and the test metric (:data:`TEST_METRICS`, the first present) by step."""
    records = [r for r in records if "step" in r]
    train_steps, train_loss = _series(
        (int(r["step"]), float(r["loss"])) for r in records if "loss" in r
    )
    evals = [r for r in records if any(k.startswith("test_") for k in r)]
    test_name = next((k for k, _ in TEST_METRICS if any(k in r for r in evals)), None)
    test_steps, test_values = _series(
        (int(r["step"]), float(r[test_name])) for r in evals if test_name in r
    )
    ratios = [r["step"] / r["epoch"] for r in records if r.get("epoch")]
    train = (train_steps, train_loss)
    return Curves(*train, test_name, test_steps, test_values, ratios[-1] if ratios else None)


def _label(test_name: str) -> str:
    return dict(TEST_METRICS)[test_name]


def plot_curves(metrics_path: str, out_path: str, *, title: str | None = None) -> str:
    """Draws ``curves.png`` (800 x 500 pixels) from a run's ``metrics.jsonl``; returns ``out_path``.

    Args:
      metrics_path: the run's ``metrics.jsonl``.
      out_path: the PNG to write (atomically: :func:`jaxvae.io.write_atomic`).
      title: the title; by default the name of the run directory.
    """
    curves = extract_curves(io.read_jsonl(metrics_path))
    if title is None:
        title = os.path.basename(os.path.dirname(storage.abspath(metrics_path))) or "run"
    # A Figure on the Agg canvas, without pyplot: no global backend switch, no figure registry.
    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    few = max(len(curves.train_steps), len(curves.test_steps)) <= _MARKERS_UP_TO
    if len(curves.train_steps):
        style = {"marker": "o" if few else None, "markersize": 4, "color": "tab:blue"}
        ax.plot(
            curves.train_steps, curves.train_loss, linewidth=1.5, label="training loss", **style
        )
    if curves.test_name is not None:
        style = {"marker": "s", "markersize": 5, "color": "tab:orange"}
        label = _label(curves.test_name)
        ax.plot(curves.test_steps, curves.test_values, linewidth=1.5, label=label, **style)
    if not (len(curves.train_steps) or len(curves.test_steps)):
        ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("nats per image" if curves.test_name == "test_nelbo" else "loss per image")
    last = int(max(curves.train_steps.max(initial=0), curves.test_steps.max(initial=0)))
    ax.set_xlim(0, max(last, 1) * 1.02)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    if curves.steps_per_epoch:
        per = curves.steps_per_epoch
        top = ax.secondary_xaxis("top", functions=(lambda s: s / per, lambda e: e * per))
        top.set_xlabel("epoch")
        top.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    subtitle = []
    if len(curves.train_loss):
        subtitle.append(f"training loss {curves.train_loss[-1]:.4g}")
    if len(curves.test_values):
        subtitle.append(f"{_label(curves.test_name)} {curves.test_values[-1]:.4g}")
    heading = f"{title}: step {last}" + (f" ({', '.join(subtitle)})" if subtitle else "")
    ax.set_title(heading, fontsize=11, pad=10)
    io.write_figure(out_path, fig)
    return out_path
