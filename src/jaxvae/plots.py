"""Pictures of what a model learned: image grids written as PNG with Pillow.

The functions that compute pictures are pure array functions; :func:`save_grid` writes them.
"""

from __future__ import annotations

import functools

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
