"""FactorVAE (Kim and Mnih 2018): a VAE whose loss adds ``gamma`` times an estimate of the total
correlation of the aggregate posterior, ``TC = KL(q(z) || prod_d q(z_d))``, made by a
discriminator ``D`` trained to tell samples of ``q(z)`` from samples of ``prod_d q(z_d)``.

With ``D(z)`` the two logits (class 0: a sample of ``q(z)``, class 1: of ``prod_d q(z_d)``), the
density-ratio trick gives ``log q(z) / prod_d q(z_d) ~ D(z)_0 - D(z)_1``, so (as
disentanglement_lib's ``FactorVAE``)

    loss = mean(recon) + kl_weight * KL + gamma * mean_i [D(z_i)_0 - D(z_i)_1],

with ``z_i ~ q(z | x_i)`` the reparameterized sample the reconstruction uses and ``kl_weight``
the objective's schedule (1 by default). The discriminator is its own parameter group
(``params["discriminator"]``), trained by its own loss and optimizer (:meth:`group_losses`,
:meth:`group_optimizers`; the train step takes its gradient from that loss): the cross-entropy

    disc_loss = -(1/2) mean_i log p_0(z_i) - (1/2) mean_i log p_1(perm(z)_i),

``p = clip(softmax(D(.)), 1e-6, 1 - 1e-6)`` as disentanglement_lib clips, where ``perm(z)``
permutes each latent dimension independently across the batch (a sample of
``prod_d q(z_d)``). The samples ``z`` the discriminator sees are drawn with the group loss's own
key (disentanglement_lib reuses the VAE's sample; both are draws of the same ``q(z | x)``), with
the encoder held constant.

The discriminator is disentanglement_lib's ``fc_discriminator``: six dense layers of 1000 units
with leaky ReLU (slope 0.2, TensorFlow's default), then two logits; its Adam has learning rate
1e-4, beta1 0.5, beta2 0.9 (disentanglement_lib's ``discriminator/AdamOptimizer``).

Test figures: the VAE's (``nelbo``, ``recon``, ``kl`` with the analytic KL, so that they and the
importance-weighted NLL compare with a VAE's) and ``tc``, the discriminator's estimate
``D(z)_0 - D(z)_1`` per image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxvae import distributions as dist
from jaxvae import networks
from jaxvae.models import register
from jaxvae.models.base import Presentation, _positive_ints, set_numbers
from jaxvae.models.vae import VAE, kl_weighted_loss

# disentanglement_lib clips the discriminator's probabilities before taking their log.
PROB_CLIP = 1e-6
LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default


class Discriminator(nn.Module):
    """Dense layers with leaky ReLU, then two logits: ``z [N, D] -> [N, 2]``."""

    hidden: Sequence[int]
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h, init = z, networks.INITIALIZERS[self.weight_init]
        for width in self.hidden:
            h = nn.leaky_relu(nn.Dense(width, kernel_init=init)(h), negative_slope=LEAKY_SLOPE)
        return nn.Dense(2, kernel_init=init)(h)


def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
    """Each column of ``z`` ``[M, D]`` permuted across the batch by its own permutation: a
    sample of ``prod_d q(z_d)`` from samples of ``q(z)``."""
    order = jnp.argsort(jax.random.uniform(key, z.shape), axis=0)
    return jnp.take_along_axis(z, order, axis=0)


def tc_estimate(logits: jax.Array) -> jax.Array:
    """The density-ratio estimate ``log q(z) - log prod_d q(z_d) ~ D(z)_0 - D(z)_1``: ``[N]``."""
    return logits[:, 0] - logits[:, 1]


def clipped_log_probs(logits: jax.Array) -> jax.Array:
    """``log clip(softmax(logits), 1e-6, 1 - 1e-6)``, as disentanglement_lib."""
    return jnp.log(jnp.clip(jax.nn.softmax(logits, axis=-1), PROB_CLIP, 1.0 - PROB_CLIP))


def discriminator_loss(logits_joint: jax.Array, logits_permuted: jax.Array) -> jax.Array:
    """The discriminator's cross-entropy: ``-(1/2) mean log p_0(z) - (1/2) mean log
    p_1(perm(z))`` from the logits of samples of ``q(z)`` and of their permutation."""
    return -0.5 * (
        jnp.mean(clipped_log_probs(logits_joint)[:, 0])
        + jnp.mean(clipped_log_probs(logits_permuted)[:, 1])
    )


@register("factorvae")
@dataclasses.dataclass(frozen=True)
class FactorVAE(VAE):
    """FactorVAE: the VAE's loss plus ``gamma`` times a discriminator's TC estimate.

    Attributes:
      gamma: weight of the total-correlation estimate (``model.factorvae.gamma``; 10, the
        smallest of disentanglement_lib's sweep 10..100).
      disc_hidden: the discriminator's hidden widths (six of 1000).
      disc_learning_rate: the discriminator's Adam learning rate (1e-4).
      disc_b1: its Adam beta1 (0.5).
      disc_b2: its Adam beta2 (0.9).
      disc_eps: its Adam epsilon (1e-8).
    """

    gamma: float = 10.0
    disc_hidden: tuple[int, ...] = (1000,) * 6
    disc_learning_rate: float = 1e-4
    disc_b1: float = 0.5
    disc_b2: float = 0.9
    disc_eps: float = 1e-8

    presentation: ClassVar[Presentation] = Presentation(headline=("nelbo", "recon", "kl", "tc"))

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a number >= 0", lambda v: v >= 0, "gamma")
        set_numbers(self, "a number > 0", lambda v: v > 0, "disc_learning_rate", "disc_eps")
        set_numbers(self, "in [0, 1)", lambda v: 0 <= v < 1, "disc_b1", "disc_b2")
        disc_hidden = _positive_ints("factorvae disc_hidden", self.disc_hidden)
        object.__setattr__(self, "disc_hidden", disc_hidden)

    # ---- the discriminator ----------------------------------------------------------------

    def discriminator(self) -> Discriminator:
        return Discriminator(self.disc_hidden, self.weight_init)

    def init(self, key):
        k_vae, k_disc = jax.random.split(key)
        params, state = super().init(k_vae)
        z = jnp.zeros((1, self.latent_dim), jnp.float32)
        params["discriminator"] = self.discriminator().init(k_disc, z)["params"]
        return params, state

    def logits(self, params, z: jax.Array) -> jax.Array:
        """The discriminator's two logits at ``z`` ``[N, D]``: ``[N, 2]``."""
        return self.discriminator().apply({"params": params["discriminator"]}, z)

    # ---- objectives -----------------------------------------------------------------------

    def factor_parts(self, params, batch, key) -> dict[str, jax.Array]:
        """The VAE's :meth:`elbo_parts` and the per-example ``tc`` estimate at the same ``z``."""
        parts = self.elbo_parts(params, batch, key)
        z = dist.reparameterize(key, parts["mean"], parts["log_var"])  # elbo_parts' z
        return parts | {"tc": tc_estimate(self.logits(params, z))}

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0):
        """``mean(recon) + kl_weight * KL + gamma * TC``; the discriminator is held constant (its
        gradient comes from :meth:`group_losses`)."""
        frozen = params | {"discriminator": jax.lax.stop_gradient(params["discriminator"])}
        p = self.factor_parts(frozen, batch, key)
        tc = jnp.mean(p["tc"])
        return (*kl_weighted_loss(p, kl_weight, self.kl_penalty(p), self.gamma * tc, tc=tc), state)

    def disc_loss(self, params, state, batch, key) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The discriminator's loss at samples of ``q(z|x)`` (encoder held constant) and their
        dimension-wise permutation; terms ``disc_loss`` and ``disc_accuracy`` (the fraction of
        both sets classified right)."""
        del state
        k_z, k_perm = jax.random.split(key)
        mean, log_var = jax.lax.stop_gradient(self.q_params(params, batch))
        z = dist.reparameterize(k_z, mean, log_var)
        logits = self.logits(params, jnp.concatenate([z, permute_dims(k_perm, z)]))
        joint, permuted = jnp.split(logits, 2)
        loss = discriminator_loss(joint, permuted)
        right = jnp.concatenate([joint[:, 0] > joint[:, 1], permuted[:, 1] >= permuted[:, 0]])
        return loss, {"disc_loss": loss, "disc_accuracy": jnp.mean(right.astype(jnp.float32))}

    def group_losses(self):
        return {"discriminator": self.disc_loss}

    def group_optimizers(self):
        betas = {"b1": self.disc_b1, "b2": self.disc_b2}
        return {"discriminator": optax.adam(self.disc_learning_rate, **betas, eps=self.disc_eps)}

    def eval_terms(self, params, state, batch, key):
        """The VAE's figures and the discriminator's ``tc`` estimate per image."""
        del state
        p = self.factor_parts(params, batch, key)
        return self.figures(p) | {"tc": p["tc"]}
