"""DIP-VAE I and II (Kumar et al. 2018): a VAE whose loss adds a penalty that drives the
covariance of the aggregate posterior ``q(z) = mean_x q(z | x)`` towards the identity.

Over a batch of posteriors ``N(mu_i, diag(sigma_i^2))``, ``i = 1..M``:

    Cov_I  = mean_i mu_i mu_i^T - (mean_i mu_i)(mean_i mu_i)^T      (the covariance of the means),
    Cov_II = Cov_I + diag(mean_i sigma_i^2)                         (the covariance of q(z)),

and the penalty on a covariance ``C`` is (disentanglement_lib's ``regularize_diag_off_diag_dip``)

    dip(C) = lambda_od * sum_{k != l} C_kl^2 + lambda_d * sum_k (C_kk - 1)^2,

with ``lambda_d = lambda_d_factor * lambda_od``: disentanglement_lib fixes ``lambda_d_factor`` at
10 for DIP-VAE-I and 1 for DIP-VAE-II and sweeps ``lambda_od``. The loss is

    loss = mean(recon) + kl_weight * KL + dip(Cov),

``kl_weight`` being the objective's schedule (1 by default, disentanglement_lib's setting).
``dipvae_i`` penalises ``Cov_I``, ``dipvae_ii`` ``Cov_II``.

Test figures: the VAE's (``nelbo``, ``recon``, ``kl``, comparable with a VAE's and with the
importance-weighted NLL) and ``dip``, the penalty of each eval batch (given to each of its
images, so its test mean is the mean over eval batches; a padded last batch would enter its
padding, so choose ``eval.batch_size`` to divide the test set).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxvae.models import register
from jaxvae.models.base import Presentation, set_numbers
from jaxvae.models.vae import VAE, kl_weighted_loss


def covariance_of_means(mean: jax.Array) -> jax.Array:
    """``mean_i mu_i mu_i^T - (mean_i mu_i)(mean_i mu_i)^T`` of ``mean`` ``[M, D]``: ``[D, D]``
    (the biased batch covariance)."""
    centre = jnp.mean(mean, axis=0)
    return jnp.mean(mean[:, :, None] * mean[:, None, :], axis=0) - jnp.outer(centre, centre)


def aggregate_covariance(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """The covariance of the batch's mixture of diagonal Gaussians: the covariance of the means
    plus the mean posterior variance on the diagonal: ``[D, D]``."""
    return covariance_of_means(mean) + jnp.diag(jnp.mean(jnp.exp(log_var), axis=0))


def dip_penalty(cov: jax.Array, lambda_od: float, lambda_d: float) -> jax.Array:
    """``lambda_od * sum_{k != l} C_kl^2 + lambda_d * sum_k (C_kk - 1)^2``."""
    diag = jnp.diagonal(cov)
    off = cov - jnp.diag(diag)
    return lambda_od * jnp.sum(jnp.square(off)) + lambda_d * jnp.sum(jnp.square(diag - 1.0))


@register("dipvae_i")
@dataclasses.dataclass(frozen=True)
class DIPVAEI(VAE):
    """DIP-VAE-I: the penalty on the covariance of the posterior means.

    Attributes:
      lambda_od: weight of the squared off-diagonal entries (``model.dipvae_i.lambda_od``; 10,
        inside disentanglement_lib's sweep 1..50).
      lambda_d_factor: ``lambda_d / lambda_od``, the weight of the squared deviations of the
        diagonal from 1 relative to ``lambda_od`` (10 for DIP-VAE-I, as disentanglement_lib).
    """

    lambda_od: float = 10.0
    lambda_d_factor: float = 10.0

    presentation: ClassVar[Presentation] = Presentation(headline=("nelbo", "recon", "kl", "dip"))

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a number >= 0", lambda v: v >= 0, "lambda_od", "lambda_d_factor")

    @property
    def lambda_d(self) -> float:
        return self.lambda_d_factor * self.lambda_od

    def covariance(self, mean: jax.Array, log_var: jax.Array) -> jax.Array:
        """The covariance the penalty drives to the identity."""
        del log_var
        return covariance_of_means(mean)

    def dip(self, parts) -> jax.Array:
        cov = self.covariance(parts["mean"], parts["log_var"])
        return dip_penalty(cov, self.lambda_od, self.lambda_d)

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0):
        """``mean(recon) + kl_weight * KL + dip(Cov)``; ``terms["elbo"]`` is the true ELBO."""
        parts = self.elbo_parts(params, batch, key)
        dip = self.dip(parts)
        return (*kl_weighted_loss(parts, kl_weight, self.kl_penalty(parts), dip, dip=dip), state)

    def eval_terms(self, params, state, batch, key):
        """The VAE's figures and the eval batch's penalty ``dip`` given to each image."""
        del state
        parts = self.elbo_parts(params, batch, key)
        return self.figures(parts) | {"dip": jnp.full_like(parts["kl"], self.dip(parts))}


@register("dipvae_ii")
@dataclasses.dataclass(frozen=True)
class DIPVAEII(DIPVAEI):
    """DIP-VAE-II: the penalty on the covariance of the aggregate posterior (the means'
    covariance plus the mean posterior variances).

    Attributes:
      lambda_od: as DIP-VAE-I's (10).
      lambda_d_factor: 1 for DIP-VAE-II, as disentanglement_lib.
    """

    lambda_d_factor: float = 1.0

    def covariance(self, mean: jax.Array, log_var: jax.Array) -> jax.Array:
        return aggregate_covariance(mean, log_var)
