"""What a family may do beyond :class:`~jaxvae.models.Model`'s required methods, each an optional
protocol: a family has a capability by having its method, never by a flag. Shared code asks
:func:`has` or :func:`require` (which refuses in one line), nothing else."""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable


@runtime_checkable
class ImportanceWeighted(Protocol):
    """``log p(x, z_s) - log q(z_s | x)``, ``z_s ~ q(z | x)``: ``[N, num_samples]`` (IWAE,
    ``elbo_k``, the NLL); ``stop_q_grad`` holds q's parameters constant in ``log q`` (DReG)."""

    def log_weights(self, params, state, batch, key, num_samples, *, stop_q_grad=False): ...


@runtime_checkable
class Prior(Protocol):
    """``[num, latent_dim]`` draws of the prior (samples.png, ``jaxvae sample``)."""

    def sample_latents(self, params, state, key, num, labels=None): ...


@runtime_checkable
class Posterior(Protocol):
    """``q(z | x)``: a distribution with ``mean``, ``stddev``, ``sample`` and ``log_prob``."""

    def posterior(self, params, state, batch): ...


@runtime_checkable
class DReG(ImportanceWeighted, Protocol):
    """Importance weights and ``inference_keys``, q's own parameter groups (empty: none)."""

    inference_keys: tuple[str, ...]


@runtime_checkable
class KLWeighted(Protocol):
    """A loss that takes the objective's KL weight (``beta``, warm-up)."""

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0): ...


@runtime_checkable
class ParameterGroups(Protocol):
    """Top-level groups of ``params`` with a loss ``(params, state, batch, key) -> (loss,
    terms)`` and an optax transform of their own (FactorVAE's discriminator)."""

    def group_losses(self) -> dict: ...

    def group_optimizers(self) -> dict: ...


NEEDS = {
    ImportanceWeighted: "a likelihood to importance-sample (log_weights)",
    Prior: "a prior to sample from (sample_latents)",
    Posterior: "a posterior distribution (posterior)",
    DReG: "parameter groups of q that the generative model does not use (inference_keys)",
    KLWeighted: "a KL-weighted loss (loss(..., kl_weight))",
    ParameterGroups: "parameter groups of its own (group_losses, group_optimizers)",
}


def has(model, capability: type) -> bool:
    """Whether the family instance ``model`` has ``capability``, one of the protocols here."""
    if capability is KLWeighted:  # every family has a loss: its keyword says it
        return "kl_weight" in inspect.signature(model.loss).parameters
    return isinstance(model, capability) and (capability is not DReG or bool(model.inference_keys))


def require(model, capability: type, what: str) -> None:
    """Raises a one-line ``ValueError`` naming ``what`` unless ``model`` has ``capability``."""
    if not has(model, capability):
        raise ValueError(f"{what} needs {NEEDS[capability]}; model kind {model.name!r} has none")
