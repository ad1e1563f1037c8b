"""Training objectives over any model family: the family's own loss (the ELBO for VAEs, a pixel
loss for AEs) with a KL weight that is a schedule of the step, or the importance-weighted bound
(IWAE, Burda et al. 2016) from the family's log-weights, with the standard or the doubly
reparameterized gradient (DReG, Tucker et al. 2019).

``make_loss(model, spec)`` returns ``f(params, state, batch, key, step) -> (loss, (terms,
new_state))``: ``terms`` are scalar batch means in nats per image.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from jaxvae.models import Model
from jaxvae.models import capabilities as caps
from jaxvae.models.base import check_choice

OBJECTIVES = ("elbo", "elbo_k", "iwae")
ESTIMATORS = ("standard", "dreg")


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    """Static options of the training objective.

    Attributes:
      name: ``"elbo"`` (the family's own loss), ``"elbo_k"`` (the ELBO averaged over ``k``
        samples from the family's log-weights: the "VAE, k samples" rows of Burda et al.,
        Table 1) or ``"iwae"`` (the k-sample bound).
      k: samples of ``elbo_k`` and ``iwae`` (``k=1`` is the single-sample ELBO for both).
      estimator: IWAE gradient, ``"standard"`` or ``"dreg"``.
      beta: the KL weight (``1`` = the ELBO; ``> 1`` = beta-VAE).
      warmup_steps: the KL weight rises linearly from 0 to ``beta`` over this many steps.
    """

    name: str = "elbo"
    k: int = 1
    estimator: str = "standard"
    beta: float = 1.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        check_choice("objective name", self.name, OBJECTIVES)
        check_choice("estimator", self.estimator, ESTIMATORS)
        if isinstance(self.k, bool) or int(self.k) != self.k or self.k < 1:
            raise ValueError(f"objective k must be a positive integer, got {self.k!r}")
        if not float(self.beta) >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if int(self.warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.name != "elbo" and (self.beta != 1.0 or self.warmup_steps):
            raise ValueError(
                f"objective {self.name!r} is a bound on log p(x): beta={self.beta!r} and "
                f"warmup_steps={self.warmup_steps!r} apply to objective 'elbo' only"
            )
        if self.name == "elbo" and self.k != 1:
            raise ValueError(f"objective k={self.k!r} applies to 'elbo_k' and 'iwae' only")
        if self.name != "iwae" and self.estimator != "standard":
            raise ValueError(f"estimator={self.estimator!r} applies to objective 'iwae' only")


def kl_schedule(spec: ObjectiveSpec) -> optax.Schedule:
    """The KL weight as a function of the step: ``beta``, ramped linearly from 0 over
    ``warmup_steps``."""
    if spec.warmup_steps <= 0:
        return optax.constant_schedule(float(spec.beta))
    return optax.linear_schedule(0.0, float(spec.beta), int(spec.warmup_steps))


def log_mean_exp(log_w: jax.Array, axis: int = -1) -> jax.Array:
    """``log (1/k) sum_i exp(log_w_i)`` along ``axis``, stably."""
    return jax.nn.logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])


def _split_params(model: Model, params):
    """``(theta_live, phi_live)``: the params with the inference groups, resp. the generative
    groups, held constant."""
    stop = jax.lax.stop_gradient
    inference = set(model.inference_keys)
    theta = {k: stop(v) if k in inference else v for k, v in params.items()}
    phi = {k: v if k in inference else stop(v) for k, v in params.items()}
    return theta, phi


def iwae_loss(model: Model, params, state, batch, key, *, k: int, estimator: str = "standard"):
    """Negative IWAE bound ``-mean_x log (1/k) sum_i w_i`` and its terms.

    With ``estimator="dreg"`` the loss has the same value, but its gradient is the doubly
    reparameterized one: ``sum_i w~_i grad_theta log w_i`` for the generative parameters and
    ``sum_i w~_i^2 (d log w_i / d z_i)(d z_i / d phi)`` for the inference ones, where
    ``w~ = softmax(log w)`` (Tucker et al. 2019, eq. 5).
    """
    if estimator == "standard":
        log_w = model.log_weights(params, state, batch, key, k)
        bound = jnp.mean(log_mean_exp(log_w))
        loss = -bound
    else:
        theta, phi = _split_params(model, params)
        log_w = model.log_weights(theta, state, batch, key, k)
        log_w_phi = model.log_weights(phi, state, batch, key, k, stop_q_grad=True)
        bound = jnp.mean(log_mean_exp(log_w))
        w = jax.lax.stop_gradient(jax.nn.softmax(log_w_phi, axis=-1))
        dreg = jnp.mean(jnp.sum(jnp.square(w) * log_w_phi, axis=-1))
        loss = -(bound + dreg - jax.lax.stop_gradient(dreg))
    ess = jnp.mean(1.0 / jnp.sum(jnp.square(jax.nn.softmax(log_w, axis=-1)), axis=-1))
    terms = {"loss": loss, "iwae_bound": bound, "ess": jax.lax.stop_gradient(ess)}
    return loss, terms, state


def check_objective(model: Model, spec: ObjectiveSpec) -> None:
    """Raises ``ValueError`` unless ``model`` can be trained by ``spec``: a bound on ``log p(x)``
    needs the family's importance log-weights, DReG a ``q`` that shares no parameters with the
    generative model."""
    if spec.name != "elbo":
        caps.require(model, caps.ImportanceWeighted, f"config objective.name={spec.name!r}")
    if spec.name == "iwae" and spec.estimator == "dreg":
        caps.require(model, caps.DReG, "config objective.estimator='dreg'")


def make_loss(model: Model, spec: ObjectiveSpec):
    """``f(params, state, batch, key, step) -> (loss, (terms, new_state))`` for ``spec``."""
    check_objective(model, spec)
    schedule = kl_schedule(spec)
    weighted = caps.has(model, caps.KLWeighted)  # beta and warm-up apply to these only

    def f(params, state, batch, key, step):
        args = (params, state, batch, key)
        if spec.name == "iwae":
            loss, terms, new_state = iwae_loss(model, *args, k=spec.k, estimator=spec.estimator)
        elif spec.name == "elbo_k":  # the ELBO averaged over k samples: mean_x mean_i log w_i
            elbo = jnp.mean(model.log_weights(*args, spec.k))
            loss, terms, new_state = -elbo, {"loss": -elbo, "elbo": elbo}, state
        elif weighted:
            weight = schedule(step)
            loss, terms, new_state = model.loss(*args, kl_weight=weight, step=step)
            terms = terms | {"kl_weight": jnp.asarray(weight, jnp.float32)}
        else:
            loss, terms, new_state = model.loss(*args, step=step)
        return loss, (terms, new_state)

    return f
