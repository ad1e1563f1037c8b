"""The VampPrior (Tomczak and Welling 2018): a VAE whose prior is the variational mixture of
posteriors at ``K`` learned pseudo-inputs,

    p(z) = (1/K) sum_k q(z | u_k),

so the prior shares the encoder's parameters (and DReG's condition fails). The KL has no closed
form: it is the one-sample Monte Carlo estimate ``log q(z | x) - log p(z)`` at the reparameterized
``z`` that the reconstruction term uses, and there is no per-dimension KL (so no free bits).

The pseudo-inputs are, as in the reference implementation, a bias-free linear layer applied to the
``K x K`` identity with weights drawn from ``N(0.05, 0.01^2)``, followed by a hardtanh to
``[0, 1]``: that is a ``[K, H, W, C]`` parameter clipped to ``[0, 1]`` (the clip has the hardtanh's
gradient, zero outside the interval).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxvae import distributions as dist
from jaxvae.models import register
from jaxvae.models.base import set_numbers
from jaxvae.models.vae import VAE


@register("vampprior")
@dataclasses.dataclass(frozen=True)
class VampPrior(VAE):
    """VAE with a VampPrior.

    Attributes:
      num_pseudo: ``K``, the number of pseudo-inputs (``model.vampprior.num_pseudo``; the paper's
        500).
      pseudo_init_mean: mean of the pseudo-inputs' initial values (before the clip to [0, 1]).
      pseudo_init_std: their standard deviation.
    """

    num_pseudo: int = 500
    pseudo_init_mean: float = 0.05
    pseudo_init_std: float = 0.01

    # The prior is built from q's own encoder: no parameter split exists for DReG.
    inference_keys: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a positive integer", lambda v: v > 0, "num_pseudo", cast=int)
        set_numbers(self, "a number >= 0", lambda v: v >= 0, "pseudo_init_std")
        self.refuse_free_bits(
            "the VampPrior's KL is a Monte Carlo estimate with no per-dimension terms to floor"
        )

    def init(self, key):
        k_vae, k_pseudo = jax.random.split(key)
        params, state = super().init(k_vae)
        shape = (self.num_pseudo, *self.image_shape)
        pseudo = self.pseudo_init_mean + self.pseudo_init_std * jax.random.normal(k_pseudo, shape)
        return params | {"prior": {"pseudo_inputs": pseudo}}, state

    def pseudo_inputs(self, params) -> jax.Array:
        """``u_k = hardtanh_[0,1](raw_k)``: ``[K, H, W, C]``."""
        return jnp.clip(params["prior"]["pseudo_inputs"], 0.0, 1.0)

    def components(self, params) -> tuple[jax.Array, jax.Array]:
        """``(mean, log_var)`` of ``q(z | u_k)`` for every pseudo-input: each ``[K, D]``."""
        return self.q_params(params, {"image": self.pseudo_inputs(params)})

    def log_prior(self, params, z):
        """``log (1/K) sum_k N(z; mean_k, diag exp(log_var_k))`` for ``z`` of shape ``[..., D]``."""
        flat = z.reshape(-1, z.shape[-1])
        log_comp = dist.pairwise_diag_gaussian_log_prob(flat, *self.components(params))  # [N, K]
        log_comp = log_comp.reshape(*z.shape[:-1], self.num_pseudo)
        return jax.nn.logsumexp(log_comp, axis=-1) - math.log(self.num_pseudo)

    def kl(self, params, mean, log_var, z):
        """``(log q(z | x) - log p(z), None)`` at the sampled ``z``: the one-sample KL estimate."""
        log_q = dist.diag_gaussian_log_prob(z, mean, log_var, batch_dims=z.ndim - 1)
        return log_q - self.log_prior(params, z), None

    def sample_latents(self, params, state, key, num, labels=None):
        """``z ~ q(z | u_k)`` with ``k`` uniform over the pseudo-inputs."""
        del state, labels
        k_comp, k_z = jax.random.split(key)
        mean, log_var = self.components(params)
        k = jax.random.randint(k_comp, (num,), 0, self.num_pseudo)
        return dist.reparameterize(k_z, mean[k], log_var[k])

    def extra_pictures(self, params, state, batch, key):
        """``pseudo_inputs.png``: the first 64 pseudo-inputs, 8 to a row."""
        del state, batch, key
        return {"pseudo_inputs.png": (self.pseudo_inputs(params)[:64], 8)}
