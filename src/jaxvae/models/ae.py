"""Autoencoders: a deterministic code and a pixelwise L1 or squared-L2 loss; the denoising
autoencoder (Vincent et al. 2008) encodes a corrupted input and reconstructs the clean one.

They have no likelihood (no ELBO or NLL) and no prior: ``samples.png`` decodes codes drawn from a
Gaussian fitted to the codes of real test images, which shows what the code space holds.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxvae import corruptions, likelihoods
from jaxvae.models import register
from jaxvae.models.base import Model, Presentation, check_choice

AE_LOSSES = ("l2", "l1")


def pixel_loss(kind: str, target: jax.Array, output: jax.Array) -> jax.Array:
    """Per-example L1 or squared-L2 error summed over pixels."""
    diff = output - target
    err = jnp.abs(diff) if kind == "l1" else jnp.square(diff)
    return jnp.sum(err.reshape(err.shape[0], -1), axis=-1)


@register("ae")
@dataclasses.dataclass(frozen=True)
class AE(Model):
    """Autoencoder.

    Attributes:
      ae_loss: ``"l2"`` (squared error) or ``"l1"``, summed over pixels (``objective.ae_loss``).
    """

    ae_loss: str = "l2"

    presentation: ClassVar[Presentation] = Presentation(headline=("recon_l2", "mse_per_pixel"))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("ae_loss", self.ae_loss, AE_LOSSES)

    def decoder_net(self):
        return super().decoder_net(self.image_shape)  # one value per pixel: the mean

    def init(self, key):
        k_enc, k_dec = jax.random.split(key)
        x = jnp.zeros((1, *self.image_shape), jnp.float32)
        z = jnp.zeros((1, self.latent_dim), jnp.float32)
        params = {
            "encoder": self.encoder_net(self.latent_dim).init(k_enc, x)["params"],
            "decoder": self.decoder_net().init(k_dec, z)["params"],
        }
        return params, {}

    def encode(self, params, state, batch):
        del state
        x = batch["image"]
        self.check_images(x)
        return self.encoder_net(self.latent_dim).apply({"params": params["encoder"]}, x)

    def decode(self, params, state, z, labels=None):
        del state, labels
        self.check_latents(z)
        raw = self.decoder_net().apply({"params": params["decoder"]}, z)
        return likelihoods.Gaussian(jax.nn.sigmoid(raw), jnp.float32(0.0))

    def corrupt(self, key, x):
        """The encoder's input during training (clean for a plain AE)."""
        del key
        return x

    def loss(self, params, state, batch, key, *, step=0):
        x = batch["image"]
        code = self.encode(params, state, {"image": self.corrupt(key, x)})
        out = self.decode(params, state, code).mean()
        recon = jnp.mean(pixel_loss(self.ae_loss, x, out))
        return recon, {"loss": recon, "recon": recon}, state

    def eval_terms(self, params, state, batch, key):
        """Errors on clean inputs: summed L2 and L1 per image, the MSE per pixel, and the code
        (whose variance gives active units)."""
        del key
        x = batch["image"]
        code = self.encode(params, state, batch)
        out = self.decode(params, state, code).mean()
        l2, l1 = (pixel_loss(kind, x, out) for kind in ("l2", "l1"))
        terms = {"recon_l2": l2, "recon_l1": l1, "mse_per_pixel": l2 / x[0].size}
        return terms | {"recon": terms[f"recon_{self.ae_loss}"], "posterior_mean": code}

    def samples(self, params, state, key, num, batch):
        """Codes from a Gaussian fitted to the codes of ``batch``'s images, decoded."""
        codes = self.encode(params, state, batch).astype(jnp.float32)
        mu = jnp.mean(codes, axis=0)
        cov = jnp.cov(codes, rowvar=False).reshape(self.latent_dim, self.latent_dim)
        chol = jnp.linalg.cholesky(cov + 1e-6 * jnp.eye(self.latent_dim))
        z = mu + jax.random.normal(key, (num, self.latent_dim)) @ chol.T
        return self.decode(params, state, z).mean()


@register("dae")
@dataclasses.dataclass(frozen=True)
class DAE(AE):
    """Denoising autoencoder.

    Attributes:
      noise: the input corruption, one of ``jaxvae.corruptions.NOISE_KINDS``.
      noise_level: its strength (std for Gaussian, probability for masking and salt-and-pepper).
    """

    noise: str = "gaussian"
    noise_level: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("noise", self.noise, corruptions.NOISE_KINDS)
        corruptions.check_noise_level(self.noise, self.noise_level)

    def corrupt(self, key, x):
        return corruptions.add_noise(key, x, kind=self.noise, level=self.noise_level)
