"""Training objectives: the negative ELBO (VAE, beta-VAE) and pixel losses (AE, DAE).

Every loss returns ``(scalar, terms)`` where ``terms`` is a dict of per-batch means in nats per image:
``recon`` (negative log-likelihood, or the pixel loss for an AE), ``kl``, ``elbo`` and ``loss``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxvae import corruptions
from jaxvae import distributions as dist
from jaxvae.models import Model, Params

AE_LOSSES = ("l2", "l1")
NOISE_KINDS = corruptions.NOISE_KINDS


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    """Static options of the training objective.

    Attributes:
      beta: weight of the KL term (``1`` = the ELBO; ``> 1`` = beta-VAE).
      warmup_steps: the KL weight rises linearly from 0 to ``beta`` over this many steps (0 = off).
      free_bits: nats per latent dimension below which the batch-mean KL is not penalised (0 = off).
      dynamic_binarize: resample binary pixels ``x ~ Bernoulli(x)`` for every batch.
      ae_loss: ``"l2"`` (squared error) or ``"l1"`` pixel loss for AE/DAE, summed over pixels.
      noise: DAE input corruption, one of ``NOISE_KINDS``.
      noise_level: its strength (std for Gaussian, probability for masking and salt-and-pepper).
    """

    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0
    dynamic_binarize: bool = False
    ae_loss: str = "l2"
    noise: str = "gaussian"
    noise_level: float = 0.3

    def __post_init__(self) -> None:
        if not float(self.beta) >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if int(self.warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not float(self.free_bits) >= 0:
            raise ValueError(f"free_bits must be >= 0, got {self.free_bits!r}")
        if self.ae_loss not in AE_LOSSES:
            raise ValueError(f"ae_loss must be one of {AE_LOSSES}, got {self.ae_loss!r}")
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {self.noise!r}")
        if not 0 <= float(self.noise_level):
            raise ValueError(f"noise_level must be >= 0, got {self.noise_level!r}")


def log_likelihood(model: Model, params: Params, x: jax.Array, z: jax.Array) -> jax.Array:
    """``log p(x | z)`` per example, summed over pixels."""
    out = model.decode_raw(params, z)
    if model.spec.likelihood == "bernoulli":
        return dist.bernoulli_log_prob(x, out)
    return dist.gaussian_log_prob(x, jax.nn.sigmoid(out), model.log_scale(params))


def kl_weight(objective: ObjectiveSpec, step: jax.Array | int) -> jax.Array:
    """The KL weight at ``step``: ``beta``, ramped linearly over ``warmup_steps``."""
    if objective.warmup_steps <= 0:
        return jnp.float32(objective.beta)
    ramp = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / objective.warmup_steps)
    return objective.beta * ramp


def vae_loss(
    model: Model,
    params: Params,
    x: jax.Array,
    key: jax.Array,
    *,
    objective: ObjectiveSpec = ObjectiveSpec(),
    step: jax.Array | int = 0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative ELBO with one reparameterized sample, plus beta, KL warm-up and free bits.

    ``-ELBO(x) = -E_q[log p(x|z)] + KL(q(z|x) || N(0, I))``; the returned loss is
    ``mean(recon) + w(step) * KL_objective`` where ``KL_objective`` is the batch-mean KL, or with free
    bits ``sum_d max(free_bits, mean_batch KL_d)``. ``terms["elbo"]`` is always the true ELBO.
    """
    k_bin, k_z = jax.random.split(key)
    if objective.dynamic_binarize:
        x = corruptions.dynamic_binarize(k_bin, x)
    mean, log_var = model.encode(params, x)
    z = dist.reparameterize(k_z, mean, log_var)
    recon = -log_likelihood(model, params, x, z)
    kl_dims = dist.gaussian_kl(mean, log_var)
    kl = jnp.sum(kl_dims, axis=-1)
    if objective.free_bits > 0:
        kl_objective = jnp.sum(jnp.maximum(objective.free_bits, jnp.mean(kl_dims, axis=0)))
    else:
        kl_objective = jnp.mean(kl)
    loss = jnp.mean(recon) + kl_weight(objective, step) * kl_objective
    terms = {
        "loss": loss,
        "recon": jnp.mean(recon),
        "kl": jnp.mean(kl),
        "elbo": -jnp.mean(recon + kl),
    }
    return loss, terms


def pixel_loss(kind: str, target: jax.Array, output: jax.Array) -> jax.Array:
    """Per-example L1 or squared-L2 error summed over pixels."""
    diff = output - target
    err = jnp.abs(diff) if kind == "l1" else jnp.square(diff)
    return jnp.sum(err, axis=tuple(range(1, err.ndim)))


def ae_loss(
    model: Model,
    params: Params,
    x: jax.Array,
    key: jax.Array,
    *,
    objective: ObjectiveSpec = ObjectiveSpec(),
    step: jax.Array | int = 0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Pixel loss of an autoencoder; a DAE encodes a corrupted input and reconstructs the clean one."""
    del step
    inputs = x
    if model.spec.kind == "dae":
        inputs = corruptions.add_noise(key, x, kind=objective.noise, level=objective.noise_level)
    code, _ = model.encode(params, inputs)
    recon = jnp.mean(pixel_loss(objective.ae_loss, x, model.decode(params, code)))
    return recon, {"loss": recon, "recon": recon}


def loss_fn(model: Model, objective: ObjectiveSpec):
    """The objective for ``model``'s kind as ``f(params, x, key, step) -> (loss, terms)``."""
    base = vae_loss if model.spec.stochastic else ae_loss

    def f(params, x, key, step):
        return base(model, params, x, key, objective=objective, step=step)

    return f
