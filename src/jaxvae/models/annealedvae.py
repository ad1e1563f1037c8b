"""The AnnealedVAE (Burgess et al. 2018, "Understanding disentangling in beta-VAE", eq. 8): a VAE
whose KL is pulled towards a capacity ``C`` that grows linearly with the training step,

    C(step) = c_max * min(1, step / iteration_threshold),
    loss    = mean(recon) + kl_weight * gamma * |KL - C(step)|,

with ``KL`` the batch mean of the analytic KL to ``N(0, I)`` and ``kl_weight`` the objective's
schedule (1 by default; disentanglement_lib has none). disentanglement_lib's defaults (its
``annealed_vae`` in the unsupervised study): ``gamma = 1000``, ``iteration_threshold = 100000``
and ``c_max`` swept over 5..100 nats; 25 here.

Test figures: the VAE's (``nelbo``, ``recon``, ``kl``), comparable with a VAE's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxvae.models import register
from jaxvae.models.base import set_numbers
from jaxvae.models.vae import VAE, kl_weighted_loss


def capacity(step: jax.Array, c_max: float, iteration_threshold: int) -> jax.Array:
    """``c_max * min(1, step / iteration_threshold)``: the target KL (nats) at ``step``."""
    fraction = jnp.asarray(step, jnp.float32) / float(iteration_threshold)
    return c_max * jnp.minimum(1.0, fraction)


@register("annealedvae")
@dataclasses.dataclass(frozen=True)
class AnnealedVAE(VAE):
    """A VAE trained towards a growing KL capacity.

    Attributes:
      gamma: weight of ``|KL - C|`` (``model.annealedvae.gamma``; 1000).
      c_max: the final capacity in nats (25).
      iteration_threshold: steps over which the capacity grows from 0 to ``c_max`` (100000).
    """

    gamma: float = 1000.0
    c_max: float = 25.0
    iteration_threshold: int = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a number >= 0", lambda v: v >= 0, "gamma", "c_max")
        set_numbers(self, "a positive integer", lambda v: v > 0, "iteration_threshold", cast=int)
        self.refuse_free_bits("the AnnealedVAE targets the total KL, not per-dimension KLs")

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0):
        """``mean(recon) + kl_weight * gamma * |KL - C(step)|``; ``terms["elbo"]`` is the true
        ELBO and ``terms["capacity"]`` is ``C(step)``."""
        parts = self.elbo_parts(params, batch, key)
        c = capacity(step, self.c_max, self.iteration_threshold)
        penalty = jnp.abs(jnp.mean(parts["kl"]) - c)
        return (*kl_weighted_loss(parts, kl_weight * self.gamma, penalty, capacity=c), state)
