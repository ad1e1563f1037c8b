"""Pictures of what a model learned: image grids written as PNG with Pillow.

The functions that compute pictures are pure array functions; :func:`save_grid` writes them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxvae.models import Model, Params


@functools.partial(jax.jit, static_argnums=(0,))
def _mean_image(model: Model, params: Params, z: jax.Array) -> jax.Array:
    return model.mean_image(params, z)


@functools.partial(jax.jit, static_argnums=(0,))
def encode(model: Model, params: Params, x: jax.Array):
    """``model.encode``, compiled once per shape."""
    return model.encode(params, x)


def grid(images: np.ndarray, ncols: int, *, pad: int = 2, scale: int = 2) -> np.ndarray:
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


def save_grid(path: str, images: np.ndarray, ncols: int) -> None:
    """Writes :func:`grid` of ``images`` as a PNG."""
    pic = grid(images, ncols)
    Image.fromarray(pic[..., 0] if pic.shape[-1] == 1 else pic).save(path)


def prior_samples(
    model: Model, params: Params, key: jax.Array, num: int, *, codes: np.ndarray | None = None
) -> jax.Array:
    """Images decoded from ``z ~ N(0, I)`` (VAE), shown as the decoder's mean.

    For an AE, which has no prior, ``z`` is drawn from a Gaussian fitted to ``codes`` (the codes of
    real images).
    """
    d = model.spec.latent_dim
    eps = jax.random.normal(key, (num, d))
    if model.spec.stochastic or codes is None:
        z = eps
    else:
        codes = np.asarray(codes, np.float64)
        mu = codes.mean(0)
        cov = np.cov(codes, rowvar=False).reshape(d, d) + 1e-6 * np.eye(d)
        z = jnp.asarray(mu + np.asarray(eps) @ np.linalg.cholesky(cov).T, jnp.float32)
    return _mean_image(model, params, z)


def reconstructions(model: Model, params: Params, x: jax.Array, ncols: int) -> jax.Array:
    """Rows of ``ncols`` inputs, each followed by a row of their reconstructions (posterior mean)."""
    code, _ = encode(model, params, x)
    out = _mean_image(model, params, code)
    rows = []
    for start in range(0, x.shape[0], ncols):
        rows += [x[start : start + ncols], out[start : start + ncols]]
    return jnp.concatenate(rows)


def interpolations(
    model: Model, params: Params, x_from: jax.Array, x_to: jax.Array, steps: int
) -> jax.Array:
    """For each pair, ``steps`` images decoded along the line between the two posterior means."""
    z0, _ = encode(model, params, x_from)
    z1, _ = encode(model, params, x_to)
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
    z = (1 - t) * z0[:, None, :] + t * z1[:, None, :]
    return _mean_image(model, params, z.reshape(-1, z0.shape[-1]))


def latent_map(model: Model, params: Params, size: int = 20, extent: float = 2.5) -> jax.Array:
    """For a 2-D latent: images decoded on a ``size x size`` grid over ``[-extent, extent]^2``."""
    if model.spec.latent_dim != 2:
        raise ValueError(f"a latent map needs latent_dim 2, got {model.spec.latent_dim}")
    axis = jnp.linspace(extent, -extent, size)
    zy, zx = jnp.meshgrid(axis, -axis, indexing="ij")
    z = jnp.stack([zx.ravel(), zy.ravel()], axis=-1)
    return _mean_image(model, params, z)


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
    rows, cols = len(dims), values.shape[0]
    z = jnp.broadcast_to(z_base, (rows, cols, d))
    r, c = jnp.meshgrid(jnp.arange(rows), jnp.arange(cols), indexing="ij")
    z = z.at[r, c, jnp.broadcast_to(dims[:, None], (rows, cols))].set(
        jnp.broadcast_to(values, (rows, cols))
    )
    return decode_mean(z.reshape(rows * cols, d))
