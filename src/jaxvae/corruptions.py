"""Input corruptions: binarization and the noise of denoising autoencoders.

These work on images in ``[0, 1]`` and do not load data, so both training (which resamples each batch
with :func:`dynamic_binarize` and corrupts DAE inputs with :func:`add_noise`) and the data layer (which
binarizes whole splits once with :func:`binarize_images`) use them without importing each other.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

NOISE_KINDS = ("gaussian", "masking", "salt_pepper")


def binarize_images(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Samples each pixel once from a Bernoulli with the pixel intensity as probability.

    Pixel ``x`` becomes ``1.0`` where ``u < x`` for ``u = rng.random(images.shape, dtype=float32)``,
    else ``0.0``. The uniforms are drawn in C order, so the first ``n`` images of a split get the
    same binarization whether or not the rest of the split is drawn too.

    Args:
      images: float array with values in ``[0, 1]``.

    Returns:
      A float32 array of the same shape holding exactly 0.0 and 1.0.
    """
    uniform = rng.random(images.shape, dtype=np.float32)
    return (uniform < images).astype(np.float32)


def dynamic_binarize(key: jax.Array, x: jax.Array) -> jax.Array:
    """Resamples binary images from intensities, e.g. once per training batch.

    Args:
      x: Float array with values in ``[0, 1]``, read as Bernoulli probabilities.

    Returns:
      An array like ``x`` (same shape and dtype) holding 0 and 1: pixel ``i`` is 1 with probability
      ``ceil(65536 x_i) / 65536``, within 2**-16 of ``x_i`` (a 16-bit uniform integer per pixel
      below the threshold: half the random bits of a float32 uniform, and the hash of those
      bits is most of the cost of binarizing a batch).
    """
    bits = jax.random.bits(key, jnp.shape(x), jnp.uint16)
    return (bits.astype(jnp.float32) < jnp.asarray(x, jnp.float32) * 65536.0).astype(x.dtype)


def add_noise(key: jax.Array, x: jax.Array, *, kind: str, level: float) -> jax.Array:
    """Corrupts images for a denoising autoencoder.

    Args:
      x: Float array with values in ``[0, 1]``.
      kind: ``"gaussian"``: add ``level`` times standard normal noise and clip to ``[0, 1]``;
        ``"masking"``: set each pixel to 0 with probability ``level``; ``"salt_pepper"``: set
        each pixel with probability ``level`` to 0 or 1 (even odds).
      level: Noise standard deviation (``>= 0``) for ``"gaussian"``, a probability in
        ``[0, 1]`` otherwise. Must be a Python number, not a traced value.

    Returns:
      The corrupted array, same shape and dtype as ``x``.

    Raises:
      ValueError: For an unknown ``kind``, a bad ``level`` or a non-float ``x``.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {NOISE_KINDS}.")
    level = check_noise_level(kind, level)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"add_noise got images of dtype {x.dtype}; expected a float dtype.")
    if kind == "gaussian":
        noise = jax.random.normal(key, x.shape, x.dtype)
        return jnp.clip(x + level * noise, 0.0, 1.0)
    if kind == "masking":
        dropped = jax.random.bernoulli(key, level, x.shape)
        return jnp.where(dropped, jnp.zeros_like(x), x)
    corrupt_key, value_key = jax.random.split(key)
    corrupted = jax.random.bernoulli(corrupt_key, level, x.shape)
    salt = jax.random.bernoulli(value_key, 0.5, x.shape).astype(x.dtype)
    return jnp.where(corrupted, salt, x)


def check_noise_level(kind: str, level: float) -> float:
    """``level`` as a float, or a ValueError unless it suits ``kind`` (also for the families that
    corrupt their inputs)."""
    try:
        value = float(level)
    except (TypeError, ValueError) as e:  # TypeError includes JAX tracers.
        raise ValueError(f"Noise level {level!r}; expected a Python number.") from e
    upper = math.inf if kind == "gaussian" else 1.0
    if not (0.0 <= value <= upper):
        expected = "a standard deviation >= 0" if kind == "gaussian" else "a probability in [0, 1]"
        raise ValueError(f"Noise level {level!r} for kind {kind!r}; expected {expected}.")
    return value
