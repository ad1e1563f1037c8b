"""Decoder distributions ``p(x | z)``: what a decoder's raw output means.

A decoder emits ``likelihood.output_shape`` values per image; the likelihood turns them (and any
parameters of its own, such as a learned scale) into a distribution object with ``log_prob(x)``
(summed over the image, one value per example), ``mean()`` (the expected image in [0, 1]) and
``sample(key)``. Likelihoods register themselves by name, so a new one is a class here (or in any
module imported before use), never a branch in the models::

    lik = likelihoods.make("logistic_mixture", image_shape=(28, 28, 1))
    dist = lik.distribution(decoder_output, lik_params)
    nll = -dist.log_prob(x)
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from jaxvae import distributions as dist

_REGISTRY: dict[str, type[Likelihood]] = {}


def register(name: str):
    """Class decorator: makes a :class:`Likelihood` subclass available as ``name``."""

    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def make(
    name: str,
    *,
    image_shape: tuple[int, int, int],
    gaussian_std: float = 0.1,
    num_mixtures: int = 5,
) -> Likelihood:
    """The registered likelihood ``name`` for images of ``image_shape``."""
    if name not in _REGISTRY:
        raise ValueError(f"likelihood must be one of {names()}, got {name!r}")
    if not float(gaussian_std) > 0:
        raise ValueError(f"gaussian_std must be > 0, got {gaussian_std!r}")
    if int(num_mixtures) < 1:
        raise ValueError(f"num_mixtures must be a positive integer, got {num_mixtures!r}")
    return _REGISTRY[name](tuple(image_shape), float(gaussian_std), int(num_mixtures))


class Bernoulli(NamedTuple):
    """Independent Bernoulli pixels with ``logits`` ``[N, H, W, C]``."""

    logits: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        return dist.bernoulli_log_prob(x, self.logits)

    def mean(self) -> jax.Array:
        return jax.nn.sigmoid(self.logits)

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.bernoulli(key, jax.nn.sigmoid(self.logits)).astype(jnp.float32)


class Gaussian(NamedTuple):
    """Independent Gaussian pixels: ``loc`` ``[N, H, W, C]``, ``log_scale`` broadcasting to it."""

    loc: jax.Array
    log_scale: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        return dist.gaussian_log_prob(x, self.loc, self.log_scale)

    def mean(self) -> jax.Array:
        return self.loc

    def sample(self, key: jax.Array) -> jax.Array:
        eps = jax.random.normal(key, self.loc.shape, self.loc.dtype)
        return self.loc + jnp.exp(self.log_scale) * eps


class DiscretizedLogisticMixture(NamedTuple):
    """A mixture of ``K`` discretized logistics per pixel and channel over 256 levels (Salimans et
    al. 2017, PixelCNN++), for 8-bit images given as ``x = v / 255`` with ``v`` in 0..255.

    Each channel has its own mixture (no coupling between colour channels). Parameters are on the
    ``[-1, 1]`` scale of ``2x - 1``, each ``[N, H, W, C, K]``. The two end bins take the tails:
    ``P(v=0) = sigmoid((-1 + 1/255 - loc)/s)`` and ``P(v=255) = 1 - sigmoid((1 - 1/255 - loc)/s)``.
    """

    logit_probs: jax.Array
    loc: jax.Array
    log_scale: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        y = (2.0 * jnp.asarray(x) - 1.0)[..., None]
        centered = y - self.loc
        inv_s = jnp.exp(-self.log_scale)
        plus_in = inv_s * (centered + 1.0 / 255.0)
        min_in = inv_s * (centered - 1.0 / 255.0)
        log_cdf_plus = plus_in - dist.softplus(plus_in)  # log sigmoid(plus_in), for v = 0
        log_one_minus_cdf_min = -dist.softplus(min_in)  # log(1 - sigmoid(min_in)), for v = 255
        cdf_delta = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(min_in)
        mid_in = inv_s * centered
        # Where the bin mass underflows in float32, the density at the centre times the bin width.
        log_pdf_mid = mid_in - self.log_scale - 2.0 * dist.softplus(mid_in) + math.log(2.0 / 255)
        log_mid = jnp.where(cdf_delta > 1e-5, jnp.log(jnp.maximum(cdf_delta, 1e-12)), log_pdf_mid)
        log_top = jnp.where(y > 0.999, log_one_minus_cdf_min, log_mid)
        log_bin = jnp.where(y < -0.999, log_cdf_plus, log_top)
        log_mix = jax.nn.log_softmax(self.logit_probs, axis=-1)
        per_pixel = jax.nn.logsumexp(log_bin + log_mix, axis=-1)
        return jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=-1)

    def mean(self) -> jax.Array:
        probs = jax.nn.softmax(self.logit_probs, axis=-1)
        return jnp.clip((jnp.sum(probs * self.loc, axis=-1) + 1.0) / 2.0, 0.0, 1.0)

    def sample(self, key: jax.Array) -> jax.Array:
        k_mix, k_logistic = jax.random.split(key)
        comp = jax.random.categorical(k_mix, self.logit_probs, axis=-1)
        pick = lambda a: jnp.take_along_axis(a, comp[..., None], axis=-1)[..., 0]
        u = jax.random.uniform(k_logistic, comp.shape, minval=1e-5, maxval=1.0 - 1e-5)
        y = pick(self.loc) + jnp.exp(pick(self.log_scale)) * (jnp.log(u) - jnp.log1p(-u))
        v = jnp.clip(jnp.round((y + 1.0) / 2.0 * 255.0), 0.0, 255.0)
        return v / 255.0


@dataclasses.dataclass(frozen=True)
class Likelihood(abc.ABC):
    """How a decoder's raw output ``[N, *output_shape]`` becomes ``p(x | z)``.

    Attributes:
      image_shape: ``(H, W, C)``.
      gaussian_std: the Gaussian likelihoods' (initial) standard deviation.
      num_mixtures: components of the logistic mixture.
    """

    image_shape: tuple[int, int, int]
    gaussian_std: float = 0.1
    num_mixtures: int = 5
    name: ClassVar[str] = ""
    # Whether -log p(x) in nats converts to bits per dimension (a density over 256 levels).
    discrete_8bit: ClassVar[bool] = False

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """The decoder's output shape for one image (one value per pixel and channel)."""
        return self.image_shape

    def init(self, key: jax.Array) -> dict[str, Any]:
        """Parameters the likelihood owns (``{}`` for most)."""
        del key
        return {}

    @abc.abstractmethod
    def distribution(self, raw: jax.Array, params: dict[str, Any]):
        """The distribution object of a decoder output ``raw`` (``[N, *output_shape]``)."""


@register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli pixels (binary or [0, 1] targets); the decoder emits logits."""

    def distribution(self, raw, params):
        return Bernoulli(raw)


@register("gaussian")
class GaussianLikelihood(Likelihood):
    """Gaussian pixels with mean ``sigmoid(raw)`` and a fixed standard deviation."""

    def distribution(self, raw, params):
        return Gaussian(jax.nn.sigmoid(raw), jnp.float32(math.log(self.gaussian_std)))


@register("gaussian_learned")
class LearnedGaussianLikelihood(Likelihood):
    """Gaussian pixels with mean ``sigmoid(raw)`` and a learned per-pixel log standard deviation,
    initialised at ``log(gaussian_std)``."""

    def init(self, key):
        del key
        return {"log_scale": jnp.full(self.image_shape, math.log(self.gaussian_std), jnp.float32)}

    def distribution(self, raw, params):
        return Gaussian(jax.nn.sigmoid(raw), params["log_scale"])


@register("logistic_mixture")
class LogisticMixtureLikelihood(Likelihood):
    """A discretized logistic mixture over 256 levels per channel (:class:`DiscretizedLogisticMixture`);
    the decoder emits ``3 * num_mixtures`` values per channel: mixture logits, locations, log scales."""

    discrete_8bit: ClassVar[bool] = True

    @property
    def output_shape(self) -> tuple[int, int, int]:
        h, w, c = self.image_shape
        return h, w, c * 3 * self.num_mixtures

    def distribution(self, raw, params):
        n, h, w, _ = raw.shape
        c, k = self.image_shape[-1], self.num_mixtures
        parts = raw.reshape(n, h, w, c, 3, k)
        logits, loc, log_scale = parts[..., 0, :], parts[..., 1, :], parts[..., 2, :]
        return DiscretizedLogisticMixture(logits, jnp.tanh(loc), jnp.maximum(log_scale, -7.0))


def bits_per_dim(nats_per_image: float, image_shape: tuple[int, ...]) -> float:
    """``nats / (H * W * C * ln 2)``: the per-dimension code length of a discrete density."""
    return float(nats_per_image) / (math.prod(image_shape) * math.log(2.0))
