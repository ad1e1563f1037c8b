"""Encoder and decoder networks (Flax Linen), applied as pure functions ``apply(params, x)``.

Convolutions hold the same parameters as ``flax.linen.Conv``/``ConvTranspose`` (an ``HWIO`` kernel and
a bias) but are computed by :mod:`jaxvae.convs`, whose default formulation has no convolution op and
is fast on CPU; ``conv_impl="lax"`` selects the straightforward ``lax`` convolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae import convs


class Conv(nn.Module):
    """3x3 (by default) 'SAME' convolution with the parameters of ``nn.Conv``."""

    features: int
    stride: int = 1
    kernel_size: int = 3
    impl: str = "fast"
    weight_init: str = "lecun_normal"
    op = staticmethod(convs.conv2d)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        kernel = self.param("kernel", INITIALIZERS[self.weight_init], shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return self.op(x, kernel, bias, stride=self.stride, impl=self.impl)


class ConvTranspose(Conv):
    """'SAME' transposed convolution with the parameters of ``nn.ConvTranspose``."""

    stride: int = 2
    op = staticmethod(convs.conv_transpose2d)


ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}
# Weight initialisations of the networks (biases start at zero): Flax's default, and the one of
# TensorFlow's layers (the same distribution for every layer shape, fans from HWIO kernels).
INITIALIZERS = {
    "lecun_normal": nn.initializers.lecun_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
}
LAYERS = ("dense", "gated")


class GatedDense(nn.Module):
    """``h = (W x + b) * sigmoid(V x + c)``: the gated dense layer of the VampPrior paper's MLPs
    (Tomczak and Welling 2018), used without a further activation."""

    features: int
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = lambda: nn.Dense(self.features, kernel_init=INITIALIZERS[self.weight_init])
        return dense()(x) * jax.nn.sigmoid(dense()(x))


class MLP(nn.Module):
    """Hidden layers (dense + ``activation``, or gated dense), then a dense layer to ``out_dim``."""

    hidden: Sequence[int]
    out_dim: int
    activation: str = "relu"
    layer: str = "dense"
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for width in self.hidden:
            if self.layer == "gated":
                h = GatedDense(width, self.weight_init)(h)
            else:
                dense = nn.Dense(width, kernel_init=INITIALIZERS[self.weight_init])
                h = ACTIVATIONS[self.activation](dense(h))
        return nn.Dense(self.out_dim, kernel_init=INITIALIZERS[self.weight_init])(h)


def _with_cond(h: jax.Array, cond: jax.Array | None) -> jax.Array:
    """``h`` with the condition ``cond`` (e.g. a one-hot label) appended, if any."""
    return h if cond is None else jnp.concatenate([h, cond], axis=-1)


class MLPEncoder(nn.Module):
    """Flatten (and append ``cond``, e.g. a one-hot label), hidden layers, then a dense layer to
    ``out_dim`` (e.g. ``2 * latent_dim``)."""

    hidden: Sequence[int]
    out_dim: int
    activation: str = "relu"
    layer: str = "dense"
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        h = _with_cond(x.reshape(x.shape[0], -1), cond)
        return MLP(self.hidden, self.out_dim, self.activation, self.layer, self.weight_init)(h)


class MLPDecoder(nn.Module):
    """Hidden layers, then a dense layer to the pixels, reshaped to ``image_shape`` (the decoder's
    output shape: channels times the likelihood's values per channel)."""

    hidden: Sequence[int]
    image_shape: tuple[int, int, int]
    activation: str = "relu"
    layer: str = "dense"
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        size = math.prod(self.image_shape)
        out = MLP(self.hidden, size, self.activation, self.layer, self.weight_init)(z)
        return out.reshape(z.shape[0], *self.image_shape)


class ConvEncoder(nn.Module):
    """Stride-2 convolutions with ReLU (3x3 unless ``kernels`` gives each layer's size), flatten,
    dense layers of ``dense`` widths with ReLU (none by default), then a dense layer to
    ``out_dim``."""

    channels: Sequence[int]
    out_dim: int
    impl: str = "fast"
    kernels: Sequence[int] = ()
    dense: Sequence[int] = ()
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        init = INITIALIZERS[self.weight_init]
        h = downsample(x, self.channels, self.impl, self.kernels, self.weight_init)
        h = _with_cond(h.reshape(h.shape[0], -1), cond)
        for width in self.dense:
            h = nn.relu(nn.Dense(width, kernel_init=init)(h))
        return nn.Dense(self.out_dim, kernel_init=init)(h)


class ConvDecoder(nn.Module):
    """Dense layers of ``dense`` widths with ReLU (none by default), a dense layer to a
    ``(H/2^L, W/2^L, channels[-1])`` map, then stride-2 transposed convolutions (3x3 unless
    ``kernels`` gives each layer's size).

    With ``channels=(32, 64)`` and 28x28x1 images: dense to 7x7x64, transposed convolutions to
    14x14x32 (ReLU) and 28x28x1 (no activation).
    """

    channels: Sequence[int]
    image_shape: tuple[int, int, int]
    impl: str = "fast"
    kernels: Sequence[int] = ()
    dense: Sequence[int] = ()
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, out_channels = self.image_shape
        factor = 2 ** len(self.channels)
        h, init = z, INITIALIZERS[self.weight_init]
        for units in self.dense:
            h = nn.relu(nn.Dense(units, kernel_init=init)(h))
        size = (height // factor) * (width // factor) * self.channels[-1]
        h = nn.Dense(size, kernel_init=init)(h)
        h = nn.relu(h).reshape(z.shape[0], height // factor, width // factor, self.channels[-1])
        return upsample(h, self.channels, out_channels, self.impl, self.kernels, self.weight_init)


def downsample(
    x: jax.Array,
    channels: Sequence[int],
    impl: str,
    kernels: Sequence[int] = (),
    weight_init: str = "lecun_normal",
) -> jax.Array:
    """Stride-2 convolutions to each of ``channels`` (3x3 unless ``kernels`` gives each layer's
    size), with ReLU (inside a compact module)."""
    for c, k in zip(channels, kernels or (3,) * len(channels), strict=True):
        x = nn.relu(Conv(c, 2, k, impl, weight_init)(x))
    return x


def upsample(
    h: jax.Array,
    channels: Sequence[int],
    out_channels: int,
    impl: str,
    kernels: Sequence[int] = (),
    weight_init: str = "lecun_normal",
) -> jax.Array:
    """Stride-2 transposed convolutions to ``channels`` reversed but the last, with ReLU, then to
    ``out_channels`` (3x3 unless ``kernels`` gives each layer's size; inside a compact module)."""
    widths = [*channels[-2::-1], out_channels]
    kernels = kernels or (3,) * len(widths)
    for c, k in zip(widths[:-1], kernels, strict=False):
        h = nn.relu(ConvTranspose(c, 2, k, impl, weight_init)(h))
    return ConvTranspose(out_channels, 2, kernels[-1], impl, weight_init)(h)
