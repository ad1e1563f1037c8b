"""Model specifications and the pure functions that build, encode and decode.

A :class:`ModelSpec` is a frozen description of an autoencoder (``kind="ae"``), a denoising autoencoder
(``"dae"``) or a VAE (``"vae"``; a beta-VAE is a VAE with ``beta != 1`` in its objective). :func:`make_model`
turns it into a :class:`Model`, whose methods are pure functions of ``params``::

    model = make_model(ModelSpec(architecture="mlp", hidden=(400,), latent_dim=20))
    params = model.init(jax.random.key(0))
    mean, log_var = model.encode(params, x)       # x: float32 [N, H, W, C] in [0, 1]
    out = model.decode(params, z)                 # logits (Bernoulli) or mean (Gaussian, AE)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxvae import convs, networks

KINDS = ("vae", "ae", "dae")
ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned")

Params = Any


def _positive_ints(name: str, values: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of positive integers, got {values!r}"
        ) from None
    if (not values and not allow_empty) or any(v <= 0 for v in values):
        raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}")
    return values


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Static description of a model.

    Attributes:
      kind: ``"vae"``, ``"ae"`` or ``"dae"``.
      architecture: ``"mlp"`` or ``"conv"``.
      image_shape: ``(H, W, C)`` of the inputs.
      latent_dim: size of the latent code.
      hidden: MLP hidden widths (encoder order; the decoder mirrors them).
      channels: conv encoder channels (the decoder mirrors them); H and W must be divisible by
        ``2 ** len(channels)``.
      likelihood: VAE decoder: ``"bernoulli"`` (logits), ``"gaussian"`` (fixed ``gaussian_std``) or
        ``"gaussian_learned"`` (a learned per-pixel scale initialised at ``gaussian_std``).
      gaussian_std: the Gaussian decoder's standard deviation (or its initial value).
      conv_impl: convolution formulation, one of ``jaxvae.convs.IMPLS``.
    """

    kind: str = "vae"
    architecture: str = "conv"
    image_shape: tuple[int, int, int] = (28, 28, 1)
    latent_dim: int = 16
    hidden: tuple[int, ...] = (400,)
    channels: tuple[int, ...] = (32, 64)
    likelihood: str = "bernoulli"
    gaussian_std: float = 0.1
    conv_impl: str = "fast"

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"model architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.conv_impl not in convs.IMPLS:
            raise ValueError(f"conv_impl must be one of {convs.IMPLS}, got {self.conv_impl!r}")
        set_("image_shape", _positive_ints("image_shape", self.image_shape))
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape!r}")
        set_("hidden", _positive_ints("hidden", self.hidden, allow_empty=True))
        set_("channels", _positive_ints("channels", self.channels))
        if int(self.latent_dim) <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {self.latent_dim!r}")
        set_("latent_dim", int(self.latent_dim))
        if not float(self.gaussian_std) > 0:
            raise ValueError(f"gaussian_std must be > 0, got {self.gaussian_std!r}")
        if self.architecture == "conv":
            factor = 2 ** len(self.channels)
            h, w, _ = self.image_shape
            if h % factor or w % factor:
                raise ValueError(
                    f"image shape {self.image_shape} does not fit a conv model with "
                    f"{len(self.channels)} stride-2 layers: H and W must be divisible by {factor}"
                )

    @property
    def stochastic(self) -> bool:
        """Whether the encoder outputs a distribution (VAE) rather than a code (AE, DAE)."""
        return self.kind == "vae"


@dataclasses.dataclass(frozen=True)
class Model:
    """Bound pure functions of a :class:`ModelSpec`. Build it with :func:`make_model`."""

    spec: ModelSpec
    encoder: Any
    decoder: Any
    scale: Any

    def init(self, key: jax.Array) -> Params:
        """Initial parameters ``{"encoder": ..., "decoder": ...[, "scale": ...]}``."""
        k_enc, k_dec = jax.random.split(key)
        x = jnp.zeros((1, *self.spec.image_shape), jnp.float32)
        z = jnp.zeros((1, self.spec.latent_dim), jnp.float32)
        params = {
            "encoder": self.encoder.init(k_enc, x)["params"],
            "decoder": self.decoder.init(k_dec, z)["params"],
        }
        if self.scale is not None:
            params["scale"] = self.scale.init(k_dec)["params"]
        return params

    def check_images(self, x: jax.Array) -> None:
        """Raises ``ValueError`` unless ``x`` is ``[N, *image_shape]``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.spec.image_shape:
            raise ValueError(
                f"images of shape {tuple(x.shape)} do not fit the model: expected "
                f"[N, {', '.join(map(str, self.spec.image_shape))}]"
            )

    def encode(self, params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Returns ``(mean, log_var)`` for a VAE, ``(code, None)`` for an AE/DAE."""
        self.check_images(x)
        h = self.encoder.apply({"params": params["encoder"]}, x)
        if self.spec.stochastic:
            mean, log_var = jnp.split(h, 2, axis=-1)
            return mean, log_var
        return h, None

    def decode_raw(self, params: Params, z: jax.Array) -> jax.Array:
        """The decoder's last layer output, before any output nonlinearity."""
        if z.ndim != 2 or z.shape[-1] != self.spec.latent_dim:
            raise ValueError(
                f"latents of shape {tuple(z.shape)} do not fit the model: expected "
                f"[N, {self.spec.latent_dim}]"
            )
        return self.decoder.apply({"params": params["decoder"]}, z)

    def decode(self, params: Params, z: jax.Array) -> jax.Array:
        """Logits for a Bernoulli decoder; the mean (in [0, 1]) for Gaussian decoders and AEs."""
        out = self.decode_raw(params, z)
        if self.spec.stochastic and self.spec.likelihood == "bernoulli":
            return out
        return jax.nn.sigmoid(out)

    def mean_image(self, params: Params, z: jax.Array) -> jax.Array:
        """The decoder's expected image in [0, 1] (``sigmoid(logits)`` for Bernoulli)."""
        out = self.decode_raw(params, z)
        return jax.nn.sigmoid(out)

    def log_scale(self, params: Params) -> jax.Array:
        """Log standard deviation of a Gaussian decoder (learned or fixed)."""
        if self.scale is not None:
            return self.scale.apply({"params": params["scale"]})
        return jnp.full(self.spec.image_shape, math.log(self.spec.gaussian_std), jnp.float32)


def make_model(spec: ModelSpec) -> Model:
    """Builds the encoder/decoder pair that ``spec`` describes."""
    out_dim = 2 * spec.latent_dim if spec.stochastic else spec.latent_dim
    if spec.architecture == "mlp":
        encoder = networks.MLPEncoder(hidden=spec.hidden, out_dim=out_dim)
        decoder = networks.MLPDecoder(hidden=spec.hidden[::-1], image_shape=spec.image_shape)
    else:
        encoder = networks.ConvEncoder(spec.channels, out_dim, impl=spec.conv_impl)
        decoder = networks.ConvDecoder(spec.channels, spec.image_shape, impl=spec.conv_impl)
    scale = None
    if spec.stochastic and spec.likelihood == "gaussian_learned":
        scale = networks.LearnedScale(spec.image_shape, math.log(spec.gaussian_std))
    return Model(spec, encoder, decoder, scale)


def num_params(params: Params) -> int:
    """Total number of parameters."""
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
