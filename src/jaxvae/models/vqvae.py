"""The VQ-VAE (van den Oord et al. 2017) with the EMA codebook of its appendix.

A conv encoder maps a ``28 x 28`` image to a grid of ``7 x 7`` vectors ``z_e`` of ``code_dim``
values (``model.channels`` stride-2 3x3 convolutions with ReLU, then a 1x1 projection); each
vector is replaced by its nearest entry of a codebook ``{e_k}`` of ``codebook_size`` entries,

    k(i) = argmin_k ||z_e,i - e_k||^2,    z_q,i = e_k(i),

and the decoder (a 3x3 convolution with ReLU, then stride-2 transposed convolutions mirroring the
encoder) gives ``p(x | z_q)`` with the configured likelihood (Bernoulli by default). Quantization
has no gradient; the straight-through estimator passes the decoder's gradient w.r.t. ``z_q`` to
``z_e`` unchanged (``z_e + stop_gradient(z_q - z_e)``). The loss per image is

    -log p(x | z_q) + commitment_cost * sum_i ||z_e,i - stop_gradient(z_q,i)||^2

(both summed over the image, so the commitment term is on the scale of the per-image
reconstruction in nats; Sonnet's version averages both over elements instead).

The codebook is not trained by gradients: it is the exponential moving average of the encoder
outputs assigned to each code (the paper's appendix A.1; Sonnet's ``VectorQuantizerEMA``). With
``n_k`` the batch's count of assignments to code ``k`` and ``s_k`` the sum of those ``z_e``:

    N_k <- decay * N_k + (1 - decay) * n_k
    m_k <- decay * m_k + (1 - decay) * s_k
    e_k  = m_k / ((N_k + eps) / (sum_j N_j + K eps) * sum_j N_j)     (Laplace-smoothed N_k)

``N`` (``cluster_size``), ``m`` (``embed_sum``) and ``e`` (``codebook``) are the model state
(``TrainState.model_state``, checkpointed with the parameters); :meth:`VQVAE.loss` returns their
update, which the engine keeps only when the gradient step is taken. The EMA starts as if each code
had once been assigned its own initial value (``N_k = 1``, ``m_k = e_k``), so a code that the
encoder never picks keeps its initial value instead of jumping or collapsing to zero.

There is no learned prior over the codes (the paper fits a PixelCNN over them afterwards), so
the family has no ``sample_latents`` (no ``samples.png``; ``jaxvae sample`` refuses), and no
density of ``x`` (no ``log_weights``: no ELBO, no IWAE objective or NLL). The latent point of an image
(:meth:`VQVAE.encode`) is its quantized grid flattened: ``latent_dim = h * w * code_dim``
(``model.latent_dim`` of the config is not used). :meth:`VQVAE.decode` snaps each cell of the
point it is given to its nearest code first, so a linear interpolation between two encodings is
decoded as a path of valid code grids (cells switch codes along the way), the only inputs the
decoder was trained on. Test figures: the reconstruction term, the commitment term, the MSE per
pixel of the mean image, and the codebook's usage (perplexity and fraction of codes used).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae import networks
from jaxvae.models import register
from jaxvae.models.base import Model, Presentation, set_numbers


class VQEncoder(nn.Module):
    """Stride-2 3x3 convolutions with ReLU, then a 1x1 projection to ``code_dim`` per cell."""

    channels: Sequence[int]
    code_dim: int
    impl: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = networks.downsample(x, self.channels, self.impl)
        return networks.Conv(self.code_dim, stride=1, kernel_size=1, impl=self.impl)(h)


class VQDecoder(nn.Module):
    """A 3x3 convolution to ``channels[-1]`` with ReLU, then stride-2 transposed convolutions
    (``channels`` reversed, then the output channels; ReLU between them)."""

    channels: Sequence[int]
    out_channels: int
    impl: str = "fast"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = nn.relu(networks.Conv(self.channels[-1], stride=1, impl=self.impl)(z))
        return networks.upsample(h, self.channels, self.out_channels, self.impl)


# ---- vector quantization: free functions over [M, D] vectors and a [K, D] codebook ---------


def nearest_code(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """``argmin_k ||z_m - e_k||^2`` for each row of ``z`` ``[M, D]``: int32 ``[M]``.

    Computed as ``argmin_k (||e_k||^2 - 2 z_m . e_k)`` (``||z_m||^2`` does not change the argmin),
    one matmul."""
    scores = jnp.sum(jnp.square(codebook), axis=-1)[None, :] - 2.0 * (z @ codebook.T)
    return jnp.argmin(scores, axis=-1).astype(jnp.int32)


def straight_through(z_e: jax.Array, z_q: jax.Array) -> jax.Array:
    """``z_q`` in value, with the identity gradient to ``z_e``: ``z_e + stop_gradient(z_q - z_e)``."""
    return z_e + jax.lax.stop_gradient(z_q - z_e)


def code_counts(codes: jax.Array, num_codes: int) -> jax.Array:
    """How often each code is assigned: float32 ``[K]`` (a one-hot sum: deterministic on every
    backend, unlike a scatter-add)."""
    return jnp.sum(jax.nn.one_hot(codes, num_codes, dtype=jnp.float32), axis=0)


def perplexity(counts: jax.Array) -> jax.Array:
    """``exp(-sum_k p_k log p_k)`` with ``p = counts / sum(counts)`` (``0 log 0 = 0``): the number
    of equally used codes with the same entropy (``K`` at uniform use, 1 when one code takes all)."""
    p = counts / jnp.sum(counts)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.exp(entropy)


def ema_update(
    state: dict[str, jax.Array], z: jax.Array, codes: jax.Array, *, decay: float, epsilon: float
) -> dict[str, jax.Array]:
    """The EMA codebook update of one batch (see the module docstring).

    Args:
      state: ``{"cluster_size": [K], "embed_sum": [K, D], "codebook": [K, D]}``.
      z: the encoder outputs ``[M, D]`` (no gradient flows into the state).
      codes: their assigned codes ``[M]``.
      epsilon: the Laplace smoothing of the cluster sizes.
    """
    z = jax.lax.stop_gradient(z)
    num_codes = state["cluster_size"].shape[0]
    one_hot = jax.nn.one_hot(codes, num_codes, dtype=z.dtype)  # [M, K]
    cluster_size = decay * state["cluster_size"] + (1.0 - decay) * jnp.sum(one_hot, axis=0)
    embed_sum = decay * state["embed_sum"] + (1.0 - decay) * (one_hot.T @ z)
    n = jnp.sum(cluster_size)
    smoothed = (cluster_size + epsilon) / (n + num_codes * epsilon) * n
    return {
        "cluster_size": cluster_size,
        "embed_sum": embed_sum,
        "codebook": embed_sum / smoothed[:, None],
    }


@register("vqvae")
@dataclasses.dataclass(frozen=True)
class VQVAE(Model):
    """VQ-VAE with an EMA codebook; conv only, no prior and no likelihood bound.

    Attributes:
      codebook_size: ``K``, the number of codes (``model.vqvae.codebook_size``).
      code_dim: ``D``, the size of each code vector and of each cell of the encoder's grid.
      commitment_cost: the weight of the commitment loss (the paper's beta, 0.25).
      ema_decay: the decay of the codebook's moving averages (0.99).
      ema_epsilon: the Laplace smoothing of the cluster sizes (1e-5).
      latent_dim: ``h * w * code_dim`` (the flattened quantized grid); 0 (the default) derives it,
        any other value must equal it.
    """

    latent_dim: int = 0
    codebook_size: int = 512
    code_dim: int = 16
    commitment_cost: float = 0.25
    ema_decay: float = 0.99
    ema_epsilon: float = 1e-5

    # One coordinate of one cell's code vector is no direction of a discrete code: no
    # traversals.png (codebook.png and interpolations.png show the code space instead).
    presentation: ClassVar[Presentation] = Presentation(
        headline=("recon", "mse_per_pixel", "perplexity", "codes_used"), traversal_range=None
    )
    architectures: ClassVar[tuple[str, ...]] = ("conv",)  # it quantizes a grid of conv features
    # model.latent_dim does not apply: the latent is the quantized grid (derived).
    derived_options: ClassVar[tuple[str, ...]] = ("latent_dim",)

    def __post_init__(self) -> None:
        sizes = ("codebook_size", "code_dim")
        set_numbers(self, "a positive integer", lambda v: v > 0, *sizes, cast=int)
        set_numbers(self, "a number >= 0", lambda v: v >= 0, "commitment_cost")
        set_numbers(self, "in [0, 1)", lambda v: 0 <= v < 1, "ema_decay")
        set_numbers(self, "a number > 0", lambda v: v > 0, "ema_epsilon")
        h, w, _ = self.grid_shape
        derived = h * w * self.code_dim
        if self.latent_dim not in (0, derived):
            raise ValueError(
                f"latent_dim of the VQ-VAE is the flattened quantized grid, {h} x {w} x "
                f"code_dim {self.code_dim} = {derived}; got {self.latent_dim!r} (pass 0 to derive it)"
            )
        object.__setattr__(self, "latent_dim", derived)
        super().__post_init__()

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """``(h, w, code_dim)`` of the encoder's output grid."""
        factor = 2 ** len(self.channels)
        h, w = (int(self.image_shape[i]) // factor for i in (0, 1))
        return h, w, self.code_dim

    # ---- networks -------------------------------------------------------------------------

    def _encoder(self):
        return VQEncoder(self.channels, self.code_dim, impl=self.conv_impl)

    def _decoder(self):
        return VQDecoder(self.channels, self.likelihood.output_shape[-1], impl=self.conv_impl)

    def init(self, key):
        """Networks as usual; the codebook from Sonnet's variance-scaling uniform initializer,
        ``U(-sqrt(3 / D), sqrt(3 / D))``, so each code has the scale of a unit-variance input."""
        k_enc, k_dec, k_lik, k_code = jax.random.split(key, 4)
        x = jnp.zeros((1, *self.image_shape), jnp.float32)
        z = jnp.zeros((1, *self.grid_shape), jnp.float32)
        params = {
            "encoder": self._encoder().init(k_enc, x)["params"],
            "decoder": self._decoder().init(k_dec, z)["params"],
        }
        params = self.with_likelihood(params, k_lik)
        limit = math.sqrt(3.0 / self.code_dim)
        shape = (self.codebook_size, self.code_dim)
        codebook = jax.random.uniform(k_code, shape, jnp.float32, -limit, limit)
        size = jnp.ones((self.codebook_size,), jnp.float32)
        return params, {"cluster_size": size, "embed_sum": codebook, "codebook": codebook}

    def encoder_output(self, params, x) -> jax.Array:
        """``z_e``: the encoder's grid ``[N, h, w, code_dim]`` before quantization."""
        self.check_images(x)
        return self._encoder().apply({"params": params["encoder"]}, x)

    def quantize(self, state, z_e: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(z_q, codes)`` of a grid ``[..., code_dim]``: the nearest codes' vectors (no
        gradient) and their indices ``[...]``."""
        codebook = state["codebook"]
        codes = nearest_code(z_e.reshape(-1, self.code_dim), codebook)
        z_q = jnp.take(codebook, codes, axis=0)
        return z_q.reshape(z_e.shape), codes.reshape(z_e.shape[:-1])

    def decode_grid(self, params, z_q: jax.Array):
        """``p(x | z_q)`` for a grid ``[N, h, w, code_dim]`` (no quantization here)."""
        raw = self._decoder().apply({"params": params["decoder"]}, z_q)
        return self.likelihood.distribution(raw, params.get("likelihood", {}))

    def encode(self, params, state, batch):
        """The quantized grid, flattened: ``[N, h * w * code_dim]``."""
        z_q, _ = self.quantize(state, self.encoder_output(params, batch["image"]))
        return z_q.reshape(z_q.shape[0], -1)

    def decode(self, params, state, z, labels=None):
        """``p(x | quantize(z))``: each cell of ``z`` ``[N, latent_dim]`` snapped to its nearest
        code (a no-op on the output of :meth:`encode`), then decoded."""
        del labels
        self.check_latents(z)
        z_q, _ = self.quantize(state, z.reshape(z.shape[0], *self.grid_shape))
        return self.decode_grid(params, z_q)

    # ---- objective ------------------------------------------------------------------------

    def _forward(self, params, state, x):
        """The per-example terms of one batch and what the EMA update needs."""
        z_e = self.encoder_output(params, x)
        z_q, codes = self.quantize(state, z_e)
        recon = -self.decode_grid(params, straight_through(z_e, z_q)).log_prob(x)
        commit = jnp.sum(jnp.square(z_e - jax.lax.stop_gradient(z_q)).reshape(x.shape[0], -1), -1)
        return {"recon": recon, "commitment": commit, "z_e": z_e, "z_q": z_q, "codes": codes}

    def _usage(self, codes: jax.Array) -> dict[str, jax.Array]:
        counts = code_counts(codes.reshape(-1), self.codebook_size)
        return {"perplexity": perplexity(counts), "codes_used": jnp.mean(counts > 0)}

    def loss(self, params, state, batch, key, *, step=0):
        """``mean(-log p(x | z_q)) + commitment_cost * mean(commitment)``, and the EMA-updated
        codebook state (``key`` is not used)."""
        del key
        out = self._forward(params, state, batch["image"])
        recon, commit = jnp.mean(out["recon"]), jnp.mean(out["commitment"])
        loss = recon + self.commitment_cost * commit
        z, codes = out["z_e"].reshape(-1, self.code_dim), out["codes"].reshape(-1)
        new_state = ema_update(state, z, codes, decay=self.ema_decay, epsilon=self.ema_epsilon)
        terms = {"loss": loss, "recon": recon, "commitment": commit} | self._usage(out["codes"])
        return loss, terms, new_state

    def eval_terms(self, params, state, batch, key):
        """Per image: ``recon`` (``-log p(x | z_q)``, nats), ``commitment`` (the summed squared
        distance of the encoder's grid to its codes), ``mse_per_pixel`` of the mean image, and the
        quantized grid as ``posterior_mean`` (active units over its ``latent_dim`` values).
        ``perplexity`` and ``codes_used`` describe the code assignments of the whole eval batch
        (``eval.batch_size`` images times ``h * w`` cells) and are repeated for each of its
        images, so their test figure is the mean over eval batches (a padded last batch counts
        its padding images too)."""
        del key
        x = batch["image"]
        out = self._forward(params, state, x)
        mean = self.decode_grid(params, out["z_q"]).mean()
        n = x.shape[0]
        se = jnp.sum(jnp.square(mean - x).reshape(n, -1), axis=-1)
        usage = {k: jnp.full((n,), v) for k, v in self._usage(out["codes"]).items()}
        terms = {k: out[k] for k in ("recon", "commitment")} | {"mse_per_pixel": se / x[0].size}
        return terms | {"posterior_mean": out["z_q"].reshape(n, -1)} | usage

    # ---- pictures -------------------------------------------------------------------------

    def codebook_images(self, params, state, num: int = 64) -> jax.Array:
        """The ``num`` codes with the largest EMA cluster sizes (the most used in training, most
        used first), each decoded from a grid whose every cell holds that code: ``[num, H, W, C]``
        mean images."""
        num = min(num, self.codebook_size)
        _, top = jax.lax.top_k(state["cluster_size"], num)
        codes = jnp.take(state["codebook"], top, axis=0)  # [num, D]
        grid = jnp.broadcast_to(codes[:, None, None, :], (num, *self.grid_shape))
        return self.decode_grid(params, grid).mean()

    def extra_pictures(self, params, state, batch, key):
        """``codebook.png``: :meth:`codebook_images`, 8 to a row, most used first."""
        del batch, key
        return {"codebook.png": (_codebook_images(self, params, state), 8)}


@functools.partial(jax.jit, static_argnums=(0,))
def _codebook_images(model: VQVAE, params, state) -> jax.Array:
    return model.codebook_images(params, state)
