"""Densities, divergences and sampling for the latent and observation models.

Everything here is a pure function over arrays that reads like the maths. Log-densities are summed
over all non-batch axes, so each returns one value per example (``[batch]`` for ``[batch, ...]``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_event(x: jax.Array, batch_dims: int) -> jax.Array:
    """Sums over every axis after the first ``batch_dims``."""
    return jnp.sum(x, axis=tuple(range(batch_dims, x.ndim)))


def _flat_events(batch_dims: int, *arrays: ArrayLike) -> list[jax.Array]:
    """Broadcasts ``arrays`` together and flattens their event axes into one last axis.

    Images end in a channel axis of size 1; XLA:CPU vectorizes elementwise loops along the last
    axis, so computing on ``[N, H, W, 1]`` runs scalar code. On ``[N, H*W*C]`` the log-likelihood
    of 5000 x 784 pixels (value and sum) takes 1.6 ms instead of 8.
    """
    arrays = [jnp.asarray(a) for a in arrays]
    shape = jnp.broadcast_shapes(*(a.shape for a in arrays))
    if len(shape) < batch_dims:
        raise ValueError(f"batch_dims={batch_dims} exceeds the rank of the shape {shape}")
    target = (*shape[:batch_dims], -1)
    return [jnp.broadcast_to(a, shape).reshape(target) for a in arrays]


def reparameterize(key: jax.Array, mean: ArrayLike, log_var: ArrayLike) -> jax.Array:
    """Draws ``z = mean + exp(log_var / 2) * eps`` with ``eps ~ N(0, I)``, one per element."""
    mean = jnp.asarray(mean)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * jnp.asarray(log_var)) * eps


def gaussian_kl(mean: ArrayLike, log_var: ArrayLike) -> jax.Array:
    """Per-dimension ``KL(N(mean, exp(log_var)) || N(0, 1))`` (not summed).

    ``KL = 0.5 * (mean^2 + exp(log_var) - 1 - log_var)``.
    """
    mean, log_var = jnp.asarray(mean), jnp.asarray(log_var)
    return 0.5 * (jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var)


def diag_gaussian_log_prob(
    z: ArrayLike, mean: ArrayLike, log_var: ArrayLike, *, batch_dims: int = 1
) -> jax.Array:
    """``log N(z; mean, diag(exp(log_var)))`` summed over the event axes."""
    z, mean, log_var = jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_var)
    lp = -0.5 * (_LOG_2PI + log_var + jnp.square(z - mean) * jnp.exp(-log_var))
    return _sum_event(lp, batch_dims)


@jax.custom_vjp
def pairwise_diag_gaussian_log_prob(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """``log N(z_n; mean_k, diag(exp(log_var_k)))`` for every pair: ``[N, K]`` from ``z`` ``[N, D]``
    and ``mean``, ``log_var`` ``[K, D]`` (a mixture's components, e.g. the VampPrior's).

    The value is :func:`diag_gaussian_log_prob` of the broadcast ``[N, K, D]`` difference, bit for
    bit. The gradient is the same function's, computed through matrix products instead of reductions
    over that ``[N, K, D]`` tensor's batch axis (on CPU those made the VampPrior's training step 1.6x
    slower); it equals autodiff's up to rounding.
    """
    return diag_gaussian_log_prob(z[:, None, :], mean, log_var, batch_dims=2)


def _pairwise_fwd(z, mean, log_var):
    return pairwise_diag_gaussian_log_prob(z, mean, log_var), (z, mean, log_var)


def _pairwise_bwd(residuals, g):
    # With p = exp(-log_var) and value[n, k] = -0.5 sum_d (log 2pi + log_var + (z - mean)^2 p):
    #   d/dz[n, d]       = sum_k g[n, k] (mean[k, d] - z[n, d]) p[k, d]
    #   d/dmean[k, d]    = p[k, d] sum_n g[n, k] (z[n, d] - mean[k, d])
    #   d/dlog_var[k, d] = -0.5 sum_n g[n, k] (1 - (z[n, d] - mean[k, d])^2 p[k, d])
    z, mean, log_var = residuals
    p = jnp.exp(-log_var)
    total = jnp.sum(g, axis=0)[:, None]  # [K, 1]
    gz = g.T @ z  # [K, D]
    dz = g @ (mean * p) - z * (g @ p)
    dmean = p * (gz - mean * total)
    squares = g.T @ jnp.square(z) - 2.0 * mean * gz + jnp.square(mean) * total
    dlog_var = 0.5 * (p * squares - total)
    return dz, dmean, dlog_var


pairwise_diag_gaussian_log_prob.defvjp(_pairwise_fwd, _pairwise_bwd)


def standard_normal_log_prob(z: ArrayLike, *, batch_dims: int = 1) -> jax.Array:
    """``log N(z; 0, I)`` summed over the event axes."""
    z = jnp.asarray(z)
    return _sum_event(-0.5 * (_LOG_2PI + jnp.square(z)), batch_dims)


def bernoulli_log_prob(x: ArrayLike, logits: ArrayLike, *, batch_dims: int = 1) -> jax.Array:
    """``sum x * log sigmoid(l) + (1 - x) * log sigmoid(-l)`` over the event axes.

    Written as ``x * l - softplus(l)``, which is exact for any ``x`` in [0, 1] (continuous pixels used
    as Bernoulli targets, as in the classic VAE protocol) and stable for large ``|l|``.
    """
    x, logits = _flat_events(batch_dims, x, logits)
    return jnp.sum(x * logits - softplus(logits), axis=-1)


def softplus(x: ArrayLike) -> jax.Array:
    """``log(1 + exp(x))`` as ``max(x, 0) + log1p(exp(-|x|))``: stable, and on CPU four times as fast
    (value and gradient) as ``jax.nn.softplus``, whose ``logaddexp`` form XLA does not vectorize.

    ``max(x, 0)`` is written ``x/2 + |x|/2`` (exact in floating point) so that the gradient at 0 is
    the sigmoid's 1/2.
    """
    x = jnp.asarray(x)
    return 0.5 * x + 0.5 * jnp.abs(x) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def gaussian_log_prob(
    x: ArrayLike, mean: ArrayLike, log_scale: ArrayLike, *, batch_dims: int = 1
) -> jax.Array:
    """``log N(x; mean, exp(log_scale)^2)`` summed over the event axes (``log_scale`` broadcasts)."""
    x, mean, log_scale = _flat_events(batch_dims, x, mean, log_scale)
    lp = -0.5 * _LOG_2PI - log_scale - 0.5 * jnp.square((x - mean) * jnp.exp(-log_scale))
    return jnp.sum(lp, axis=-1)


class DiagGaussian(NamedTuple):
    """``N(loc, diag(exp(log_var)))`` over the last axis: a posterior ``q(z | x)`` per example.

    ``loc`` and ``log_var`` are ``[..., D]``; ``log_prob(z)`` takes ``z`` of shape ``[..., D]`` or
    ``[S, ..., D]`` (S draws per example) and sums over ``D``.
    """

    loc: jax.Array
    log_var: jax.Array

    def mean(self) -> jax.Array:
        return self.loc

    def stddev(self) -> jax.Array:
        return jnp.exp(0.5 * self.log_var)

    def sample(self, key: jax.Array, num: int | None = None) -> jax.Array:
        """One reparameterized draw ``[..., D]``, or ``num`` of them ``[num, ..., D]``."""
        shape = self.loc.shape if num is None else (num, *self.loc.shape)
        eps = jax.random.normal(key, shape, jnp.result_type(self.loc))
        return self.loc + self.stddev() * eps

    def log_prob(self, z: ArrayLike) -> jax.Array:
        z = jnp.asarray(z)
        return diag_gaussian_log_prob(z, self.loc, self.log_var, batch_dims=z.ndim - 1)
