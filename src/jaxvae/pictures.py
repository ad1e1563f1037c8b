"""The pictures of a run, for any model family, through the model interface.

``samples.png`` (the family's samples, or nothing for a family without a prior),
``reconstructions.png`` (rows of inputs, each followed by their reconstructions),
``interpolations.png`` (decoded along the line between two encodings), ``traversals.png`` (a row
per latent dimension, ordered by KL, that coordinate swept over the prior's range),
``latent_map.png`` (for 2 latents, decoded on a grid), ``latent_space.png`` (the test codes'
first two principal components, coloured by label, for any latent size) and the family's own
pictures (:meth:`Model.extra_pictures`).
The grids carry a title, and row labels where rows differ (inputs and reconstructions, the latent
each traversal row moves), in margins around the exact grid (:func:`jaxvae.plots.read_grid`).
Every picture is computed by one compiled function per shape.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import evaluate, layout, plots, sharding
from jaxvae.data.base import to_unit_float
from jaxvae.models import Model
from jaxvae.models import capabilities as caps

NCOLS = 8
INTERPOLATION_STEPS = 10


@functools.partial(jax.jit, static_argnums=(0, 3))
def _samples(model: Model, params, state, num, key, batch):
    return model.samples(params, state, key, num, batch)


@functools.partial(jax.jit, static_argnums=(0,))
def _reconstruct(model: Model, params, state, batch):
    return model.reconstruct(params, state, batch)


@functools.partial(jax.jit, static_argnums=(0,))
def _encode(model: Model, params, state, batch):
    return model.encode(params, state, batch)


@functools.partial(jax.jit, static_argnums=(0,))
def _decode_mean(model: Model, params, state, z, labels):
    return model.decode(params, state, z, labels).mean()


def reconstructions(model: Model, params, state, batch, ncols: int = NCOLS) -> jax.Array:
    """Rows of ``ncols`` inputs, each followed by a row of their reconstructions."""
    x, out = batch["image"], _reconstruct(model, params, state, batch)
    return jnp.concatenate([a[i : i + ncols] for i in range(0, len(x), ncols) for a in (x, out)])


def interpolations(model: Model, params, state, batch_from, batch_to, steps: int) -> jax.Array:
    """For each pair, ``steps`` images decoded along the line between the two encodings (with the
    first image's label for conditional families)."""
    z0, z1 = (_encode(model, params, state, b) for b in (batch_from, batch_to))
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
    z = ((1 - t) * z0[:, None, :] + t * z1[:, None, :]).reshape(-1, z0.shape[-1])
    return _decode_mean(model, params, state, z, jnp.repeat(batch_from["label"], steps))


def latent_map(model: Model, params, state, size: int = 20, extent: float = 2.5) -> jax.Array:
    """For a 2-D latent: images decoded on a ``size x size`` grid over ``[-extent, extent]^2``."""
    if model.latent_dim != 2:
        raise ValueError(f"a latent map needs latent_dim 2, got {model.latent_dim}")
    axis = jnp.linspace(extent, -extent, size)
    zy, zx = jnp.meshgrid(axis, -axis, indexing="ij")
    z = jnp.stack([zx.ravel(), zy.ravel()], axis=-1)
    return _decode_mean(model, params, state, z, jnp.zeros((z.shape[0],), jnp.int32))


TRAVERSAL_STEPS = 9
MAX_TRAVERSAL_ROWS = 16


class Traversals(NamedTuple):
    """traversals.png: ``images`` row by row; row ``r`` sweeps latent ``dims[r]`` from
    ``low[r]`` to ``high[r]``."""

    images: jax.Array
    dims: list[int]
    low: np.ndarray
    high: np.ndarray


def traversals(model: Model, params, state, batch, kl_per_dim=None) -> Traversals:
    """Rows of decoded traversals from the first image's encoding: one row per latent dimension
    (at most 16, by decreasing KL when ``kl_per_dim`` is given, else by decreasing variance of
    the encodings), its coordinate swept over ``[-r, r]`` for a family with a prior, else over
    the encodings' mean +- r standard deviations."""
    codes = np.asarray(_encode(model, params, state, batch), np.float64)
    score = np.asarray(kl_per_dim) if kl_per_dim is not None else np.var(codes, axis=0)
    dims = [int(d) for d in np.argsort(-score, kind="stable")[:MAX_TRAVERSAL_ROWS]]
    r = model.presentation.traversal_range
    sweep = np.linspace(-r, r, TRAVERSAL_STEPS)
    label = batch["label"][0]  # conditional families: the first image's class
    decode = lambda z: _decode_mean(model, params, state, z, jnp.full((z.shape[0],), label))
    if caps.has(model, caps.Prior):
        images = plots.traversal_grid(decode, codes[0].astype(np.float32), dims, sweep)
        return Traversals(images, dims, np.full(len(dims), -r), np.full(len(dims), r))
    mean, std = codes.mean(axis=0)[dims], codes.std(axis=0)[dims]
    rows = [
        plots.traversal_grid(decode, codes[0].astype(np.float32), [d], m + s * sweep)
        for d, m, s in zip(dims, mean, std, strict=True)
    ]
    return Traversals(jnp.concatenate(rows), dims, mean - r * std, mean + r * std)


LATENT_SPACE_POINTS = 2000


class LatentSpace(NamedTuple):
    """latent_space.png: the first ``len(points)`` test images' codes projected on their first
    two principal axes (:func:`jaxvae.plots.pca`), their labels, the variance ratios, and the
    size of the codes."""

    points: np.ndarray
    labels: np.ndarray
    ratios: np.ndarray
    dim: int


def latent_space(
    model: Model, params, state, data, num: int = LATENT_SPACE_POINTS, *, batch_size: int = 0
) -> LatentSpace:
    """The :class:`LatentSpace` of the first ``num`` examples of ``data`` (host arrays), encoded
    in batches of ``batch_size`` (the last one padded; 0: all at once), so that the encoder
    compiled for the other pictures' batch serves them."""
    n = min(num, data["image"].shape[0])
    first = {k: np.asarray(v[:n]) for k, v in data.items()}
    codes = []
    for batch, got in evaluate.padded_batches(first, batch_size or n):
        batch = {k: jnp.asarray(v) for k, v in batch.items()}
        codes.append(np.asarray(_encode(model, params, state, batch))[:got])
    codes = np.concatenate(codes)
    points, ratios = plots.pca(codes)
    return LatentSpace(points, np.asarray(data["label"][:n]), ratios, codes.shape[-1])


def prior_samples(model: Model, params, state, key, num: int):
    """``num`` images from the family's prior (``None`` for a family without one)."""
    if not caps.has(model, caps.Prior):
        return None
    shape = (num, *model.image_shape)
    batch = {"image": jnp.zeros(shape, jnp.float32), "label": jnp.zeros((num,), jnp.int32)}
    return _samples(model, params, state, num, key, batch)


def write_pictures(
    workdir: str,
    model: Model,
    params,
    state,
    data,
    key,
    num: int,
    *,
    kl_per_dim=None,
    class_names: Sequence[str] = (),
) -> list[str]:
    """Writes every picture of the run into ``workdir``; returns their paths.

    ``data``: test examples ``{"image", "label"}`` (host arrays; the first ``max(num, 32)`` are
    used, and up to :data:`LATENT_SPACE_POINTS` for latent_space.png). ``kl_per_dim``: the test
    KL per latent dimension, which orders the traversals. ``class_names``: the labels' names.
    """
    params, state = jax.device_put(sharding.host((params, state)))
    n = max(num, 32)
    firsts = {k: v[:n] for k, v in data.items()}
    firsts["image"] = to_unit_float(np.asarray(firsts["image"]))  # uint8: v / 255
    batch = {k: jnp.asarray(v) for k, v in firsts.items()}
    first = lambda b, sl: {k: v[sl] for k, v in b.items()}
    written = []

    def save(name, images, cols, **labels):
        path = layout.path(workdir, name)
        plots.save_grid(path, np.asarray(images), cols, **labels)
        written.append(path)

    k_samples, k_extra = jax.random.split(key)
    drawn = _samples(model, params, state, num, k_samples, batch)
    if drawn is not None:
        save(layout.SAMPLES, drawn, NCOLS, title=f"samples of the {model.name} model")
    recons = reconstructions(model, params, state, first(batch, slice(0, 32)))
    rows = (["input", "reconstruction"] * n)[: -(-recons.shape[0] // NCOLS)]
    title = "test images and their reconstructions"
    save(layout.RECONSTRUCTIONS, recons, NCOLS, title=title, row_labels=rows)
    half = min(8, len(batch["image"]) // 2)  # up to 8 pairs: images 0..7 with 8..15
    if half:
        pair = first(batch, slice(0, half)), first(batch, slice(half, 2 * half))
        title = "decoded between the encodings of two test images (left, right)"
        images = interpolations(model, params, state, *pair, INTERPOLATION_STEPS)
        save(layout.INTERPOLATIONS, images, INTERPOLATION_STEPS, title=title)
    r = model.presentation.traversal_range
    if r is not None:
        t = traversals(model, params, state, batch, kl_per_dim)
        prior = caps.has(model, caps.Prior)
        over = f"[-{r:g}, {r:g}]" if prior else f"its codes' mean +- {r:g} sd"
        rows = [f"z{d}" for d in t.dims]
        if not prior:
            rows = [f"{z} [{a:.2g}, {b:.2g}]" for z, a, b in zip(rows, t.low, t.high, strict=True)]
        title = f"traversals of a test image's code: each row sweeps one latent over {over}"
        title += f" (rows by decreasing {'KL' if kl_per_dim is not None else 'variance'})"
        save(layout.TRAVERSALS, t.images, TRAVERSAL_STEPS, title=title, row_labels=rows)
    if model.latent_dim == 2:
        title = "decoded on a grid over [-2.5, 2.5]^2 (z0 left to right, z1 bottom to top)"
        save(layout.LATENT_MAP, latent_map(model, params, state), 20, title=title)
    space = latent_space(model, params, state, data, batch_size=batch["image"].shape[0])
    path = layout.path(workdir, layout.LATENT_SPACE)
    title = f"{len(space.points)} test codes ({space.dim} latents): first two principal components"
    axes = tuple(f"PC{i + 1} ({100 * v:.0f}% of the variance)" for i, v in enumerate(space.ratios))
    options = {"title": title, "axis_labels": axes, "class_names": class_names}
    plots.save_scatter(path, space.points, space.labels, **options)
    written.append(path)
    for name, (images, cols) in model.extra_pictures(params, state, batch, k_extra).items():
        save(name, images, cols)
    return written
