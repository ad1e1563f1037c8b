"""The VAE with two stochastic layers of the IWAE paper (Burda et al. 2016, section 5):

    q(z1, z2 | x) = q(z1 | x) q(z2 | z1),        p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1),

with ``p(z2) = N(0, I)`` and every other factor a diagonal Gaussian (mean and log-variance from
an MLP) except ``p(x | z1)``, the configured likelihood. The paper's MNIST model is
``q(z1|x)``: 784-200-200-(100, 100), ``q(z2|z1)``: 100-100-100-(50, 50), ``p(z1|z2)``:
50-100-100-(100, 100), ``p(x|z1)``: 100-200-200-784, all tanh: here ``model.hidden=(200, 200)``,
``model.latent_dim=100`` (``z1``), ``model.hvae.hidden2=(100, 100)``, ``model.hvae.z2_dim=50``,
``model.activation="tanh"``.

Both the ELBO and the importance log-weights are one-sample Monte Carlo over both layers::

    log w = log p(x | z1) + log p(z1 | z2) + log p(z2) - log q(z1 | x) - log q(z2 | z1).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxvae import distributions as dist
from jaxvae import networks
from jaxvae.models import register
from jaxvae.models.base import Model, Presentation, _positive_ints, set_numbers
from jaxvae.models.vae import kl_weighted_loss


@register("hvae")
@dataclasses.dataclass(frozen=True)
class HVAE(Model):
    """Two-stochastic-layer VAE (MLP only).

    Attributes:
      z2_dim: size of the top latent ``z2`` (``z1`` has ``latent_dim``).
      hidden2: hidden widths of ``q(z2 | z1)``; ``p(z1 | z2)`` mirrors them.
    """

    z2_dim: int = 50
    hidden2: tuple[int, ...] = (100, 100)

    inference_keys: ClassVar[tuple[str, ...]] = ("encoder", "encoder2")
    gaussian_heads: ClassVar[bool] = True
    architectures: ClassVar[tuple[str, ...]] = ("mlp",)
    # z1's prior is p(z1 | z2), not N(0, I): sweeping its coordinates shows nothing.
    presentation: ClassVar[Presentation] = Presentation(traversal_range=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        set_numbers(self, "a positive integer", lambda v: v > 0, "z2_dim", cast=int)
        object.__setattr__(self, "hidden2", _positive_ints("hvae hidden2", self.hidden2))

    # ---- networks -------------------------------------------------------------------------

    def _mlp(self, hidden, out_dim):
        return networks.MLP(hidden, out_dim, self.activation, self.layer)

    def init(self, key):
        k_q1, k_q2, k_p1, k_px, k_lik = jax.random.split(key, 5)
        x = jnp.zeros((1, *self.image_shape), jnp.float32)
        z1 = jnp.zeros((1, self.latent_dim), jnp.float32)
        z2 = jnp.zeros((1, self.z2_dim), jnp.float32)
        params = {
            "encoder": self.encoder_net(2 * self.latent_dim).init(k_q1, x)["params"],
            "encoder2": self._mlp(self.hidden2, 2 * self.z2_dim).init(k_q2, z1)["params"],
            "prior1": self._mlp(self.hidden2[::-1], 2 * self.latent_dim).init(k_p1, z2)["params"],
            "decoder": self.decoder_net().init(k_px, z1)["params"],
        }
        return self.with_likelihood(params, k_lik), {}

    def q_z1(self, params, x):
        """``(mean, log_var)`` of ``q(z1 | x)``, each ``[N, latent_dim]``."""
        self.check_images(x)
        return self.gaussian(self.encoder_net(2 * self.latent_dim), params["encoder"], x)

    def q_z2(self, q2_params, z1):
        """``(mean, log_var)`` of ``q(z2 | z1)`` for ``z1`` ``[..., latent_dim]``."""
        return self.gaussian(self._mlp(self.hidden2, 2 * self.z2_dim), q2_params, z1)

    def p_z1(self, params, z2):
        """``(mean, log_var)`` of ``p(z1 | z2)`` for ``z2`` ``[..., z2_dim]``."""
        net = self._mlp(self.hidden2[::-1], 2 * self.latent_dim)
        return self.gaussian(net, params["prior1"], z2)

    def decode(self, params, state, z, labels=None):
        """``p(x | z1)``."""
        del state, labels
        self.check_latents(z)
        raw = self.decoder_net().apply({"params": params["decoder"]}, z)
        return self.likelihood.distribution(raw, params.get("likelihood", {}))

    def posterior(self, params, state, batch) -> dist.DiagGaussian:
        """``q(z1 | x)``, the first latent layer's posterior (the one :meth:`encode` gives the
        mean of)."""
        del state
        return dist.DiagGaussian(*self.q_z1(params, batch["image"]))

    def encode(self, params, state, batch):
        """The mean of ``q(z1 | x)``."""
        del state
        return self.q_z1(params, batch["image"])[0]

    def sample_latents(self, params, state, key, num, labels=None):
        """Ancestral ``z1 ~ p(z1 | z2)``, ``z2 ~ N(0, I)``."""
        del state, labels
        k2, k1 = jax.random.split(key)
        z2 = jax.random.normal(k2, (num, self.z2_dim))
        return dist.reparameterize(k1, *self.p_z1(params, z2))

    # ---- the bound --------------------------------------------------------------------------

    def sample_terms(self, params, batch, key, num_samples, *, stop_q_grad=False):
        """``num_samples`` draws ``z1 ~ q(z1|x)``, ``z2 ~ q(z2|z1)`` per image and the log-densities
        at them, each ``[N, S]``: ``log_px`` (``log p(x|z1)``), ``log_pz1`` (``log p(z1|z2)``),
        ``log_pz2``, ``log_qz1``, ``log_qz2``; and ``mean1`` ``[N, latent_dim]``.

        With ``stop_q_grad`` both ``q`` densities are evaluated with q's parameters held constant;
        ``z1`` and ``z2`` keep their reparameterization paths (so ``q(z2|z1)``'s network, with stopped
        parameters, is applied to the live ``z1``)."""
        x = batch["image"]
        mean1, log_var1 = self.q_z1(params, x)
        b, d1 = mean1.shape
        k1, k2 = jax.random.split(key)
        eps1 = jax.random.normal(k1, (b, num_samples, d1), mean1.dtype)
        z1 = mean1[:, None] + jnp.exp(0.5 * log_var1)[:, None] * eps1
        mean2, log_var2 = self.q_z2(params["encoder2"], z1)
        z2 = dist.reparameterize(k2, mean2, log_var2)
        q1, q2 = (mean1, log_var1), (mean2, log_var2)
        if stop_q_grad:
            stop = jax.lax.stop_gradient
            q1, q2 = stop(q1), self.q_z2(stop(params["encoder2"]), z1)
        log_qz1 = dist.diag_gaussian_log_prob(z1, q1[0][:, None], q1[1][:, None], batch_dims=2)
        log_qz2 = dist.diag_gaussian_log_prob(z2, *q2, batch_dims=2)
        log_pz1 = dist.diag_gaussian_log_prob(z1, *self.p_z1(params, z2), batch_dims=2)
        log_pz2 = dist.standard_normal_log_prob(z2, batch_dims=2)
        xs = jnp.repeat(x, num_samples, axis=0)
        log_px = self.decode(params, {}, z1.reshape(b * num_samples, d1)).log_prob(xs)
        terms = {"log_px": log_px.reshape(b, num_samples), "log_pz1": log_pz1, "log_pz2": log_pz2}
        return terms | {"log_qz1": log_qz1, "log_qz2": log_qz2, "mean1": mean1}

    def elbo_parts(self, params, batch, key):
        """One sample: per-example ``recon = -log p(x|z1)``, ``kl = log q(z1|x) + log q(z2|z1) -
        log p(z1|z2) - log p(z2)`` and its two layers ``kl_z1``, ``kl_z2``; ``mean1``."""
        t = self.sample_terms(params, batch, key, 1)
        kl_z1 = (t["log_qz1"] - t["log_pz1"])[:, 0]
        kl_z2 = (t["log_qz2"] - t["log_pz2"])[:, 0]
        layers = {"kl_z1": kl_z1, "kl_z2": kl_z2, "mean1": t["mean1"]}
        return {"recon": -t["log_px"][:, 0], "kl": kl_z1 + kl_z2, **layers}

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0):
        """``mean(recon) + kl_weight * mean(kl)``; ``terms["elbo"]`` is always the true ELBO."""
        parts = self.elbo_parts(params, batch, key)
        layers = {k: jnp.mean(parts[k]) for k in ("kl_z1", "kl_z2")}
        return (*kl_weighted_loss(parts, kl_weight, jnp.mean(parts["kl"]), **layers), state)

    def eval_terms(self, params, state, batch, key):
        del state
        parts = self.elbo_parts(params, batch, key)
        figures = {k: parts[k] for k in ("recon", "kl", "kl_z1", "kl_z2")}
        return {"nelbo": parts["recon"] + parts["kl"], **figures, "posterior_mean": parts["mean1"]}

    def log_weights(self, params, state, batch, key, num_samples, *, stop_q_grad=False):
        del state
        t = self.sample_terms(params, batch, key, num_samples, stop_q_grad=stop_q_grad)
        return t["log_px"] + t["log_pz1"] + t["log_pz2"] - t["log_qz1"] - t["log_qz2"]
