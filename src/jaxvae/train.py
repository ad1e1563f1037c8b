"""The train state, the train step and the device-resident training engine.

The step is a pure function ``(state, batch, key) -> (state, metrics)``. The engine keeps the whole
dataset on the devices and runs many steps per dispatch inside one compiled ``fori_loop``: each epoch
has its own permutation, made on the device from ``fold_in(data_key, epoch)``, and each step gathers its
batch by index and draws its randomness from ``fold_in(key, step)``. So the data order and randomness
are functions of the seed and the step alone: a run resumed from a checkpoint continues bit for bit.
Metrics are summed on the device and fetched once per dispatch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from jaxvae import sharding
from jaxvae.models import Model, Params
from jaxvae.objectives import ObjectiveSpec, loss_fn

Metrics = dict[str, jax.Array]


class TrainState(NamedTuple):
    """Everything that changes during training (the optimizer transform is closed over)."""

    step: jax.Array  # int32 scalar: steps taken, skipped ones included
    params: Params
    opt_state: optax.OptState
    skipped: (
        jax.Array
    )  # int32 scalar: updates skipped because the loss or a gradient was not finite


def check_weight_decay(optimizer: str, weight_decay: float) -> None:
    """Weight decay is ``adamw``'s (decoupled, Loshchilov & Hutter); ``adam`` and ``sgd`` take none.

    Raises:
      ValueError: ``weight_decay > 0`` with another optimizer, naming both config keys.
    """
    if weight_decay > 0 and optimizer != "adamw":
        raise ValueError(
            f"config train.weight_decay={weight_decay!r} needs train.optimizer='adamw', got "
            f"train.optimizer={optimizer!r} (which has no weight decay); use "
            "--config.train.optimizer=adamw or --config.train.weight_decay=0"
        )


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The optax transform of ``config.train``: optimizer, learning rate, weight decay (``adamw``
    only, see :func:`check_weight_decay`), clipping."""
    lr, wd = train_config.learning_rate, train_config.weight_decay
    name = train_config.optimizer
    check_weight_decay(name, wd)
    if name == "adam":
        tx = optax.adam(lr)
    elif name == "adamw":
        tx = optax.adamw(lr, weight_decay=wd)
    elif name == "sgd":
        tx = optax.sgd(lr, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    if train_config.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(train_config.grad_clip), tx)
    return tx


def init_state(model: Model, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """A fresh state: parameters from ``key``, step 0."""
    params = model.init(key)
    return TrainState(jnp.int32(0), params, tx.init(params), jnp.int32(0))


def abstract_state(
    model: Model, tx: optax.GradientTransformation, mesh: Mesh | None = None
) -> TrainState:
    """Shapes, dtypes and (replicated) shardings of the state, without allocating it."""
    shapes = jax.eval_shape(lambda: init_state(model, tx, jax.random.key(0)))
    if mesh is None:
        return shapes
    target = sharding.replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=target), shapes)


def all_finite(*trees: Any) -> jax.Array:
    """True when every element of every array in ``trees`` is finite.

    Computed as ``isfinite(sum(x * 0))``: ``0 * inf`` and ``0 * nan`` are nan and ``0 * x`` is 0 for
    every finite ``x`` (so no overflow, whatever the magnitudes), hence exactly
    ``all(isfinite(x))``, as one vectorized sum per array and one scalar test.
    """
    leaves = jax.tree_util.tree_leaves(trees)
    total = sum(jnp.sum(x * jnp.zeros((), x.dtype), dtype=jnp.float32) for x in leaves)
    return jnp.isfinite(total)


def make_train_step(model: Model, objective: ObjectiveSpec, tx: optax.GradientTransformation):
    """The pure train step ``(state, batch, key) -> (state, metrics)``.

    ``key`` is the run's training key; the step uses ``fold_in(key, state.step)``. An update whose loss
    or gradients are not finite is skipped (parameters and optimizer state unchanged), counted in
    ``state.skipped`` and reported in ``metrics["skipped"]``.
    """
    objective_fn = loss_fn(model, objective)

    def train_step(state: TrainState, batch: jax.Array, key: jax.Array):
        step_key = jax.random.fold_in(key, state.step)
        grad_fn = jax.value_and_grad(objective_fn, has_aux=True)
        (loss, terms), grads = grad_fn(state.params, batch, step_key, state.step)
        ok = all_finite(loss, grads)

        def update(params, opt_state):
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        # A cond, not a select over every array: a skipped update costs nothing, a taken one
        # writes each parameter and moment once.
        params, opt_state = jax.lax.cond(
            ok, update, lambda p, o: (p, o), state.params, state.opt_state
        )
        skipped = 1 - ok.astype(jnp.int32)
        new_state = TrainState(state.step + 1, params, opt_state, state.skipped + skipped)
        metrics = {name: jnp.where(ok, v, 0.0) for name, v in terms.items()}
        metrics["skipped"] = skipped.astype(jnp.float32)
        return new_state, metrics

    return train_step


def epoch_permutation(data_key: jax.Array, epoch: jax.Array, num_examples: int) -> jax.Array:
    """The example order of ``epoch``: a permutation drawn from ``fold_in(data_key, epoch)``."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


def make_engine(
    train_step,
    *,
    num_examples: int,
    batch_size: int,
    mesh: Mesh,
):
    """A jitted ``run(state, images, key, data_key, num_steps) -> (state, metric_sums)``.

    Runs ``num_steps`` (a traced scalar, so every chunk length shares one compiled program) steps from
    ``state.step``, which must all lie in one epoch. ``images`` stays on the devices, replicated; each
    step gathers its batch by index, split over the mesh's ``"data"`` axis. The state is donated.
    """
    sharding.check_batch_size(batch_size, mesh)
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch size {batch_size} is larger than the {num_examples} training examples"
        )
    batch_sharding = sharding.batch_sharded(mesh)
    replicated = sharding.replicated(mesh)

    def run(state: TrainState, images: jax.Array, key: jax.Array, data_key, num_steps):
        epoch = state.step // steps_per_epoch
        start = state.step % steps_per_epoch
        order = epoch_permutation(data_key, epoch, num_examples)

        def body(i, carry):
            state, sums = carry
            idx = jax.lax.dynamic_slice(order, ((start + i) * batch_size,), (batch_size,))
            idx = jax.lax.with_sharding_constraint(idx, batch_sharding)
            batch = jax.lax.with_sharding_constraint(images[idx], batch_sharding)
            state, metrics = train_step(state, batch, key)
            return state, jax.tree.map(jnp.add, sums, metrics)

        _, metric_shapes = jax.eval_shape(train_step, state, images[:batch_size], key)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)
        return jax.lax.fori_loop(0, num_steps, body, (state, zeros))

    return jax.jit(run, donate_argnums=(0,), out_shardings=(replicated, replicated))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped)."""
    return num_examples // batch_size


def next_boundary(step: int, *, per_epoch: int, total: int, intervals: tuple[int, ...]) -> int:
    """The next step after ``step`` where the engine must return to the host.

    Boundaries are epoch ends, the end of training, and multiples of each non-zero interval
    (checkpoints, logging, dispatch size). They depend on the step alone, never on when a run was
    started, so a resumed run makes the same dispatches as one that was never stopped.
    """
    boundary = min((step // per_epoch + 1) * per_epoch, total)
    for n in intervals:
        if n > 0:
            boundary = min(boundary, (step // n + 1) * n)
    return boundary
