"""Encoder and decoder networks (Flax Linen), applied as pure functions ``apply(params, x)``.

Convolutions hold the same parameters as ``flax.linen.Conv``/``ConvTranspose`` (an ``HWIO`` kernel and
a bias) but are computed by :mod:`jaxvae.convs`, whose default formulation has no convolution op and
is fast on CPU; ``conv_impl="lax"`` selects the straightforward ``lax`` convolution.
"""

from __future__ import annotations

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


def _hidden_layer(width: int, layer: str, activation: str, weight_init: str):
    if layer == "gated":
        return GatedDense(width, weight_init)
    dense = nn.Dense(width, kernel_init=INITIALIZERS[weight_init])
    return lambda h: ACTIVATIONS[activation](dense(h))


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
            h = _hidden_layer(width, self.layer, self.activation, self.weight_init)(h)
        return nn.Dense(self.out_dim, kernel_init=INITIALIZERS[self.weight_init])(h)


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
        h = x.reshape(x.shape[0], -1)
        if cond is not None:
            h = jnp.concatenate([h, cond], axis=-1)
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
        size = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
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
        h, init = x, INITIALIZERS[self.weight_init]
        kernels = self.kernels or (3,) * len(self.channels)
        for c, k in zip(self.channels, kernels, strict=True):
            h = nn.relu(Conv(c, 2, k, self.impl, self.weight_init)(h))
        h = h.reshape(h.shape[0], -1)
        if cond is not None:
            h = jnp.concatenate([h, cond], axis=-1)
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
        widths = list(self.channels[-2::-1]) + [out_channels]
        kernels = self.kernels or (3,) * len(widths)
        for i, c in enumerate(widths):
            h = ConvTranspose(c, 2, kernels[i], self.impl, self.weight_init)(h)
            if i < len(widths) - 1:
                h = nn.relu(h)
        return h
