"""The train state, the train step and the device-resident training engine.

The step is a pure function ``(state, batch, key) -> (state, metrics)``; a batch is a dict
``{"image": [B, H, W, C], "label": [B]}``. The engine keeps the whole dataset on the devices and runs many steps per dispatch inside one compiled ``fori_loop``: each epoch
has its own permutation, made on the device from ``fold_in(data_key, epoch)``, and each step gathers its
batch by index and draws its randomness from ``fold_in(key, step)``. So the data order and randomness
are functions of the seed and the step alone: a run resumed from a checkpoint continues bit for bit.
Metrics are summed on the device and fetched once per dispatch.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvae import sharding
from jaxvae.models import Model, Params
from jaxvae.objectives import ObjectiveSpec, make_loss

Metrics = dict[str, jax.Array]


class TrainState(NamedTuple):
    """Everything that changes during training (the optimizer transform is closed over)."""

    step: jax.Array  # int32 scalar: steps taken, skipped ones included
    params: Params
    model_state: Any  # what the model updates without gradients (EMA codebooks); {} for most
    opt_state: optax.OptState
    skipped: jax.Array  # int32 scalar: updates skipped (a non-finite loss or gradient)


LR_SCHEDULES = ("constant", "cosine", "exponential", "iwae")


def iwae_stages(num_stages: int = 8) -> list[tuple[int, float]]:
    """The IWAE paper's schedule (Burda et al. 2016, section 5): stage ``i = 0..7`` lasts ``3^i``
    epochs at learning rate ``lr * 10^(-i/7)`` (3280 epochs in all): ``[(epochs, factor), ...]``."""
    return [(3**i, 10.0 ** (-i / 7)) for i in range(num_stages)]


def learning_rate(train_config: ml_collections.ConfigDict, steps_per_epoch: int):
    """The learning rate of ``config.train`` as an optax schedule of the step.

    ``constant``; ``cosine`` (from ``learning_rate`` to 0 over ``train.epochs``); ``exponential``
    (times ``lr_decay`` per epoch); ``iwae`` (:func:`iwae_stages`, then the last rate).
    """
    lr, kind = float(train_config.learning_rate), train_config.get("lr_schedule", "constant")
    if kind == "constant":
        return lr
    total = max(1, train_config.epochs * steps_per_epoch)
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, total)
    if kind == "exponential":
        return optax.exponential_decay(
            lr, steps_per_epoch, float(train_config.get("lr_decay", 0.99))
        )
    if kind == "iwae":
        stages = iwae_stages()
        scales, epoch = {}, 0
        for (epochs, factor), (_, next_factor) in zip(stages, stages[1:], strict=False):
            epoch += epochs
            scales[epoch * steps_per_epoch] = next_factor / factor
        return optax.piecewise_constant_schedule(lr, scales)
    raise ValueError(f"train.lr_schedule must be one of {LR_SCHEDULES}, got {kind!r}")


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


def make_optimizer(
    train_config: ml_collections.ConfigDict, steps_per_epoch: int = 1
) -> optax.GradientTransformation:
    """The optax transform of ``config.train``: optimizer, learning-rate schedule, Adam's
    epsilon, clipping. ``steps_per_epoch`` places the schedules' epoch boundaries."""
    lr = learning_rate(train_config, steps_per_epoch)
    wd, eps = train_config.weight_decay, float(train_config.get("adam_eps", 1e-8))
    name = train_config.optimizer
    check_weight_decay(name, wd)
    if name == "adam":
        tx = optax.adam(lr, eps=eps)
    elif name == "adamw":
        tx = optax.adamw(lr, eps=eps, weight_decay=wd)
    elif name == "sgd":
        tx = optax.sgd(lr, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    if train_config.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(train_config.grad_clip), tx)
    return tx


def init_state(model: Model, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """A fresh state: parameters and model state from ``key``, step 0."""
    params, model_state = model.init(key)
    return TrainState(jnp.int32(0), params, model_state, tx.init(params), jnp.int32(0))


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


def make_train_step(
    model: Model,
    objective: ObjectiveSpec,
    tx: optax.GradientTransformation,
    *,
    preprocess=None,
):
    """The pure train step ``(state, batch, key) -> (state, metrics)``.

    ``key`` is the run's training key; the step uses ``fold_in(key, state.step)``, split into the
    key of ``preprocess(key, batch) -> batch`` (an input transform such as dynamic binarization)
    and the objective's. An update whose loss or gradients are not finite is skipped (parameters,
    model state and optimizer state unchanged), counted in ``state.skipped`` and reported in
    ``metrics["skipped"]``.
    """
    objective_fn = make_loss(model, objective)

    def train_step(state: TrainState, batch, key: jax.Array):
        k_pre, k_loss = jax.random.split(jax.random.fold_in(key, state.step))
        if preprocess is not None:
            batch = preprocess(k_pre, batch)
        grad_fn = jax.value_and_grad(objective_fn, has_aux=True)
        (loss, (terms, model_state)), grads = grad_fn(
            state.params, state.model_state, batch, k_loss, state.step
        )
        ok = all_finite(loss, grads)

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
    """:func:`engine_fn` jitted, the state donated."""
    run = engine_fn(train_step, num_examples=num_examples, batch_size=batch_size, mesh=mesh)
    replicated = sharding.replicated(mesh)
    return jax.jit(run, donate_argnums=(0,), out_shardings=(replicated, replicated))


def engine_fn(
    train_step,
    *,
    num_examples: int,
    batch_size: int,
    mesh: Mesh,
):
    """``run(state, data, key, data_key, num_steps, sums) -> (state, metric_sums)``, to be jitted
    (:func:`make_engine`) or vmapped over seeds first (:mod:`jaxvae.seeds`).

    Runs ``num_steps`` (a traced scalar, so every chunk length shares one compiled program) steps from
    ``state.step``, which must all lie in one epoch. ``data`` (a dict of arrays with a leading
    example axis: ``{"image", "label"}``) stays on the devices, replicated; each step gathers its
    batch by index, split over the mesh's ``"data"`` axis. The state is donated. ``sums`` (from
    :func:`zero_metrics`, or the previous dispatch's) is the running sum of the step metrics, so a
    stretch of steps split over several dispatches adds them in the same order as one dispatch.
    """
    sharding.check_batch_size(batch_size, mesh)
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch size {batch_size} is larger than the {num_examples} training examples"
        )
    batch_sharding = sharding.batch_sharded(mesh)

    def gather(data, idx):
        return jax.tree.map(
            lambda a: jax.lax.with_sharding_constraint(a[idx], batch_sharding), data
        )

    def run(state: TrainState, data, key: jax.Array, data_key, num_steps, sums):
        epoch = state.step // steps_per_epoch
        start = state.step % steps_per_epoch
        order = epoch_permutation(data_key, epoch, num_examples)

        def body(i, carry):
            state, sums = carry
            idx = jax.lax.dynamic_slice(order, ((start + i) * batch_size,), (batch_size,))
            idx = jax.lax.with_sharding_constraint(idx, batch_sharding)
            state, metrics = train_step(state, gather(data, idx), key)
            return state, jax.tree.map(jnp.add, sums, metrics)

        return jax.lax.fori_loop(0, num_steps, body, (state, sums))

    return run


def zero_metrics(train_step, state: TrainState, batch, key: jax.Array):
    """Zeros shaped like ``train_step``'s metrics: the engines' initial running sums."""
    _, shapes = jax.eval_shape(train_step, state, batch, key)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def chunk_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a stacked chunk of batches ``[n, B, ...]``: the batch axis over ``"data"``."""
    return NamedSharding(mesh, P(None, sharding.DATA_AXIS))


def make_stream_engine(train_step, *, batch_size: int, mesh: Mesh):
    """A jitted ``run(state, batches, key, num_steps, sums) -> (state, metric_sums)`` over streamed
    data (``sums`` as in :func:`make_engine`).

    ``batches`` is a chunk of host batches stacked as ``[n, B, ...]`` (a dict ``{"image",
    "label"}``) and placed with :func:`chunk_sharding`; the first ``num_steps`` (a traced scalar,
    so a short last chunk, padded to ``n``, shares the compiled program) are run in order. The
    train step and its key (``fold_in(key, step)``) are those of :func:`make_engine`, so only
    where the batches come from differs. The state is donated.
    """
    sharding.check_batch_size(batch_size, mesh)
    batch_sharding = sharding.batch_sharded(mesh)
    replicated = sharding.replicated(mesh)

    def run(state: TrainState, batches, key: jax.Array, num_steps, sums):
        def take(i):
            return jax.tree.map(
                lambda a: jax.lax.with_sharding_constraint(
                    jax.lax.dynamic_index_in_dim(a, i, keepdims=False), batch_sharding
                ),
                batches,
            )

        def body(i, carry):
            state, sums = carry
            state, metrics = train_step(state, take(i), key)
            return state, jax.tree.map(jnp.add, sums, metrics)

        return jax.lax.fori_loop(0, num_steps, body, (state, sums))

    return jax.jit(run, donate_argnums=(0,), out_shardings=(replicated, replicated))


class DeviceFeed:
    """The device-resident training data of an experiment: ``run(state, n) -> (state, sums)``
    runs the next ``n`` steps (within one epoch) with :func:`make_engine`, the whole training set
    replicated on the devices. :class:`jaxvae.streaming.StreamFeed` has the same interface."""

    def __init__(self, exp):
        train = exp.split("train")
        self.data = jax.tree.map(lambda a: sharding.put_replicated(a, exp.mesh), train)
        self.train_step = exp.train_step()
        self.batch_size = exp.config.train.batch_size
        self.engine = make_engine(
            self.train_step,
            num_examples=train["image"].shape[0],
            batch_size=exp.config.train.batch_size,
            mesh=exp.mesh,
        )
        self.key, self.data_key = exp.keys["train"], exp.keys["data"]
        self.compiled = None

    def compile(self, state: TrainState) -> float:
        """Compiles the engine for ``state``; returns the seconds it took."""
        t = time.time()
        first = jax.tree.map(lambda a: a[: self.batch_size], self.data)
        self.zeros = zero_metrics(self.train_step, state, first, self.key)
        args = (state, self.data, self.key, self.data_key, jnp.int32(1), self.zeros)
        self.compiled = self.engine.lower(*args).compile()
        return time.time() - t

    def run(self, state: TrainState, n: int, sums=None):
        """The next ``n`` steps; ``sums``: the running metric sums to continue (None: zeros)."""
        sums = self.zeros if sums is None else sums
        return self.compiled(state, self.data, self.key, self.data_key, jnp.int32(n), sums)


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
