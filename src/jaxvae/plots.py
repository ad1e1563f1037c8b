"""The run's drawings: image grids written as PNG with Pillow (optionally with a title and row
labels in margins around the exact grid), latent traversal grids, the 2-D principal-component
projection of codes drawn as a scatter (what goes into the run's pictures:
:mod:`jaxvae.pictures`), and ``curves.png``.

``curves.png`` is the training loss and the test metric against steps, drawn from
``metrics.jsonl`` (:class:`jaxvae.workdir.MetricsLog`), which has two kinds of lines: training
lines (``step``, ``epoch``, ``loss``, ``recon``, ``kl`` for a VAE, ...) and evaluation lines
(``step``, ``epoch`` and ``test_*`` figures: ``test_nelbo`` for a VAE, ``test_recon`` for an
autoencoder). The file can belong to a run still in progress: its last line may be cut short,
and it may have no evaluation yet.
"""

from __future__ import annotations

import io as io_lib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from jaxvae import io, storage

PAD, SCALE = 2, 2  # white pixels around each tile; each pixel drawn SCALE x SCALE
# A grid PNG records where its grid lies ("left top width height" in pixels) in this
# text chunk, so that :func:`read_grid` gives back exactly the pixels of :func:`grid`.
GRID_BOX = "jaxvae_grid_box"
FONT_SIZE = 12
MARGIN = 6


def grid(images: np.ndarray, ncols: int, *, pad: int = PAD, scale: int = SCALE) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` images in [0, 1] into one uint8 ``[rows*(H+pad), ...]`` picture."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    nrows = -(-n // ncols)
    out = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    out = np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
    return (out * 255 + 0.5).astype(np.uint8)


def save_grid(
    path: str, images: np.ndarray, ncols: int, *, title: str = "", row_labels: Sequence[str] = ()
) -> None:
    """Writes :func:`grid` of ``images`` as a PNG, with ``title`` in a margin above it and
    ``row_labels`` (one per row of tiles) in a margin on its left; the grid's pixels are kept
    exactly (:func:`read_grid` reads them back).

    Raises:
      ValueError: ``row_labels`` is not one label per row.
    """
    images = np.asarray(images)
    pic = grid(images, ncols)
    pic = pic[..., 0] if pic.shape[-1] == 1 else pic
    nrows = -(-images.shape[0] // ncols)
    if len(row_labels) and len(row_labels) != nrows:
        raise ValueError(
            f"{len(row_labels)} row labels for a grid of {nrows} rows; expected one per row"
        )
    font = ImageFont.load_default(size=FONT_SIZE)
    height, width = pic.shape[:2]
    left = int(max(font.getlength(t) for t in row_labels)) + 2 * MARGIN if len(row_labels) else 0
    top = FONT_SIZE + 2 * MARGIN if title else 0
    total_w = max(left + width, int(font.getlength(title)) + 2 * MARGIN if title else 0)
    white, ink = (255, 0) if pic.ndim == 2 else ((255, 255, 255), (0, 0, 0))
    canvas = Image.new("L" if pic.ndim == 2 else "RGB", (total_w, top + height), white)
    canvas.paste(Image.fromarray(pic), (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=ink, font=font, anchor="lt")
    tile = images.shape[1]
    for r, text in enumerate(row_labels):
        y = top + SCALE * (PAD + r * (tile + PAD)) + SCALE * tile // 2
        draw.text((MARGIN, y), text, fill=ink, font=font, anchor="lm")
    info = PngInfo()
    info.add_text(GRID_BOX, f"{left} {top} {width} {height}")
    out = io_lib.BytesIO()
    canvas.save(out, format="PNG", pnginfo=info)
    io.write_atomic(path, out.getvalue())  # path may be a URL: jaxvae.storage


def read_grid(path: str) -> np.ndarray:
    """The grid's pixels of a PNG :func:`save_grid` wrote (without its title and labels)."""
    with Image.open(io_lib.BytesIO(storage.read_bytes(path))) as im:
        pixels = np.asarray(im)
        box = im.info.get(GRID_BOX)
    if box is None:
        return pixels
    left, top, width, height = (int(v) for v in box.split())
    return pixels[top : top + height, left : left + width]


def traversal_grid(
    decode_mean: Callable[[jax.Array], jax.Array],
    z_base: jax.typing.ArrayLike,
    dims: Sequence[int],
    values: jax.typing.ArrayLike,
) -> jax.Array:
    """Latent traversals: one row per dimension in ``dims``, sweeping that coordinate of ``z_base``.

    Row ``r``, column ``j`` decodes ``z_base`` with coordinate ``dims[r]`` set to ``values[j]`` and
    the others kept, so ``save_grid(path, images, len(values))`` draws one row per dimension.

    Args:
      decode_mean: ``z [N, D] -> images [N, H, W, C]`` in [0, 1] (e.g. the decoder's mean).
      z_base: the code ``[D]`` the traversals start from (e.g. an image's posterior mean).
      dims: the latent dimensions to sweep, in row order (e.g. by decreasing KL).
      values: ``[V]`` values each swept coordinate takes (e.g. ``linspace(-3, 3, 9)`` for an
        ``N(0, I)`` prior).

    Returns:
      ``[len(dims) * V, H, W, C]`` images, row by row.
    """
    z_base = jnp.asarray(z_base)
    values = jnp.asarray(values, z_base.dtype)
    dims = np.asarray(dims, np.int64)
    if z_base.ndim != 1:
        raise ValueError(f"z_base must be one code [D], got shape {z_base.shape}")
    d = z_base.shape[0]
    if values.ndim != 1 or dims.ndim != 1 or not (len(dims) and values.size):
        raise ValueError(
            f"dims and values must be non-empty 1-D, got shapes {dims.shape} and {values.shape}"
        )
    if dims.min() < 0 or dims.max() >= d:
        raise ValueError(f"dims must lie in [0, {d}) for a {d}-D code, got {dims.tolist()}")
    swept = jnp.arange(d) == dims[:, None, None]  # [rows, 1, D]: each row's coordinate
    return decode_mean(jnp.where(swept, values[None, :, None], z_base).reshape(-1, d))


def pca(codes: np.ndarray, num: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The codes projected on their first ``num`` principal axes, by numpy's SVD.

    With ``X`` the centred codes ``[N, D]`` and ``X = U S V^T``, the projection is ``X V[:, :num]``
    (columns past ``min(N, D)`` are zero), each axis signed so that its largest loading is
    positive; the explained-variance ratios are ``S_k^2 / sum(S^2)``.

    Returns:
      ``(points [N, num], ratios [num])`` in float64.

    Raises:
      ValueError: ``codes`` is not ``[N, D]`` with ``N >= 2``.
    """
    x = np.asarray(codes, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"codes must be [N, D] with N >= 2, got shape {x.shape}")
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(num, vt.shape[0])
    axes = vt[:k] * np.sign(vt[:k][np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])[:, None]
    points = np.zeros((x.shape[0], num))
    points[:, :k] = x @ axes.T
    ratios = np.zeros(num)
    total = np.sum(s**2)
    if total > 0:
        ratios[:k] = s[:k] ** 2 / total
    return points, ratios


def figure(width: float, height: float, **options: Any):
    """A matplotlib figure on the Agg canvas, without pyplot: no global backend switch, no figure
    registry to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), **options)
    FigureCanvasAgg(fig)
    return fig


def save_scatter(
    path: str,
    points: np.ndarray,
    labels: np.ndarray,
    *,
    title: str,
    axis_labels: tuple[str, str],
    class_names: Sequence[str] = (),
) -> None:
    """Writes a scatter of 2-D ``points`` coloured by their integer ``labels`` (a legend of the
    classes for up to 10 of them, else a colour bar) as a PNG."""
    points, labels = np.asarray(points), np.asarray(labels)
    fig = figure(7, 5, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    classes = np.unique(labels)
    if len(classes) <= 10:
        for i, c in enumerate(classes):
            name = class_names[c] if 0 <= c < len(class_names) else str(c)
            ax.scatter(
                *points[labels == c].T, s=6, color=f"C{i}", label=name, alpha=0.7, linewidths=0
            )
        legend = ax.legend(
            title="label", fontsize=8, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1)
        )
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)
    else:
        drawn = ax.scatter(*points.T, s=6, c=labels, cmap="viridis", alpha=0.7, linewidths=0)
        fig.colorbar(drawn, ax=ax, label="label")
    ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1])
    ax.set_title(title, fontsize=10)
    io.write_figure(path, fig)


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
    train = _series((int(r["step"]), float(r["loss"])) for r in records if "loss" in r)
    test_name = next((k for k, _ in TEST_METRICS if any(k in r for r in records)), None)
    test = _series((int(r["step"]), float(r[test_name])) for r in records if test_name in r)
    ratios = [r["step"] / r["epoch"] for r in records if r.get("epoch")]
    return Curves(*train, test_name, *test, ratios[-1] if ratios else None)


def plot_curves(metrics_path: str, out_path: str) -> str:
    """Draws ``curves.png`` (800 x 500 pixels) from a run's ``metrics.jsonl``; returns ``out_path``.

    Args:
      metrics_path: the run's ``metrics.jsonl``.
      out_path: the PNG to write (atomically: :func:`jaxvae.io.write_atomic`); its title is
        the name of the run directory.
    """
    curves = extract_curves(io.read_jsonl(metrics_path))
    title = os.path.basename(os.path.dirname(storage.abspath(metrics_path))) or "run"
    from matplotlib import ticker

    fig = figure(8, 5, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    label = dict(TEST_METRICS).get(curves.test_name)
    few = max(len(curves.train_steps), len(curves.test_steps)) <= _MARKERS_UP_TO
    if len(curves.train_steps):
        style = {"marker": "o" if few else None, "markersize": 4, "color": "tab:blue"}
        ax.plot(curves.train_steps, curves.train_loss, lw=1.5, label="training loss", **style)
    if curves.test_name is not None:
        style = {"marker": "s", "markersize": 5, "color": "tab:orange"}
        ax.plot(curves.test_steps, curves.test_values, lw=1.5, label=label, **style)
    if not (len(curves.train_steps) or len(curves.test_steps)):
        ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("nats per image" if curves.test_name == "test_nelbo" else "loss per image")
    last = int(max(curves.train_steps.max(initial=0), curves.test_steps.max(initial=0)))
    ax.set_xlim(0, max(last, 1) * 1.02)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    if per := curves.steps_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / per, lambda e: e * per))
        top.set_xlabel("epoch")
        top.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    subtitle = []
    if len(curves.train_loss):
        subtitle.append(f"training loss {curves.train_loss[-1]:.4g}")
    if len(curves.test_values):
        subtitle.append(f"{label} {curves.test_values[-1]:.4g}")
    heading = f"{title}: step {last}" + (f" ({', '.join(subtitle)})" if subtitle else "")
    ax.set_title(heading, fontsize=11, pad=10)
    io.write_figure(out_path, fig)
    return out_path
