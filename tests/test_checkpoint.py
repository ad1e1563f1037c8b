"""Orbax checkpoints: round trip, fallback from a corrupt newest checkpoint, re-sharding."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxvae
from jaxvae import checkpoint, layout, models, sharding
from jaxvae import engine as train_lib

SPEC = dict(architecture="mlp", hidden=(16,), latent_dim=3)


def _state_and_abstract(mesh):
    model = models.get("vae")(**SPEC)
    tx = optax.adam(1e-3)
    init = jax.jit(
        lambda k: train_lib.init_state(model, tx, k), out_shardings=sharding.replicated(mesh)
    )
    return init, train_lib.abstract_state(model, tx, mesh)


def _save(workdir, states, keep=5):
    manager = checkpoint.make_manager(str(workdir), keep=keep)
    for step, state in states:
        checkpoint.save(manager, step, state)
    manager.wait_until_finished()
    manager.close()


def test_round_trip(tmp_path, one_device_mesh):
    init, abstract = _state_and_abstract(one_device_mesh)
    state = init(jax.random.key(0))._replace(step=jnp.int32(7))
    _save(tmp_path, [(7, state)])
    restored, step = checkpoint.restore_newest(str(tmp_path), abstract)
    assert step == 7 and int(restored.step) == 7
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))


def test_no_checkpoint_returns_none(tmp_path, one_device_mesh):
    _, abstract = _state_and_abstract(one_device_mesh)
    assert checkpoint.restore_newest(str(tmp_path), abstract) is None


def _corrupt(step_dir):
    """Overwrites every array data file of a checkpoint with garbage."""
    n = 0
    for root, _, files in os.walk(step_dir):
        for f in files:
            path = os.path.join(root, f)
            if os.path.getsize(path) > 0:
                with open(path, "wb") as fh:
                    fh.write(b"\x00garbage")
                n += 1
    assert n > 0


def test_corrupt_newest_falls_back_and_keeps_everything(tmp_path, one_device_mesh):
    init, abstract = _state_and_abstract(one_device_mesh)
    s1 = init(jax.random.key(1))._replace(step=jnp.int32(1))
    s2 = init(jax.random.key(2))._replace(step=jnp.int32(2))
    _save(tmp_path, [(1, s1), (2, s2)])
    _corrupt(tmp_path / "checkpoints" / "2")
    warnings = []
    restored, step = checkpoint.restore_newest(str(tmp_path), abstract, warn=warnings.append)
    assert step == 1
    chex.assert_trees_all_equal(jax.device_get(restored.params), jax.device_get(s1.params))
    assert len(warnings) == 1 and "step 2" in warnings[0]
    assert os.path.isdir(tmp_path / "checkpoints" / "1")  # the earlier one is untouched
    moved = os.listdir(tmp_path / layout.CORRUPT)
    assert len(moved) == 1 and moved[0].startswith("2-")  # the corrupt one is kept aside
    assert checkpoint.steps(str(tmp_path)) == [1]


def test_all_corrupt_is_an_error(tmp_path, one_device_mesh):
    init, abstract = _state_and_abstract(one_device_mesh)
    _save(tmp_path, [(3, init(jax.random.key(0)))])
    _corrupt(tmp_path / "checkpoints" / "3")
    with pytest.raises(ValueError, match="no readable checkpoint"):
        checkpoint.restore_newest(str(tmp_path), abstract, quarantine=False, warn=lambda m: None)
    assert checkpoint.steps(str(tmp_path)) == [3]  # without quarantine nothing moves


def test_saved_on_four_devices_restores_on_one_and_back(tmp_path):
    mesh4 = sharding.make_mesh(jax.devices()[:4])
    mesh1 = sharding.make_mesh(jax.devices()[:1])
    init4, _ = _state_and_abstract(mesh4)
    state = init4(jax.random.key(5))
    _save(tmp_path / "a", [(10, state)])
    _, abstract1 = _state_and_abstract(mesh1)
    restored1, _ = checkpoint.restore_newest(str(tmp_path / "a"), abstract1)
    leaf = jax.tree_util.tree_leaves(restored1.params)[0]
    assert len(leaf.sharding.device_set) == 1
    _save(tmp_path / "b", [(10, restored1)])
    _, abstract4 = _state_and_abstract(mesh4)
    restored4, _ = checkpoint.restore_newest(str(tmp_path / "b"), abstract4)
    leaf = jax.tree_util.tree_leaves(restored4.params)[0]
    assert len(leaf.sharding.device_set) == 4
    chex.assert_trees_all_equal(
        jax.tree.map(np.asarray, jax.device_get(restored4)),
        jax.tree.map(np.asarray, jax.device_get(state)),
    )


def test_save_due_policy():
    due = lambda step, every=0, interval=30.0, since=5.0: checkpoint.save_due(
        step,
        total=40,
        per_epoch=10,
        every_steps=every,
        min_interval_s=interval,
        seconds_since_save=since,
    )
    assert due(40) and due(40, every=7)  # the last step always saves
    assert due(10, since=None)  # the first epoch end of a run with no checkpoint yet
    assert not due(10) and due(10, since=30.0)  # afterwards, no sooner than the interval
    assert due(20, interval=0.0)  # interval 0: every epoch
    assert not due(15, since=None) and not due(15, interval=0.0)  # never mid-epoch by default
    assert due(14, every=7) and not due(10, every=7, since=None)  # every N steps, exactly


@pytest.mark.parametrize("interval, expected", [(1e6, ["32", "8"]), (0.0, ["16", "24", "32"])])
def test_checkpoints_of_a_run_follow_the_interval(tmp_path, interval, expected):
    from jaxvae import config as config_lib

    config = config_lib.load_config_file(
        os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "smoke.py")
    )
    config.train.epochs = 4  # 8 steps per epoch
    config.train.checkpoint_min_interval_s = interval
    jaxvae.train(config, str(tmp_path / "run"))
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == expected
