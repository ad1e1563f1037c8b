"""The interface every model family implements (:class:`Model`: five required methods, the rest
derived; optional capabilities are the protocols of :mod:`jaxvae.models.capabilities`) and the
backbone networks the families share.

A model is a frozen (hashable) dataclass of static hyperparameters whose methods are pure
functions of ``params`` (trained by gradients) and ``state`` (model state that gradients do not
train, e.g. an EMA codebook; ``{}`` for most families). A batch is a dict
``{"image": float32 [N, H, W, C] in [0, 1], "label": int32 [N]}`` with whatever else the data has
(``"factors"``), passed to the model as it is. No code outside a family's module tests which
family it is.
"""

from __future__ import annotations

import abc
import dataclasses
import numbers
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jaxvae import convs, likelihoods, networks
from jaxvae.models import capabilities

Params = Any
ARCHITECTURES = ("mlp", "conv")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data: image shape, classes, training-set size."""

    image_shape: tuple[int, int, int]
    num_classes: int = 10
    num_train: int = 60_000

    def to_dict(self, dataset_name: str) -> dict[str, Any]:
        """``run.json``'s record of the data (see :meth:`from_dict`)."""
        facts = {"num_classes": self.num_classes, "num_train": self.num_train}
        return {"image_shape": list(self.image_shape), **facts, "dataset": dataset_name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataInfo:
        facts = {k: int(d[k]) for k in ("num_classes", "num_train") if k in d}
        return cls(tuple(d["image_shape"]), **facts)


def _positive_ints(name: str, values: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in values)
        ok = (values or allow_empty) and all(v > 0 for v in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}")
    return values


def set_numbers(model: Model, expected: str, ok, *names: str, cast=float) -> None:
    """Sets each option ``names`` of ``model`` to ``cast(value)``; raises ``ValueError`` (naming
    it and ``expected``) unless it is a number, not a bool, with ``ok(value)`` and ``cast(value) ==
    value``."""
    for name in names:
        value = getattr(model, name)
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and ok(value) and cast(value) == value):
            raise ValueError(f"{model.name} {name} must be {expected}, got {value!r}")
        object.__setattr__(model, name, cast(value))


def _check_shape(what: str, x: Any, event: tuple[int, ...]) -> None:
    shape = tuple(jnp.shape(x))
    if shape[1:] != event:  # equal for [N, *event] only
        expected = ", ".join(map(str, ("N", *event)))
        raise ValueError(f"{what} of shape {shape} do not fit the model: expected [{expected}]")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Presentation:
    """How a family's results are shown.

    Attributes:
      headline: test figures shown in logs, first = the headline (keys of ``eval_terms``; the
        first is also early stopping's validation figure).
      traversal_range: ``traversals.png`` sweeps each latent coordinate over ``[-r, r]`` (a
        family with a prior) or over its codes' mean +- r standard deviations (without one);
        ``None``: no traversals.
    """

    headline: tuple[str, ...] = ("nelbo", "recon", "kl")
    traversal_range: float | None = 3.0


@dataclasses.dataclass(frozen=True)
class Model(abc.ABC):
    """Static hyperparameters shared by every family; families add their own fields.

    Attributes:
      image_shape: ``(H, W, C)`` of the inputs.
      latent_dim: size of the latent code.
      architecture: ``"mlp"`` or ``"conv"`` backbone.
      hidden: MLP hidden widths (encoder order; decoders mirror them).
      channels: conv encoder channels (decoders mirror them); H and W must divide by
        ``2 ** len(channels)``.
      kernels: the conv encoder's kernel size per layer (empty: 3x3 throughout).
      decoder_kernels: the conv decoder's kernel size per transposed convolution (empty: 3x3).
      conv_hidden: dense widths between the conv encoder's map and its output layer (ReLU);
        the decoder mirrors them before its dense layer to the map (empty: none).
      weight_init: the weight initialisation of the backbone networks (and of FactorVAE's
        discriminator), one of ``jaxvae.networks.INITIALIZERS`` (biases start at zero).
      activation: MLP hidden activation, ``"relu"`` or ``"tanh"``.
      layer: MLP hidden layer, ``"dense"`` or ``"gated"`` (gated dense, no activation).
      conv_impl: convolution formulation, one of ``jaxvae.convs.IMPLS`` (``auto`` resolved).
      likelihood: the decoder distribution (:mod:`jaxvae.likelihoods`).
      num_classes: classes of the labels (conditional families use them).
      num_train: training-set size (estimators that need it, e.g. beta-TCVAE's).
      log_var_range: ``(lo, hi)``: every Gaussian head's log-variance clipped to ``[lo, hi]``
        (:meth:`gaussian`; families with such heads only); empty: unbounded.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    latent_dim: int = 16
    architecture: str = "conv"
    hidden: tuple[int, ...] = (400,)
    channels: tuple[int, ...] = (32, 64)
    kernels: tuple[int, ...] = ()
    decoder_kernels: tuple[int, ...] = ()
    conv_hidden: tuple[int, ...] = ()
    weight_init: str = "lecun_normal"
    activation: str = "relu"
    layer: str = "dense"
    conv_impl: str = "fast"
    likelihood: likelihoods.Likelihood | None = None
    num_classes: int = 10
    num_train: int = 60_000
    log_var_range: tuple[float, ...] = ()

    name: ClassVar[str] = ""
    presentation: ClassVar[Presentation] = Presentation()
    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES  # the backbones the family supports
    gaussian_heads: ClassVar[bool] = False  # whether the family has Gaussian heads (log_var_range)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)
        check_choice(f"{self.name} architecture", self.architecture, self.architectures)
        check_choice("conv_impl", self.conv_impl, convs.IMPLS)
        check_choice("weight_init", self.weight_init, tuple(networks.INITIALIZERS))
        check_choice("model activation", self.activation, tuple(networks.ACTIVATIONS))
        check_choice("model layer", self.layer, networks.LAYERS)
        set_("image_shape", _positive_ints("image_shape", self.image_shape))
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape!r}")
        set_("hidden", _positive_ints("hidden", self.hidden, allow_empty=True))
        set_("channels", _positive_ints("channels", self.channels))
        set_("conv_hidden", _positive_ints("conv_hidden", self.conv_hidden, allow_empty=True))
        for name in ("kernels", "decoder_kernels"):
            sizes = _positive_ints(name, getattr(self, name), allow_empty=True)
            if sizes and len(sizes) != len(self.channels):
                raise ValueError(
                    f"{name} {sizes} must give one kernel size per conv layer "
                    f"({len(self.channels)}, as channels {self.channels}) or be empty"
                )
            set_(name, sizes)
        set_numbers(self, "a positive integer", lambda v: v > 0, "latent_dim", cast=int)
        set_("log_var_range", self._log_var_range())
        if self.likelihood is None:
            set_("likelihood", likelihoods.make("bernoulli", image_shape=self.image_shape))
        if tuple(self.likelihood.image_shape) != self.image_shape:
            raise ValueError(
                f"likelihood for images {self.likelihood.image_shape} does not fit the model's "
                f"{self.image_shape}"
            )
        if self.architecture == "conv":
            factor = 2 ** len(self.channels)
            h, w, _ = self.image_shape
            if h % factor or w % factor:
                raise ValueError(
                    f"image shape {self.image_shape} does not fit a conv model with "
                    f"{len(self.channels)} stride-2 layers: H and W must be divisible by {factor}"
                )

    def _log_var_range(self) -> tuple[float, ...]:
        """``log_var_range`` checked: empty, or ``(lo, hi)`` with ``lo < hi``, for a family with
        Gaussian heads."""
        try:
            bounds = tuple(float(v) for v in self.log_var_range)
        except (TypeError, ValueError):
            bounds = None
        if bounds is None or (bounds and (len(bounds) != 2 or not bounds[0] < bounds[1])):
            raise ValueError(
                f"log_var_range must be empty or (lo, hi) with lo < hi, got {self.log_var_range!r}"
            )
        if bounds and not self.gaussian_heads:
            raise ValueError(
                f"log_var_range={bounds!r}: the {self.name} family has no Gaussian log-variance "
                "heads to clip; leave model.log_var_range empty"
            )
        return bounds

    # ---- shared backbones -----------------------------------------------------------------

    def gaussian(self, net, params, *inputs) -> tuple[jax.Array, jax.Array]:
        """``(mean, log_var)`` of a diagonal Gaussian: the two halves of ``net``'s output, the
        log-variance clipped to ``log_var_range`` where one is set (a hardtanh, whose gradient is
        zero outside the range, as the VampPrior's and the Exemplar VAE's reference code bound
        every Gaussian head's log-variance to [-6, 2])."""
        mean, log_var = jnp.split(net.apply({"params": params}, *inputs), 2, axis=-1)
        if self.log_var_range:
            log_var = jnp.clip(log_var, *self.log_var_range)
        return mean, log_var

    def encoder_net(self, out_dim: int):
        """The backbone encoder ``(x, cond) -> [N, out_dim]``."""
        if self.architecture == "mlp":
            mlp = (self.hidden, out_dim, self.activation, self.layer, self.weight_init)
            return networks.MLPEncoder(*mlp)
        return networks.ConvEncoder(
            self.channels, out_dim, self.conv_impl, self.kernels, self.conv_hidden, self.weight_init
        )

    def decoder_net(self, out: tuple[int, int, int] | None = None):
        """The backbone decoder ``z -> [N, *out]`` (default: ``likelihood.output_shape``)."""
        out = out or self.likelihood.output_shape
        if self.architecture == "mlp":
            mlp = (self.hidden[::-1], out, self.activation, self.layer, self.weight_init)
            return networks.MLPDecoder(*mlp)
        hidden = self.conv_hidden[::-1]
        return networks.ConvDecoder(
            self.channels, out, self.conv_impl, self.decoder_kernels, hidden, self.weight_init
        )

    def with_likelihood(self, params: dict, key: jax.Array) -> dict:
        """``params`` and the likelihood's own parameters (``"likelihood"``), if it has any."""
        lik = self.likelihood.init(key)
        return params | {"likelihood": lik} if lik else params

    def check_images(self, x: Any) -> None:
        """Raises ``ValueError`` unless ``x`` is ``[N, *image_shape]``."""
        _check_shape("images", x, self.image_shape)

    def check_latents(self, z: Any) -> None:
        _check_shape("latents", z, (self.latent_dim,))

    # ---- the interface --------------------------------------------------------------------

    @abc.abstractmethod
    def init(self, key: jax.Array) -> tuple[Params, Any]:
        """Initial ``(params, state)``."""

    @abc.abstractmethod
    def loss(self, params, state, batch, key, *, step=0) -> tuple[jax.Array, dict, Any]:
        """The training objective of one batch: ``(loss, terms, new_state)``, ``terms`` scalar batch
        means logged as they are (``kl_weight`` too: :class:`~.capabilities.KLWeighted`)."""

    @abc.abstractmethod
    def eval_terms(self, params, state, batch, key) -> dict[str, jax.Array]:
        """Per-example test figures ``{name: [N] or [N, D]}``: ``[N]`` arrays are averaged,
        ``posterior_mean`` ``[N, D]`` gives active units and ``kl_dims`` the KL per dimension."""

    @abc.abstractmethod
    def encode(self, params, state, batch) -> jax.Array:
        """A point in latent space per image (a posterior mean, a code): ``[N, latent_dim]``."""

    @abc.abstractmethod
    def decode(self, params, state, z, labels=None):
        """The decoder's distribution ``p(x | z)`` (an object with log_prob, mean, sample)."""

    def reconstruct(self, params, state, batch) -> jax.Array:
        """The decoder's mean image at the encoding of each input."""
        z = self.encode(params, state, batch)
        return self.decode(params, state, z, batch.get("label")).mean()

    def samples(self, params, state, key, num: int, batch) -> jax.Array | None:
        """Images for samples.png (shown 8 to a row), or ``None`` for a family without a prior.
        ``batch`` holds real test images (an AE fits its sampling distribution to their codes)."""
        del batch
        if not capabilities.has(self, capabilities.Prior):
            return None
        labels = jnp.zeros((num,), jnp.int32)
        z = self.sample_latents(params, state, key, num, labels)
        return self.decode(params, state, z, labels).mean()

    def extra_pictures(self, params, state, batch, key) -> dict[str, tuple[jax.Array, int]]:
        """Family-specific pictures: ``{file name: (images, columns)}``."""
        del params, state, batch, key
        return {}


def num_params(params: Params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
