"""The beta-TCVAE (Chen et al. 2018): a VAE whose KL term is split into the index-code mutual
information, the total correlation of the aggregate posterior and the dimension-wise KL,

    E_x KL(q(z|x) || p(z)) = MI + TC + DWKL,
    MI   = E_{q(z,x)}[log q(z|x) - log q(z)],
    TC   = E_{q(z)}[log q(z) - log prod_d q(z_d)],
    DWKL = E_{q(z)}[log prod_d q(z_d) - log p(z)],

each term with its own weight: loss = recon + kl_weight * (alpha MI + beta TC + gamma DWKL).
``kl_weight`` is the objective's schedule (``objective.beta`` times the warm-up; 1 by default), so
``objective.beta`` is not the paper's beta: that is ``model.btcvae.beta``.

``q(z) = (1/N) sum_n q(z|x_n)`` is estimated by minibatch-weighted sampling (MWS, the paper's
eq. 4 as in its reference code): for a batch of ``M`` images from a training set of ``N``
(``num_train``) with one sample ``z_i ~ q(z|x_i)`` each,

    log q(z_i)          ~ logsumexp_j log q(z_i | x_j) - log(N M),
    log prod_d q(z_id)  ~ sum_d [logsumexp_j log q(z_id | x_j) - log(N M)],

with ``j`` over the whole batch (``i`` included), and MI, TC and DWKL are the batch means of the
differences above. They telescope: ``MI + TC + DWKL = mean_i[log q(z_i|x_i) - log p(z_i)]``, the
one-sample Monte Carlo KL, whatever the estimates of ``log q(z)``.

Test figures: ``nelbo``, ``recon`` and ``kl`` are the VAE's (the ELBO with the analytic KL, so they
and the importance-weighted NLL compare directly with a VAE's), and ``mi``, ``tc`` and ``dwkl`` are
the MWS estimates computed within each eval batch (``M = eval.batch_size`` test images, with
``N = num_train``), reported per image and averaged over the test set. A padded last eval batch
would let its padding images into the estimates of the others; choose ``eval.batch_size`` and
``--num-examples`` so that the batches are full.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxvae import distributions as dist
from jaxvae.models import register
from jaxvae.models.base import Presentation, set_numbers
from jaxvae.models.vae import VAE, kl_weighted_loss

_LOG_2PI = math.log(2.0 * math.pi)


def mws_log_densities(
    z: jax.Array, mean: jax.Array, log_var: jax.Array, num_train: int
) -> dict[str, jax.Array]:
    """The log-densities of the MWS decomposition at one sample per example.

    Args:
      z: samples ``z_i ~ q(z | x_i)``, ``[M, D]``.
      mean: posterior means ``[M, D]``.
      log_var: posterior log-variances ``[M, D]``.
      num_train: ``N``, the size of the dataset the batch is drawn from.

    Returns:
      ``[M]`` arrays: ``log_qz_x`` (``log q(z_i | x_i)``), ``log_qz`` (``log q(z_i)``),
      ``log_prod_qzd`` (``log prod_d q(z_id)``) and ``log_pz`` (``log N(z_i; 0, I)``).
    """
    # log q(z_id | x_j) for every pair: [M (i), M (j), D].
    diff = z[:, None, :] - mean[None, :, :]
    log_q_pairs = -0.5 * (_LOG_2PI + log_var[None] + jnp.square(diff) * jnp.exp(-log_var[None]))
    log_nm = math.log(num_train * z.shape[0])
    return {
        "log_qz_x": dist.diag_gaussian_log_prob(z, mean, log_var),
        "log_qz": jax.nn.logsumexp(jnp.sum(log_q_pairs, axis=-1), axis=1) - log_nm,
        "log_prod_qzd": jnp.sum(jax.nn.logsumexp(log_q_pairs, axis=1) - log_nm, axis=-1),
        "log_pz": dist.standard_normal_log_prob(z),
    }


def decomposition(densities: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-example ``mi``, ``tc`` and ``dwkl`` (``[M]``; their batch means are the estimates) from
    :func:`mws_log_densities`."""
    d = densities
    return {
        "mi": d["log_qz_x"] - d["log_qz"],
        "tc": d["log_qz"] - d["log_prod_qzd"],
        "dwkl": d["log_prod_qzd"] - d["log_pz"],
    }


@register("btcvae")
@dataclasses.dataclass(frozen=True)
class BetaTCVAE(VAE):
    """beta-TCVAE with the MWS estimator (conv or MLP backbone, diagonal Gaussian posterior,
    ``N(0, I)`` prior).

    Attributes:
      alpha: weight of the index-code mutual information (``model.btcvae.alpha``; 1).
      beta: weight of the total correlation (6, the paper's choice for its image datasets).
      gamma: weight of the dimension-wise KL (1).
    """

    alpha: float = 1.0
    beta: float = 6.0
    gamma: float = 1.0

    presentation: ClassVar[Presentation] = Presentation(
        headline=("nelbo", "recon", "kl", "mi", "tc", "dwkl")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a number >= 0", lambda v: v >= 0, "alpha", "beta", "gamma")
        self.refuse_free_bits(
            "the beta-TCVAE weights MI, TC and the dimension-wise KL, not per-dimension KLs"
        )

    def tc_parts(self, params, batch, key) -> dict[str, jax.Array]:
        """The VAE's :meth:`elbo_parts` at one reparameterized ``z`` (same key, same ``z``), with
        the per-example MWS densities and ``mi``, ``tc``, ``dwkl`` of the batch added."""
        parts = self.elbo_parts(params, batch, key)
        z = dist.reparameterize(key, parts["mean"], parts["log_var"])  # elbo_parts' z
        densities = mws_log_densities(z, parts["mean"], parts["log_var"], self.num_train)
        return parts | densities | decomposition(densities)

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0):
        """``mean(recon) + kl_weight * (alpha MI + beta TC + gamma DWKL)``; ``terms["elbo"]`` is
        the ELBO with the analytic KL."""
        p = self.tc_parts(params, batch, key)
        mi, tc, dwkl = jnp.mean(p["mi"]), jnp.mean(p["tc"]), jnp.mean(p["dwkl"])
        penalty = self.alpha * mi + self.beta * tc + self.gamma * dwkl
        return (*kl_weighted_loss(p, kl_weight, penalty, mi=mi, tc=tc, dwkl=dwkl), state)

    def eval_terms(self, params, state, batch, key):
        """The VAE's figures and the per-image MWS ``mi``, ``tc``, ``dwkl`` within the eval batch
        (see the module docstring)."""
        del state
        p = self.tc_parts(params, batch, key)
        return self.figures(p) | {"mi": p["mi"], "tc": p["tc"], "dwkl": p["dwkl"]}
