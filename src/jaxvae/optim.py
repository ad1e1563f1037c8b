"""The optax transform of an :class:`~jaxvae.specs.OptimizerSpec`: optimizer, learning-rate
schedule, Adam's epsilon and gradient clipping."""

from __future__ import annotations

import optax

from jaxvae.specs import OptimizerSpec

# Schedules whose shape depends on the run's length (train.epochs): a run continued with more
# epochs would change its learning rate, so the run directory refuses that change.
LENGTH_DEPENDENT = ("cosine",)


def iwae_stages(num_stages: int = 8) -> list[tuple[int, float]]:
    """The IWAE paper's schedule (Burda et al. 2016, section 5): stage ``i = 0..7`` lasts ``3^i``
    epochs at learning rate ``lr * 10^(-i/7)`` (3280 epochs in all): ``[(epochs, factor), ...]``."""
    return [(3**i, 10.0 ** (-i / 7)) for i in range(num_stages)]


def learning_rate(spec: OptimizerSpec, steps_per_epoch: int, total_steps: int):
    """The learning rate as an optax schedule of the step.

    ``constant``; ``cosine`` (from ``learning_rate`` to 0 over ``total_steps``); ``exponential``
    (times ``lr_decay`` per epoch); ``iwae`` (:func:`iwae_stages`, then the last rate).
    """
    lr, kind = float(spec.learning_rate), spec.lr_schedule
    if kind == "constant":
        return lr
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, max(1, total_steps))
    if kind == "exponential":
        return optax.exponential_decay(lr, steps_per_epoch, float(spec.lr_decay))
    stages = iwae_stages()
    scales, epoch = {}, 0
    for (epochs, factor), (_, next_factor) in zip(stages, stages[1:], strict=False):
        epoch += epochs
        scales[epoch * steps_per_epoch] = next_factor / factor
    return optax.piecewise_constant_schedule(lr, scales)


def make_optimizer(
    spec: OptimizerSpec, steps_per_epoch: int = 1, total_steps: int = 1
) -> optax.GradientTransformation:
    """The optax transform of ``spec``; ``steps_per_epoch`` places the schedules' epoch
    boundaries and ``total_steps`` is the length a cosine schedule spans."""
    lr = learning_rate(spec, steps_per_epoch, total_steps)
    eps = float(spec.adam_eps)
    if spec.optimizer == "adam":
        tx = optax.adam(lr, eps=eps)
    elif spec.optimizer == "adamw":
        tx = optax.adamw(lr, eps=eps, weight_decay=spec.weight_decay)
    else:
        tx = optax.sgd(lr, momentum=0.9)
    if spec.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(spec.grad_clip), tx)
    return tx
