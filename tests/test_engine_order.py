"""The order in which the training engine visits the examples, over several epochs.

Each epoch must visit a new permutation of the examples, and the order must be a function of the
data key (the seed) and the epoch alone: not of where a run started, how its steps were split into
dispatches, or how many devices ran it. (A run resumed from a checkpoint depends on that.)
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxvae
from jaxvae import sharding

N, BATCH = 48, 8
PER_EPOCH = N // BATCH


ROWS = 5 * PER_EPOCH  # the most steps any test records: one buffer shape, one compilation


def _record(state, batch, key):
    """A train step that writes its batch into row ``state.step`` of the "parameters"."""
    del key
    params = jax.lax.dynamic_update_slice(state.params, batch["image"][None, :, 0], (state.step, 0))
    return state._replace(step=state.step + 1, params=params), {"loss": jnp.float32(0)}


@functools.cache
def _engine(num_examples, devices):
    mesh = sharding.make_mesh(jax.devices()[:devices])
    engine = jaxvae.make_engine(_record, num_examples=num_examples, batch_size=BATCH, mesh=mesh)
    images = {
        "image": sharding.put_replicated(np.arange(num_examples, dtype=np.float32)[:, None], mesh)
    }
    return engine, images, sharding.replicated(mesh)


def _visited(data_key, *, steps, start=0, chunks=None, devices=1, num_examples=N):
    """The example indices the engine gathers at steps ``start .. start + steps - 1``, [steps, BATCH].

    The one place that reaches into the engine: its images are the example indices themselves, and
    its train step records each batch.
    """
    engine, images, replicated = _engine(num_examples, devices)
    buffer = jax.device_put(jnp.full((ROWS, BATCH), -1.0), replicated)
    state = jaxvae.TrainState(jnp.int32(start), buffer, {}, (), jnp.int32(0))
    step = start
    for n in chunks or [steps]:
        # the engine runs within one epoch per dispatch
        assert step // PER_EPOCH == (step + n - 1) // PER_EPOCH
        zeros = {"loss": np.float32(0)}
        state, _ = engine(state, (images, data_key), jax.random.key(0), jnp.int32(n), zeros)
        step += n
    assert int(state.step) == start + steps
    return np.asarray(state.params[start : start + steps]).astype(int)


def _epochs(data_key, num_epochs=3, **kw):
    """[epoch, N] visiting orders, one epoch per dispatch."""
    steps = num_epochs * PER_EPOCH
    return _visited(data_key, steps=steps, chunks=[PER_EPOCH] * num_epochs, **kw).reshape(
        num_epochs, N
    )


def test_each_epoch_is_a_new_permutation():
    orders = _epochs(jax.random.key(1), num_epochs=4)
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(N))  # every example once
    for a in range(4):
        for b in range(a + 1, 4):
            assert (orders[a] != orders[b]).mean() > 0.5, (a, b)
    # not the identity either: the data is shuffled
    assert (orders[0] != np.arange(N)).mean() > 0.5


def test_order_depends_on_the_seed():
    a, b = _epochs(jax.random.key(1), 2), _epochs(jax.random.key(2), 2)
    assert (a != b).mean() > 0.5
    np.testing.assert_array_equal(a, _epochs(jax.random.key(1), 2))


def test_an_epoch_started_on_its_own_has_the_same_order():
    """Epoch 2 run from a fresh state at its first step, as after a resume at an epoch end."""
    key = jax.random.key(7)
    whole = _epochs(key, 3)
    alone = _visited(key, steps=PER_EPOCH, start=2 * PER_EPOCH).reshape(N)
    np.testing.assert_array_equal(alone, whole[2])


def test_a_resume_in_the_middle_of_an_epoch_continues_its_order():
    key = jax.random.key(7)
    whole = _epochs(key, 3).reshape(-1, BATCH)
    start = PER_EPOCH + 2  # epoch 1, step 2
    tail = _visited(key, steps=2 * PER_EPOCH - 2, start=start, chunks=[PER_EPOCH - 2, PER_EPOCH])
    np.testing.assert_array_equal(tail, whole[start:])


def test_dispatch_sizes_and_devices_do_not_change_the_order():
    key = jax.random.key(3)
    whole = _epochs(key, 2).reshape(-1, BATCH)
    split = _visited(key, steps=2 * PER_EPOCH, chunks=[1, 2, PER_EPOCH - 3, PER_EPOCH])
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_array_equal(_epochs(key, 2, devices=4).reshape(-1, BATCH), whole)


def test_partial_last_batch_is_dropped_and_differs_between_epochs():
    """50 examples in batches of 8: 6 steps use 48 distinct examples, a different 2 left out."""
    orders = _visited(
        jax.random.key(5), steps=4 * PER_EPOCH, chunks=[PER_EPOCH] * 4, num_examples=50
    )
    left_out = []
    for order in orders.reshape(4, N):
        assert len(set(order)) == N and set(order) <= set(range(50))
        left_out.append(frozenset(range(50)) - set(order))
    assert len(set(left_out)) > 1
