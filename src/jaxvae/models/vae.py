"""The VAE (Kingma and Welling 2014): a diagonal Gaussian posterior, an ``N(0, I)`` prior and the
reparameterized ELBO. A beta-VAE is this family with a KL weight other than 1 (the objective's
schedule); free bits (Kingma et al. 2016) floor the batch-mean KL of each latent dimension.

Families that change one piece subclass :class:`VAE` and override that hook: the conditioning
(:meth:`VAE.condition`), the prior (:meth:`VAE.log_prior`, :meth:`VAE.kl`), or the loss.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxvae import distributions as dist
from jaxvae.models import register
from jaxvae.models.base import Model, set_numbers


def kl_weighted_loss(parts, kl_weight, penalty, extra=None, **figures):
    """``mean(recon) + kl_weight * penalty`` (``+ extra``) of one batch's ELBO ``parts`` (per
    example ``recon`` and ``kl``) and its terms, with ``figures``; ``terms["elbo"]`` is always
    the true ELBO. The loss glue of the KL-weighted families."""
    recon, kl = jnp.mean(parts["recon"]), jnp.mean(parts["kl"])
    loss = recon + kl_weight * penalty
    loss = loss if extra is None else loss + extra
    return loss, {"loss": loss, "recon": recon, "kl": kl, "elbo": -(recon + kl)} | figures


@register("vae")
@dataclasses.dataclass(frozen=True)
class VAE(Model):
    """Gaussian-latent VAE.

    Attributes:
      free_bits: nats per latent dimension below which the batch-mean KL is not penalised (0 =
        off; from ``model.<kind>.free_bits``).
    """

    free_bits: float = 0.0

    inference_keys: ClassVar[tuple[str, ...]] = ("encoder",)  # q's own parameters (DReG)
    gaussian_heads: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a number >= 0", lambda v: v >= 0, "free_bits")

    def refuse_free_bits(self, why: str) -> None:
        """For a family whose KL free bits cannot floor: a ``ValueError`` saying ``why``."""
        if self.free_bits > 0:
            raise ValueError(
                f"free_bits={self.free_bits!r}: {why}; use model.{self.name}.free_bits=0"
            )

    # ---- hooks ----------------------------------------------------------------------------

    def condition(self, labels):
        """What encoder and decoder see besides ``x`` and ``z`` (``None``: nothing)."""
        del labels
        return None

    def log_prior(self, params, z: jax.Array) -> jax.Array:
        """``log p(z)`` summed over the last axis."""
        del params
        return dist.standard_normal_log_prob(z, batch_dims=z.ndim - 1)

    def sample_latents(self, params, state, key, num, labels=None):
        """Draws of the prior ``N(0, I)``."""
        del params, state, labels
        return jax.random.normal(key, (num, self.latent_dim))

    def kl(self, params, mean, log_var, z):
        """``(KL per example, KL per dimension or None)``: analytic against ``N(0, I)``."""
        del params, z
        kl_dims = dist.gaussian_kl(mean, log_var)
        return jnp.sum(kl_dims, axis=-1), kl_dims

    # ---- networks -------------------------------------------------------------------------

    def init(self, key):
        k_enc, k_dec, k_lik = jax.random.split(key, 3)
        x = jnp.zeros((1, *self.image_shape), jnp.float32)
        labels = jnp.zeros((1,), jnp.int32)
        z = self.conditioned(jnp.zeros((1, self.latent_dim), jnp.float32), labels)
        enc = self.encoder_net(2 * self.latent_dim).init(k_enc, x, self.condition(labels))
        params = {"encoder": enc["params"], "decoder": self.decoder_net().init(k_dec, z)["params"]}
        return self.with_likelihood(params, k_lik), {}

    def q_params(self, params, batch):
        """``(mean, log_var)`` of ``q(z | x)``."""
        x = batch["image"]
        self.check_images(x)
        cond = self.condition(batch.get("label"))
        return self.gaussian(self.encoder_net(2 * self.latent_dim), params["encoder"], x, cond)

    def conditioned(self, z, labels):
        """The decoder's input: ``z`` and the condition of ``labels``, if any."""
        cond = self.condition(labels)
        if cond is None:
            return z
        return jnp.concatenate([z, jnp.broadcast_to(cond, (z.shape[0], cond.shape[-1]))], -1)

    def decode(self, params, state, z, labels=None):
        del state
        self.check_latents(z)
        raw = self.decoder_net().apply({"params": params["decoder"]}, self.conditioned(z, labels))
        return self.likelihood.distribution(raw, params.get("likelihood", {}))

    def posterior(self, params, state, batch) -> dist.DiagGaussian:
        """``q(z | x)`` of each image: a distribution with ``mean``, ``stddev``, ``sample`` and
        ``log_prob``."""
        del state
        return dist.DiagGaussian(*self.q_params(params, batch))

    def encode(self, params, state, batch):
        del state
        return self.q_params(params, batch)[0]

    # ---- objectives -----------------------------------------------------------------------

    def elbo_parts(self, params, batch, key):
        """One reparameterized sample: per-example ``recon = -log p(x|z)``, ``kl`` and
        ``kl_dims``, and the posterior ``mean``/``log_var``: the single implementation of the ELBO
        that training and evaluation share."""
        mean, log_var = self.q_params(params, batch)
        z = dist.reparameterize(key, mean, log_var)
        recon = -self.decode(params, {}, z, batch.get("label")).log_prob(batch["image"])
        kl, kl_dims = self.kl(params, mean, log_var, z)
        return {"recon": recon, "kl": kl, "kl_dims": kl_dims, "mean": mean, "log_var": log_var}

    def kl_penalty(self, parts) -> jax.Array:
        """The batch KL the loss weights: its mean, or with free bits
        ``sum_d max(free_bits, mean_batch KL_d)``."""
        if self.free_bits > 0 and parts["kl_dims"] is not None:
            return jnp.sum(jnp.maximum(self.free_bits, jnp.mean(parts["kl_dims"], axis=0)))
        return jnp.mean(parts["kl"])

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0):
        """``mean(recon) + kl_weight * KL``; ``terms["elbo"]`` is always the true ELBO."""
        parts = self.elbo_parts(params, batch, key)
        return (*kl_weighted_loss(parts, kl_weight, self.kl_penalty(parts)), state)

    def eval_terms(self, params, state, batch, key):
        del state
        return self.figures(self.elbo_parts(params, batch, key))

    def figures(self, parts) -> dict[str, jax.Array]:
        """The per-image test figures of :meth:`elbo_parts`' ``parts``."""
        out = {"nelbo": parts["recon"] + parts["kl"], "recon": parts["recon"], "kl": parts["kl"]}
        out["posterior_mean"] = parts["mean"]
        if parts["kl_dims"] is not None:
            out["kl_dims"] = parts["kl_dims"]
        return out

    def log_weights(self, params, state, batch, key, num_samples, *, stop_q_grad=False):
        x, labels = batch["image"], batch.get("label")
        mean, log_var = self.q_params(params, batch)
        b, d = mean.shape
        eps = jax.random.normal(key, (b, num_samples, d), mean.dtype)
        z = mean[:, None, :] + jnp.exp(0.5 * log_var)[:, None, :] * eps
        q = jax.lax.stop_gradient((mean, log_var)) if stop_q_grad else (mean, log_var)
        log_q = dist.diag_gaussian_log_prob(z, q[0][:, None], q[1][:, None], batch_dims=2)
        log_prior = self.log_prior(params, z)
        xs = jnp.repeat(x, num_samples, axis=0)
        ys = None if labels is None else jnp.repeat(labels, num_samples, axis=0)
        log_lik = self.decode(params, state, z.reshape(b * num_samples, d), ys).log_prob(xs)
        return log_lik.reshape(b, num_samples) + log_prior - log_q
