"""Test-set evaluation: negative ELBO and its terms, the importance-weighted NLL bound, active units,
and the reconstruction error of autoencoders.

All figures are nats per image (pixel-loss sums for AEs). Batches are padded to a fixed size so each
function compiles once; with a mesh, batches are split over its ``"data"`` axis.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxvae import distributions as dist
from jaxvae import objectives, sharding
from jaxvae.models import Model, Params


def _batches(images: np.ndarray, batch_size: int):
    """Yields ``(padded_batch, num_valid)`` of exactly ``batch_size`` images."""
    n = images.shape[0]
    for start in range(0, n, batch_size):
        batch = images[start : start + batch_size]
        valid = batch.shape[0]
        if valid < batch_size:
            pad = np.zeros((batch_size - valid, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, pad])
        yield batch, valid


def _run_batched(fn, images, batch_size, mesh, *extra):
    """Applies ``fn(batch, index, *extra) -> dict of [batch]`` over ``images``; concatenates."""
    mesh = mesh or sharding.make_mesh()
    batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
    images = np.asarray(images, np.float32)
    in_sharding = sharding.batch_sharded(mesh)
    out = {}
    for i, (batch, valid) in enumerate(_batches(images, batch_size)):
        x = sharding.put_global(batch, in_sharding)
        values = sharding.fetch(fn(x, jnp.int32(i), *extra))  # host sync: one per batch
        for name, v in values.items():
            out.setdefault(name, []).append(np.asarray(v)[:valid])
    return {name: np.concatenate(v) for name, v in out.items()}


@functools.partial(jax.jit, static_argnums=(0,))
def _elbo_terms(model: Model, params: Params, x: jax.Array, index: jax.Array, key: jax.Array):
    key = jax.random.fold_in(key, index)
    mean, log_var = model.encode(params, x)
    z = dist.reparameterize(key, mean, log_var)
    recon = -objectives.log_likelihood(model, params, x, z)
    kl = jnp.sum(dist.gaussian_kl(mean, log_var), axis=-1)
    return {"recon": recon, "kl": kl, "mean": mean}


def _check_images(model: Model, images) -> None:
    """Refuses images of the wrong shape, and an empty set, before anything is compiled."""
    model.check_images(jax.ShapeDtypeStruct(np.shape(images), np.float32))
    if np.shape(images)[0] == 0:
        raise ValueError("no images to evaluate: got an empty array")


def evaluate_elbo(
    model: Model,
    params: Params,
    images: np.ndarray,
    key: jax.Array,
    *,
    batch_size: int = 1000,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Single-sample negative ELBO of a VAE, averaged over ``images``.

    Returns:
      ``nelbo``, ``recon`` (``-E_q log p(x|z)``), ``kl`` (analytic), all nats per image, and
      ``active_units``: latent dimensions whose posterior mean varies with ``Cov_x > 0.01``.
    """
    _check_images(model, images)
    fn = lambda x, i, p, k: _elbo_terms(model, p, x, i, k)
    out = _run_batched(fn, images, batch_size, mesh, params, key)
    recon, kl = out["recon"].astype(np.float64), out["kl"].astype(np.float64)
    return {
        "nelbo": float(np.mean(recon + kl)),
        "recon": float(np.mean(recon)),
        "kl": float(np.mean(kl)),
        "active_units": active_units(out["mean"]),
    }


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
    """Number of latent dimensions with ``Var_x(E_q[z_d | x]) > threshold`` (Burda et al.)."""
    means = np.asarray(posterior_means, np.float64)
    return int(np.sum(np.var(means, axis=0) > threshold))


def _iwae_log_px(model: Model, params: Params, x: jax.Array, key: jax.Array, k: int, chunk: int):
    """``log (1/k) sum_i p(x, z_i) / q(z_i | x)`` per image, ``z_i ~ q(z|x)``, in chunks of ``chunk``.

    A running log-sum-exp over the chunks keeps memory at ``batch * chunk`` decoder outputs.
    """
    mean, log_var = model.encode(params, x)
    b, d = mean.shape
    num_chunks = -(-k // chunk)

    def body(j, carry):
        run_max, run_sum = carry
        eps = jax.random.normal(jax.random.fold_in(key, j), (b, chunk, d), mean.dtype)
        std = jnp.exp(0.5 * log_var)[:, None, :]
        z = mean[:, None, :] + std * eps
        log_q = dist.diag_gaussian_log_prob(z, mean[:, None], log_var[:, None], batch_dims=2)
        log_prior = dist.standard_normal_log_prob(z, batch_dims=2)
        xs = jnp.repeat(x, chunk, axis=0)
        log_lik = objectives.log_likelihood(model, params, xs, z.reshape(b * chunk, d))
        log_w = log_lik.reshape(b, chunk) + log_prior - log_q
        valid = (j * chunk + jnp.arange(chunk)) < k
        log_w = jnp.where(valid[None, :], log_w, -jnp.inf)
        new_max = jnp.maximum(run_max, jnp.max(log_w, axis=1))
        run_sum = run_sum * jnp.exp(run_max - new_max) + jnp.sum(
            jnp.exp(log_w - new_max[:, None]), axis=1
        )
        return new_max, run_sum

    init = (jnp.full((b,), -jnp.inf, mean.dtype), jnp.zeros((b,), mean.dtype))
    run_max, run_sum = jax.lax.fori_loop(0, num_chunks, body, init)
    return run_max + jnp.log(run_sum) - math.log(k)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _iwae_batch(model, params, x, index, k, chunk, key):
    return {"log_px": _iwae_log_px(model, params, x, jax.random.fold_in(key, index), k, chunk)}


def iwae_log_px(model: Model, params: Params, x, key: jax.Array, *, k: int, chunk: int):
    """The IWAE estimate of ``log p(x)`` per image of one batch ``x`` (unjitted, for tools that
    compile it themselves: ``jaxvae bench`` counts its FLOPs)."""
    return _iwae_log_px(model, params, jnp.asarray(x), key, k, chunk)


def evaluate_iwae(
    model: Model,
    params: Params,
    images: np.ndarray,
    key: jax.Array,
    *,
    k: int,
    batch_size: int = 10,
    chunk: int = 500,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Importance-weighted bound on ``-log p(x)`` with ``k`` samples (Burda et al., 2016).

    Returns:
      ``nll``: mean over images of ``-log p_k(x)`` (nats per image; ``k=1`` is the negative ELBO),
      ``nll_se``: its standard error over images, ``iwae_k`` and ``num_examples``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"IWAE k must be a positive integer, got {k!r}")
    k = int(k)
    if not model.spec.stochastic:
        raise ValueError(f"the IWAE bound needs a VAE, not a model of kind {model.spec.kind!r}")
    _check_images(model, images)
    chunk = min(chunk, k)
    fn = lambda x, i, p, key_: _iwae_batch(model, p, x, i, k, chunk, key_)
    log_px = _run_batched(fn, images, batch_size, mesh, params, key)["log_px"].astype(np.float64)
    n = log_px.shape[0]
    se = float(np.std(log_px, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"nll": float(-np.mean(log_px)), "nll_se": se, "iwae_k": k, "num_examples": n}


@functools.partial(jax.jit, static_argnums=(0,))
def _ae_errors(model: Model, params: Params, x: jax.Array, index: jax.Array):
    del index
    code, _ = model.encode(params, x)
    out = model.decode(params, code)
    return {
        "l2": objectives.pixel_loss("l2", x, out),
        "l1": objectives.pixel_loss("l1", x, out),
        "code": code,
    }


def evaluate_ae(
    model: Model,
    params: Params,
    images: np.ndarray,
    *,
    batch_size: int = 1000,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Reconstruction error of an autoencoder on clean inputs: summed L2 and L1 per image, and the
    mean squared error per pixel."""
    _check_images(model, images)
    fn = lambda x, i, p: _ae_errors(model, p, x, i)
    out = _run_batched(fn, images, batch_size, mesh, params)
    pixels = int(np.prod(model.spec.image_shape))
    l2 = out["l2"].astype(np.float64)
    return {
        "recon_l2": float(np.mean(l2)),
        "recon_l1": float(np.mean(out["l1"])),
        "mse_per_pixel": float(np.mean(l2) / pixels),
        "active_units": active_units(out["code"]),
    }
