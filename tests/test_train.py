"""The train step and the device-resident engine (jaxvae.engine), and the optimizer."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae import engine as train_lib
from jaxvae import experiment, models, sharding
from jaxvae.objectives import ObjectiveSpec
from jaxvae.specs import OptimizerSpec

SPEC = dict(architecture="mlp", hidden=(32,), latent_dim=4)


def _setup(spec=SPEC, lr=1e-3):
    model = models.get("vae")(**spec)
    tx = optax.adam(lr)
    step = train_lib.make_train_step(model, ObjectiveSpec(), tx)
    state = train_lib.init_state(model, tx, jax.random.key(0))
    return model, tx, step, state


def _images(n=64, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, 28, 28, 1))


def _batch(x):
    return {"image": x, "label": jnp.zeros((x.shape[0],), jnp.int32)}


def test_second_step_does_not_recompile():
    _, _, step, state = _setup()
    traced = chex.assert_max_traces(step, n=1)
    jitted = jax.jit(traced, donate_argnums=0)
    key = jax.random.key(1)
    x = _images(16)
    state, m1 = jitted(state, _batch(x), key)
    state, m2 = jitted(state, _batch(x + 0.0), key)
    assert int(state.step) == 2
    assert float(m1["loss"]) != float(m2["loss"])


def test_nonfinite_update_is_skipped_and_counted():
    _, _, step, state = _setup()
    x = _images(8).at[0, 0, 0, 0].set(jnp.nan)
    before = jax.tree.map(np.asarray, state.params)
    new, metrics = jax.jit(step)(state, _batch(x), jax.random.key(0))
    assert int(new.step) == 1 and int(new.skipped) == 1
    assert float(metrics["skipped"]) == 1.0
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, new.params), before)
    new2, metrics2 = jax.jit(step)(new, _batch(_images(8)), jax.random.key(0))
    assert int(new2.skipped) == 1 and float(metrics2["skipped"]) == 0.0
    chex.assert_tree_all_finite(new2.params)


def test_engine_matches_a_python_loop_of_steps(one_device_mesh):
    """The engine's gathered batches and per-step keys equal an explicit loop over the permutation."""
    _, _, step, state = _setup()
    images = _batch(_images(96))
    batch, n = 16, 96
    engine = train_lib.make_engine(step, num_examples=n, batch_size=batch, mesh=one_device_mesh)
    key, data_key = jax.random.key(1), jax.random.key(2)
    ref = state
    order = np.asarray(train_lib.epoch_permutation(data_key, 0, n))
    jstep = jax.jit(step)
    for i in range(4):
        idx = order[i * batch : (i + 1) * batch]
        ref, _ = jstep(ref, jax.tree.map(lambda a, idx=idx: a[idx], images), key)
    copy = jax.tree.map(jnp.copy, state)
    zeros = train_lib.zero_metrics(step, state, jax.tree.map(lambda a: a[:batch], images), key)
    out, sums = engine(copy, (images, data_key), key, jnp.int32(4), zeros)
    assert int(out.step) == 4
    chex.assert_trees_all_close(out.params, ref.params, rtol=1e-5, atol=1e-6)
    assert np.isfinite(float(sums["loss"]))


def test_chunking_does_not_change_the_result(one_device_mesh):
    """4+2 steps and 6 steps in one dispatch give the same bits (one compiled program)."""
    _, _, step, state = _setup()
    images = _batch(_images(96))
    engine = train_lib.make_engine(step, num_examples=96, batch_size=16, mesh=one_device_mesh)
    key, data_key = jax.random.key(1), jax.random.key(2)
    zeros = train_lib.zero_metrics(step, state, jax.tree.map(lambda a: a[:16], images), key)
    a, sums_a = engine(jax.tree.map(jnp.copy, state), (images, data_key), key, jnp.int32(6), zeros)
    b, sums_b = engine(jax.tree.map(jnp.copy, state), (images, data_key), key, jnp.int32(4), zeros)
    b, sums_b = engine(b, (images, data_key), key, jnp.int32(2), sums_b)
    # the running metric sums carried over the split add in the same order: the same bits
    chex.assert_trees_all_equal(jax.device_get(sums_a), jax.device_get(sums_b))
    chex.assert_trees_all_equal(a.params, b.params)


def test_epoch_permutation_visits_every_example_once_and_changes():
    key = jax.random.key(3)
    p0 = np.asarray(train_lib.epoch_permutation(key, 0, 1000))
    p1 = np.asarray(train_lib.epoch_permutation(key, 1, 1000))
    np.testing.assert_array_equal(np.sort(p0), np.arange(1000))
    assert (p0 != p1).mean() > 0.9
    np.testing.assert_array_equal(p0, np.asarray(train_lib.epoch_permutation(key, 0, 1000)))


def test_next_boundary():
    nb = train_lib.next_boundary
    assert nb(0, per_epoch=468, total=4680, intervals=(0, 0, 0)) == 468
    assert nb(0, per_epoch=468, total=4680, intervals=(200, 0, 0)) == 200
    assert nb(400, per_epoch=468, total=4680, intervals=(200, 0, 0)) == 468
    assert nb(468, per_epoch=468, total=4680, intervals=(200, 0, 0)) == 600
    assert nb(4600, per_epoch=468, total=4650, intervals=(0, 0, 0)) == 4650
    assert nb(10, per_epoch=468, total=4680, intervals=(200, 50, 0)) == 50


def test_batch_must_divide_over_devices():
    mesh = sharding.make_mesh(jax.devices()[:4])
    _, _, step, _ = _setup()
    with pytest.raises(ValueError, match="batch size 6 does not divide by the 4 devices"):
        train_lib.make_engine(step, num_examples=96, batch_size=6, mesh=mesh)


def test_batch_larger_than_dataset_is_refused(one_device_mesh):
    _, _, step, _ = _setup()
    with pytest.raises(ValueError, match="larger than the 10 training examples"):
        train_lib.make_engine(step, num_examples=10, batch_size=16, mesh=one_device_mesh)


def test_loss_falls_on_fashion_mnist(fashion_mnist, one_device_mesh):
    spec = dict(architecture="mlp", hidden=(200,), latent_dim=10)
    _, _, step, state = _setup(spec)
    images = {
        "image": jnp.asarray(fashion_mnist.train_images[:12800]),
        "label": jnp.asarray(fashion_mnist.train_labels[:12800]),
    }
    engine = train_lib.make_engine(step, num_examples=12800, batch_size=128, mesh=one_device_mesh)
    key, data_key = jax.random.key(0), jax.random.key(1)
    zeros = train_lib.zero_metrics(step, state, jax.tree.map(lambda a: a[:128], images), key)
    state, first = engine(state, (images, data_key), key, jnp.int32(10), zeros)
    state, _ = engine(state, (images, data_key), key, jnp.int32(80), zeros)
    state, last = engine(state, (images, data_key), key, jnp.int32(10), zeros)
    first_loss, last_loss = float(first["loss"]) / 10, float(last["loss"]) / 10
    assert last_loss < first_loss - 100, (first_loss, last_loss)
    assert last_loss < 320


def test_optimizer_from_its_spec():
    tx = experiment.make_optimizer(OptimizerSpec(learning_rate=0.1, optimizer="sgd", grad_clip=1.0))
    params = {"w": jnp.ones(3)}
    updates, _ = tx.update({"w": jnp.full(3, 100.0)}, tx.init(params), params)
    # clipped to global norm 1, then SGD with lr 0.1
    np.testing.assert_allclose(np.linalg.norm(updates["w"]), 0.1, rtol=1e-5)
    # Adam has no decoupled weight decay: asking for one is refused, AdamW has it.
    with pytest.raises(ValueError, match="weight_decay=0.01 needs train.optimizer='adamw'"):
        OptimizerSpec(optimizer="adam", weight_decay=0.01)
    experiment.make_optimizer(OptimizerSpec(optimizer="adamw", weight_decay=0.01))


def test_all_finite_is_exact():
    big = jnp.full((1000,), 3e38, jnp.float32)  # a plain sum of these would overflow to inf
    assert bool(train_lib.all_finite({"a": big, "b": -big}, jnp.float32(1.0)))
    for bad in (jnp.inf, -jnp.inf, jnp.nan):
        tree = {"a": big, "b": jnp.zeros((3, 4)).at[2, 1].set(bad)}
        assert not bool(jax.jit(train_lib.all_finite)(tree))
    assert not bool(train_lib.all_finite({"a": jnp.ones(3)}, jnp.float32(jnp.nan)))
    # Matrices (reduced by a product with zeros): every position of every shape, each bad value.
    rng = np.random.default_rng(0)
    shapes = [(7, 5), (1, 6), (6, 1), (2, 3, 4, 5)]
    leaves = [jnp.asarray(rng.uniform(-3e38, 3e38, size=s), jnp.float32) for s in shapes]
    check = jax.jit(train_lib.all_finite)
    assert bool(check(leaves))
    for i, shape in enumerate(shapes):
        for flat in range(int(np.prod(shape))):
            for bad in (np.inf, -np.inf, np.nan):
                a = np.array(leaves[i])
                a[np.unravel_index(flat, shape)] = bad
                assert not bool(check([*leaves[:i], jnp.asarray(a), *leaves[i + 1 :]]))


def test_learning_rate_schedules_against_closed_forms():
    c = OptimizerSpec(learning_rate=1e-3)
    per_epoch, total = 7, 70  # 10 epochs
    for kind, expected in (
        ("constant", lambda s: 1e-3),
        ("cosine", lambda s: 1e-3 * 0.5 * (1 + np.cos(np.pi * min(s, 70) / 70))),
        ("exponential", lambda s: 1e-3 * 0.99 ** (s / per_epoch)),
    ):
        sched = experiment.learning_rate(dataclasses.replace(c, lr_schedule=kind), per_epoch, total)
        for s in (0, 3, 7, 35, 69, 70, 100):
            got = sched if isinstance(sched, float) else float(sched(s))
            np.testing.assert_allclose(
                got, expected(s), rtol=1e-5, atol=1e-10, err_msg=f"{kind} at {s}"
            )
    # The IWAE paper: 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7, 3280 epochs in all.
    sched = experiment.learning_rate(dataclasses.replace(c, lr_schedule="iwae"), per_epoch, total)
    epoch, stage_starts = 0, []
    for i in range(8):
        stage_starts.append((epoch, i))
        epoch += 3**i
    assert epoch == 3280
    for start, i in stage_starts:
        for e in (start, start + 3**i - 1):
            np.testing.assert_allclose(
                float(sched(e * per_epoch)), 1e-3 * 10 ** (-i / 7), rtol=1e-5
            )
    np.testing.assert_allclose(float(sched(5000 * per_epoch)), 1e-3 * 10 ** (-1), rtol=1e-5)


def test_adam_epsilon_reaches_the_optimizer():
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 1e-6)}
    updates = {}
    for eps in (1e-8, 1e-4):
        tx = experiment.make_optimizer(OptimizerSpec(adam_eps=eps))
        u, _ = tx.update(grads, tx.init(params), params)
        updates[eps] = float(u["w"][0])
    # First Adam step: -lr * g / (|g| + eps) with bias-corrected moments.
    np.testing.assert_allclose(updates[1e-8], -1e-3 * 1e-6 / (1e-6 + 1e-8), rtol=1e-4)
    np.testing.assert_allclose(updates[1e-4], -1e-3 * 1e-6 / (1e-6 + 1e-4), rtol=1e-4)
