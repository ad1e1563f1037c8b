"""What a model family may do beyond the required interface of :class:`~jaxvae.models.Model`,
each an optional protocol: a family has a capability by having its method, never by a flag.

Shared code asks :func:`has` (and :func:`require`, which refuses in one line), and nothing else::

    if capabilities.has(model, capabilities.ImportanceWeighted):
        nll = evaluate.evaluate_iwae(model, ...)
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import jax


@runtime_checkable
class ImportanceWeighted(Protocol):
    """A likelihood to importance-sample: the IWAE objective, ``elbo_k`` and the NLL."""

    def log_weights(self, params, state, batch, key, num_samples, *, stop_q_grad=False):
        """``log p(x, z_s) - log q(z_s | x)`` for ``num_samples`` draws ``z_s ~ q(z | x)``:
        ``[N, num_samples]``. With ``stop_q_grad``, ``log q`` is evaluated with the parameters of
        ``q`` held constant (the path through ``z`` keeps its gradient), as DReG needs."""


@runtime_checkable
class Prior(Protocol):
    """A prior to sample: ``samples.png`` and ``jaxvae sample`` decode its draws."""

    def sample_latents(self, params, state, key, num: int, labels=None) -> jax.Array:
        """``[num, latent_dim]`` latents drawn from the prior."""


@runtime_checkable
class Posterior(Protocol):
    """A distribution ``q(z | x)``: ``run.posterior(x)``, ``jaxvae encode``'s stddevs, the
    disentanglement metrics that need it."""

    def posterior(self, params, state, batch) -> Any:
        """``q(z | x)`` of each image: an object with ``mean()``, ``stddev()``, ``sample(key)``
        and ``log_prob(z)`` (:class:`jaxvae.distributions.DiagGaussian`)."""


@runtime_checkable
class DReG(ImportanceWeighted, Protocol):
    """Importance weights whose ``q`` has parameter groups the generative model does not use:
    the doubly reparameterized IWAE gradient. ``inference_keys`` names them (empty: none)."""

    inference_keys: tuple[str, ...]


@runtime_checkable
class KLWeighted(Protocol):
    """A loss with a KL weight (the objective's ``beta`` and warm-up): ``loss`` takes
    ``kl_weight``, which the objective passes to these families only."""

    def loss(self, params, state, batch, key, *, kl_weight=1.0, step=0): ...


@runtime_checkable
class ParameterGroups(Protocol):
    """Parameter groups trained by losses and optimizers of their own (FactorVAE's
    discriminator): ``{group: loss(params, state, batch, key) -> (loss, terms)}`` and
    ``{group: optax transform}``, the group a top-level key of ``params``."""

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
    """Whether ``model`` (an instance) has ``capability``, one of this module's protocols."""
    if capability is KLWeighted:  # every family has a loss: the keyword says it
        return "kl_weight" in inspect.signature(model.loss).parameters
    if capability is DReG:
        return isinstance(model, DReG) and bool(model.inference_keys)
    return isinstance(model, capability)


def require(model, capability: type, what: str) -> None:
    """Raises ``ValueError`` (one line naming ``what`` and the family) unless ``model`` has
    ``capability``."""
    if not has(model, capability):
        raise ValueError(f"{what} needs {NEEDS[capability]}; model kind {model.name!r} has none")
