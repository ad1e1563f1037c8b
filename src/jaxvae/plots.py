"""Image grids written as PNG with Pillow, and latent traversal grids (what goes into the run's
pictures: :mod:`jaxvae.pictures`)."""

from __future__ import annotations

import io as io_lib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxvae import io


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
    """Writes :func:`grid` of ``images`` as a PNG (atomically; ``path`` may be a URL)."""
    pic = grid(images, ncols)
    out = io_lib.BytesIO()
    Image.fromarray(pic[..., 0] if pic.shape[-1] == 1 else pic).save(out, format="PNG")
    io.write_atomic(path, out.getvalue())


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
