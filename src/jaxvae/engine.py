"""The train state, the train step and the one training engine.

The step is a pure function ``(state, batch, key) -> (state, metrics)``; a batch is a dict
``{"image": [B, H, W, C], "label": [B], ...}``. The engine (:func:`engine_fn`) runs many steps per
dispatch inside one compiled ``fori_loop``; where each step's batch comes from is a feed's business
(a :class:`CompiledFeed`; :class:`DeviceFeed`: the training set on the devices, each step gathering
its batch from the epoch's permutation; :class:`jaxvae.streaming.StreamFeed`: chunks of batches
read on the host).
Each epoch's order is the permutation of ``fold_in(data_key, epoch)`` and each step's randomness
``fold_in(key, step)``, so the data order and randomness are functions of the seed and the step
alone: a run resumed from a checkpoint continues bit for bit. Several seeds run as one program by
vmapping the same engine over stacked states and keys (``DeviceFeed(..., seeds=S)``). Metrics are
summed on the device and fetched once per dispatch.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvae import sharding, xla_cpu
from jaxvae.data.base import to_unit_float
from jaxvae.models import Model, Params
from jaxvae.models import capabilities as caps
from jaxvae.objectives import ObjectiveSpec, make_loss


class TrainState(NamedTuple):
    """Everything that changes during training (the optimizer transform is closed over)."""

    step: jax.Array  # int32 scalar: steps taken, skipped ones included
    params: Params
    model_state: Any  # what the model updates without gradients (EMA codebooks); {} for most
    opt_state: optax.OptState
    skipped: jax.Array  # int32 scalar: updates skipped (a non-finite loss or gradient)


def init_state(model: Model, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """A fresh state: parameters and model state from ``key``, step 0."""
    params, model_state = model.init(key)
    return TrainState(jnp.int32(0), params, model_state, tx.init(params), jnp.int32(0))


def abstract_state(model: Model, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    """Shapes, dtypes and (replicated) shardings of the state, without allocating it."""
    shapes = jax.eval_shape(lambda: init_state(model, tx, jax.random.key(0)))
    target = sharding.replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=target), shapes)


def all_finite(*trees: Any) -> jax.Array:
    """True when every element of every array in ``trees`` is finite.

    Each array is reduced to a sum of ``0 * x``: ``0 * inf`` and ``0 * nan`` are nan and ``0 * x``
    is 0 for every finite ``x`` (so no overflow, whatever the magnitudes), hence exactly
    ``all(isfinite(x))``. A matrix (an array of two or more dimensions, seen as [rows, rest]) is
    reduced by a product with a vector of zeros, ``zeros[rows] @ x``: the same products and sums,
    run as one matrix-vector product, which on the CPU costs a fraction of an elementwise
    reduction pass (the guard of a small model's step: 10 % of the step with reductions, under
    2 % with products). ``HIGHEST`` precision keeps the operands in f32 on every backend.
    """
    zero = jnp.zeros((), jnp.float32)
    total = zero
    for x in jax.tree_util.tree_leaves(trees):
        if x.ndim >= 2:
            rows = x.reshape(x.shape[0], -1)
            zeros = jnp.zeros((rows.shape[0],), x.dtype)
            part = jnp.dot(zeros, rows, precision=jax.lax.Precision.HIGHEST)
        else:
            part = x * jnp.zeros((), x.dtype)
        total = total + jnp.sum(part, dtype=jnp.float32)
    return jnp.isfinite(total)


def make_train_step(
    model: Model,
    objective: ObjectiveSpec,
    tx: optax.GradientTransformation,
    *,
    preprocess=None,
):
    """The pure train step ``(state, batch, key) -> (state, metrics)``.

    The batch's images may be in their stored form (uint8): the step turns them into float32
    in ``[0, 1]`` first (:func:`jaxvae.data.to_unit_float`, the same bits as on the host).
    ``key`` is the run's training key; the step uses ``fold_in(key, state.step)``, split into the
    key of ``preprocess(key, batch) -> batch`` (an input transform such as dynamic binarization)
    and the objective's. A family with parameter groups trained by losses of their own (the
    optional ``group_losses()``: ``{group: loss(params, state, batch, key) -> (loss, terms)}``, an
    adversarial discriminator) has each group's gradient taken from its own loss; the transform
    ``tx`` (built with the family's ``group_optimizers()``) updates every group. An update whose
    loss or gradients are not finite is skipped (parameters, model state and optimizer state
    unchanged), counted in ``state.skipped`` and reported in ``metrics["skipped"]``.
    """
    objective_fn = make_loss(model, objective)
    group_losses = model.group_losses() if caps.has(model, caps.ParameterGroups) else {}

    def train_step(state: TrainState, batch, key: jax.Array):
        k_pre, k_loss = jax.random.split(jax.random.fold_in(key, state.step))
        batch = batch | {"image": to_unit_float(batch["image"])}
        if preprocess is not None:
            batch = preprocess(k_pre, batch)
        grad_fn = jax.value_and_grad(objective_fn, has_aux=True)
        (loss, (terms, model_state)), grads = grad_fn(
            state.params, state.model_state, batch, k_loss, state.step
        )
        losses = [loss]
        for i, (group, group_loss) in enumerate(sorted(group_losses.items())):
            fn = jax.value_and_grad(group_loss, has_aux=True)
            k = jax.random.fold_in(k_loss, 1 + i)  # the objective draws from k_loss itself
            (g_loss, g_terms), g_grads = fn(state.params, state.model_state, batch, k)
            grads = grads | {group: g_grads[group]}
            terms = terms | g_terms
            losses.append(g_loss)
        ok = all_finite(losses, grads)

        def update(params, model_state_, opt_state):
            del model_state_
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), model_state, opt_state

        # A cond, not a select over every array: a skipped update costs nothing, a taken one
        # writes each parameter and moment once.
        params, model_state, opt_state = jax.lax.cond(
            ok,
            update,
            lambda p, m, o: (p, m, o),
            state.params,
            state.model_state,
            state.opt_state,
        )
        skipped = 1 - ok.astype(jnp.int32)
        new_state = TrainState(
            state.step + 1, params, model_state, opt_state, state.skipped + skipped
        )
        metrics = {name: jnp.where(ok, v, 0.0) for name, v in terms.items()}
        metrics["skipped"] = skipped.astype(jnp.float32)
        return new_state, metrics

    return train_step


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped)."""
    return num_examples // batch_size


def epoch_permutation(data_key: jax.Array, epoch: jax.Array, num_examples: int) -> jax.Array:
    """The example order of ``epoch``: a permutation drawn from ``fold_in(data_key, epoch)``."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


def next_boundary(step: int, *, per_epoch: int, total: int, intervals: tuple[int, ...]) -> int:
    """The next step after ``step`` where the engine must return to the host.

    Boundaries are epoch ends, the end of training, and multiples of each non-zero interval
    (checkpoints, logging, dispatch size). They depend on the step alone, never on when a run was
    started, so a resumed run makes the same dispatches as one that was never stopped.
    """
    return min([total] + [(step // n + 1) * n for n in (per_epoch, *intervals) if n > 0])


# ---- the engine --------------------------------------------------------------------------------

# ``prepare(inputs, first_step) -> take``, where ``take(i)`` is the batch of step ``first_step + i``.
Prepare = Callable[[Any, jax.Array], Callable[[jax.Array], Any]]


def engine_fn(train_step, prepare: Prepare):
    """``run(state, inputs, key, num_steps, sums) -> (state, metric_sums)``: the one loop.

    Runs ``num_steps`` (a traced scalar, so every chunk length shares one compiled program) steps
    from ``state.step``, taking each step's batch from ``prepare(inputs, state.step)``. ``sums``
    (from :func:`zero_metrics`, or the previous dispatch's) is the running sum of the step
    metrics, so a stretch of steps split over several dispatches adds them in the same order as
    one dispatch. To be jitted (:func:`compile_engine`), optionally vmapped over seeds first.
    """

    def run(state: TrainState, inputs, key: jax.Array, num_steps, sums):
        take = prepare(inputs, state.step)

        def body(i, carry):
            state, sums = carry
            state, metrics = train_step(state, take(i), key)
            return state, jax.tree.map(jnp.add, sums, metrics)

        return jax.lax.fori_loop(0, num_steps, body, (state, sums))

    return run


def compile_engine(train_step, prepare: Prepare, mesh: Mesh, *, input_axes=None):
    """:func:`engine_fn` jitted with the state donated; with ``input_axes`` (the vmap axes of the
    inputs) it is first vmapped over a leading seed axis of the state, the key and the sums."""
    run = engine_fn(train_step, prepare)
    if input_axes is not None:
        run = jax.vmap(run, in_axes=(0, input_axes, 0, None, 0))
    replicated = sharding.replicated(mesh)
    return jax.jit(
        run,
        donate_argnums=(0,),
        out_shardings=(replicated, replicated),
        compiler_options=xla_cpu.compiler_options(mesh.devices.flat),
    )


def device_prepare(*, num_examples: int, batch_size: int, mesh: Mesh) -> Prepare:
    """Batches gathered from a device-resident training set: ``inputs = (data, data_key)``, the
    steps of one dispatch lying in one epoch."""
    sharding.check_batch_size(batch_size, mesh)
    per_epoch = steps_per_epoch(num_examples, batch_size)
    if per_epoch < 1:
        raise ValueError(
            f"batch size {batch_size} is larger than the {num_examples} training examples"
        )
    batch_sharding = sharding.batch_sharded(mesh)

    def prepare(inputs, first_step):
        data, data_key = inputs
        order = epoch_permutation(data_key, first_step // per_epoch, num_examples)
        start = first_step % per_epoch

        def take(i):
            idx = jax.lax.dynamic_slice(order, ((start + i) * batch_size,), (batch_size,))
            idx = jax.lax.with_sharding_constraint(idx, batch_sharding)
            return jax.tree.map(
                lambda a: jax.lax.with_sharding_constraint(a[idx], batch_sharding), data
            )

        return take

    return prepare


def chunk_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a stacked chunk of batches ``[n, B, ...]``: the batch axis over ``"data"``."""
    return NamedSharding(mesh, P(None, sharding.DATA_AXIS))


def chunk_prepare(*, batch_size: int, mesh: Mesh) -> Prepare:
    """Batches taken in order from a chunk ``inputs = {name: [n, B, ...]}`` of host batches."""
    sharding.check_batch_size(batch_size, mesh)
    batch_sharding = sharding.batch_sharded(mesh)

    def prepare(inputs, first_step):
        del first_step

        def take(i):
            return jax.tree.map(
                lambda a: jax.lax.with_sharding_constraint(
                    jax.lax.dynamic_index_in_dim(a, i, keepdims=False), batch_sharding
                ),
                inputs,
            )

        return take

    return prepare


def make_engine(train_step, *, num_examples: int, batch_size: int, mesh: Mesh):
    """The compiled engine over a device-resident training set:
    ``run(state, (data, data_key), key, num_steps, sums)``."""
    prepare = device_prepare(num_examples=num_examples, batch_size=batch_size, mesh=mesh)
    return compile_engine(train_step, prepare, mesh)


def zero_metrics(train_step, state: TrainState, batch, key: jax.Array):
    """Zeros shaped like ``train_step``'s metrics: the engines' initial running sums."""
    _, shapes = jax.eval_shape(train_step, state, batch, key)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


# ---- feeds ---------------------------------------------------------------------------------------


def stack(trees) -> Any:
    """The trees stacked on a new leading (seed) axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def part(tree: Any, i: int) -> Any:
    """Seed ``i``'s part of a stacked tree (device arrays or host sums)."""
    return jax.tree.map(lambda a: a[i], tree)


class CompiledFeed(abc.ABC):
    """Where a run's batches come from, over :func:`compile_engine`: :meth:`compile` once, then
    :meth:`run` for the next ``n`` steps. Subclasses give ``prepare``, the batch shapes and the
    inputs of each dispatch (:meth:`dispatches`). With ``seeds``, ``key`` and the inputs'
    seed-dependent parts are stacked, and so are the state and the sums."""

    input_axes = None  # vmap axes of the inputs when seeds are stacked

    def __init__(self, train_step, prepare: Prepare, mesh: Mesh, key, *, seeds: int = 0):
        self.train_step, self.mesh, self.key, self.seeds = train_step, mesh, key, seeds
        axes = self.input_axes if seeds else None
        self.engine = compile_engine(train_step, prepare, mesh, input_axes=axes)
        self.compiled = None

    @abc.abstractmethod
    def one_batch(self):
        """A batch (arrays or shapes) of one step, for the metric shapes."""

    @abc.abstractmethod
    def abstract_inputs(self):
        """The inputs of a dispatch (arrays or shapes), for compilation."""

    @abc.abstractmethod
    def dispatches(self, n: int):
        """``[(inputs, steps), ...]`` that run the next ``n`` steps."""

    def compile(self, state: TrainState) -> float:
        t = time.time()
        one_state, one_key = part((state, self.key), 0) if self.seeds else (state, self.key)
        zeros = zero_metrics(self.train_step, one_state, self.one_batch(), one_key)
        self.zeros = (
            jax.tree.map(lambda z: np.stack([z] * self.seeds), zeros) if self.seeds else zeros
        )
        args = (state, self.abstract_inputs(), self.key, jnp.int32(1), self.zeros)
        self.compiled = self.engine.lower(*args).compile()
        return time.time() - t

    def run(self, state: TrainState, n: int, sums=None) -> tuple[TrainState, Any]:
        """Runs the next ``n`` steps, continuing the running metric ``sums`` (``None``: zeros)."""
        sums = self.zeros if sums is None else sums
        for inputs, k in self.dispatches(n):
            state, sums = self.compiled(state, inputs, self.key, jnp.int32(k), sums)
        return state, sums


class DeviceFeed(CompiledFeed):
    """The training set on the devices (replicated, in its stored dtype: uint8 images take a
    quarter of float32's memory); ``run(state, n)`` runs the next ``n`` steps
    within one epoch. With ``seeds=S``, ``key`` and ``data_key`` are ``[S]`` stacks and the state
    a stacked one: S runs of one config but the seed, in one program (:mod:`jaxvae.seeds`)."""

    input_axes = (None, 0)  # the data shared, the data keys per seed

    def __init__(self, train_step, data, key, data_key, *, batch_size: int, mesh: Mesh, seeds=0):
        self.batch_size = batch_size
        self.data = jax.tree.map(lambda a: sharding.put_replicated(a, mesh), data)
        n = jax.tree.leaves(data)[0].shape[0]
        prepare = device_prepare(num_examples=n, batch_size=batch_size, mesh=mesh)
        self.data_key = data_key  # uncommitted: every process passes the same key
        super().__init__(train_step, prepare, mesh, key, seeds=seeds)

    def one_batch(self):
        return jax.tree.map(lambda a: a[: self.batch_size], self.data)

    def abstract_inputs(self):
        return (self.data, self.data_key)

    def dispatches(self, n: int):
        return [((self.data, self.data_key), n)]
