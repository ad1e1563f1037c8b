"""uint8 training images (their stored form) on the devices: the step converts each batch to the
very floats of the host's ``x / 255``, so training gives bit for bit the parameters of a float32
training set, on four devices and with seeds stacked, in a quarter of the memory."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxvae import data, engine, evaluate, experiment, sharding
from jaxvae.config import base_config

N_TRAIN, N_VALIDATION, SHAPE, BATCH, STEPS = 64, 16, (8, 8, 1), 16, 4


def test_to_unit_float_is_the_correctly_rounded_quotient_on_host_and_in_xla():
    v = np.arange(256, dtype=np.uint8)
    # float64 carries more than 2 * 24 + 2 bits, so rounding its quotient to float32 rounds once.
    reference = (v / 255.0).astype(np.float32)
    host = data.to_unit_float(v)
    compiled = np.asarray(jax.jit(data.to_unit_float)(v))
    for got in (host, compiled, data.base.UNIT_FLOATS):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), reference.view(np.uint32))
    floats = np.linspace(0, 1, 5, dtype=np.float32)
    assert data.to_unit_float(floats) is floats  # float32 images pass through
    with pytest.raises(ValueError, match="dtype int32; expected uint8"):
        data.to_unit_float(v.astype(np.int32))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One config over a uint8 .npz (dynamic binarization, a validation split), trained from
    its uint8 training split and from the same split as float32, alone and as two seeds."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_TRAIN + N_VALIDATION + 8, *SHAPE), dtype=np.uint8)
    path = str(tmp_path_factory.mktemp("compact") / "d.npz")
    np.savez(path, train_images=images[:-8], test_images=images[-8:])
    config = base_config()
    config.model.architecture, config.model.hidden, config.model.latent_dim = "mlp", (16,), 2
    config.data.name, config.data.data_dir, config.data.binarize = "npz", path, "dynamic"
    config.data.validation_size = N_VALIDATION
    config.train.batch_size = BATCH
    compact = experiment.build(config)
    d = compact.dataset
    floats = experiment.build(
        config, dataset=dataclasses.replace(d, train_images=data.to_unit_float(d.train_images))
    )
    initial, out = jax.device_get(compact.init_state()), {}
    for name, exp in (("uint8", compact), ("float32", floats)):
        feed, replicated = exp.feed(0, STEPS), sharding.replicated(exp.mesh)
        state = jax.device_put(initial, replicated)
        group = jax.device_put(engine.stack([initial] * 2), replicated)
        feed.compile(state)
        one = feed.run(state, STEPS)  # (the state is donated)
        stacked = [experiment.run_keys(s) for s in (0, 1)]
        seeds = engine.DeviceFeed(
            exp.train_step(),
            exp.split("train"),
            engine.stack([k["train"] for k in stacked]),
            engine.stack([k["data"] for k in stacked]),
            batch_size=BATCH,
            mesh=exp.mesh,
            seeds=2,
        )
        seeds.compile(group)
        out[name] = {"feed": feed, "one": one, "seeds": seeds.run(group, STEPS)}
    return images, compact, out


def _bits(tree):
    return [np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(tree)]


def test_uint8_training_split_trains_to_the_float32_bits(runs):
    images, compact, out = runs
    assert len(compact.mesh.devices.flat) == 4  # the batch sharded over four devices
    d = compact.dataset
    # The one preparation keeps the training split uint8 (the file's bytes); the validation
    # split taken off its end and the test split are float32, v / 255.
    assert d.train_images.dtype == np.uint8
    np.testing.assert_array_equal(d.train_images, images[:N_TRAIN])
    assert d.validation_images.dtype == d.test_images.dtype == np.float32
    binary = set(np.unique(d.validation_images).tolist())  # dynamic: binarized once
    assert binary == {0.0, 1.0} and d.protocol["num_validation"] == N_VALIDATION
    # On the devices: uint8, a quarter of float32's bytes.
    nbytes = N_TRAIN * int(np.prod(SHAPE))
    assert out["uint8"]["feed"].data["image"].dtype == np.uint8
    assert out["uint8"]["feed"].data["image"].nbytes == nbytes
    assert out["float32"]["feed"].data["image"].nbytes == 4 * nbytes
    # The same parameters, optimizer state and metric sums, bit for bit: one run and two seeds.
    for kind in ("one", "seeds"):
        (state, sums), (f_state, f_sums) = out["uint8"][kind], out["float32"][kind]
        assert int(np.asarray(state.step).ravel()[0]) == STEPS
        assert _bits((state, sums)) == _bits((f_state, f_sums)), kind
    # The two seeds differ from each other (their keys and data orders are their own).
    params = out["uint8"]["seeds"][0].params
    first = jax.tree.leaves(params)[0]
    assert not np.array_equal(np.asarray(first[0]), np.asarray(first[1]))


def test_a_cpu_device_holds_the_training_split_in_place(runs):
    """The training split is kept 64-byte aligned, so the CPU devices use the host's memory for
    it instead of a second copy (a full dSprites: 3 GB once, not twice)."""
    _, compact, out = runs
    host = compact.dataset.train_images
    assert host.ctypes.data % data.base.ALIGNMENT == 0
    on_devices = out["uint8"]["feed"].data["image"]
    pointers = {s.data.unsafe_buffer_pointer() for s in on_devices.addressable_shards}
    assert pointers == {host.ctypes.data}  # all four devices read the host's array
    # A split given unaligned (a view one byte into a buffer) is copied once, to the boundary.
    images = np.arange(33 * 64).astype(np.uint8).reshape(33, 8, 8, 1)
    raw = np.empty(images.nbytes + 1, np.uint8)
    unaligned = (raw[1:] if raw.ctypes.data % 2 == 0 else raw[:-1]).reshape(images.shape)
    unaligned[...] = images
    assert unaligned.ctypes.data % data.base.ALIGNMENT != 0
    labels, test = np.zeros(33, np.int32), np.zeros((2, 8, 8, 1), np.float32)
    d = data.Dataset("d", unaligned, labels, test, labels[:2])
    assert d.train_images.ctypes.data % data.base.ALIGNMENT == 0
    np.testing.assert_array_equal(d.train_images, images)
    again = data.Dataset("d", d.train_images, labels, test, labels[:2])
    assert again.train_images is d.train_images  # an aligned split is not copied
    put = sharding.put_replicated(d.train_images, compact.mesh)
    assert put.addressable_data(0).unsafe_buffer_pointer() == d.train_images.ctypes.data
    # The dSprites renderer and the ground-truth TFDS reader allocate on the boundary themselves.
    rendered = data.dsprites.render(np.zeros((3, 5), np.int64))
    assert rendered.ctypes.data % data.base.ALIGNMENT == 0


def test_an_8_bit_test_split_evaluates_to_the_float32_figures(runs):
    """Test and validation splits may stay uint8 too (the ground-truth sources keep all three
    so): evaluation turns each batch into ``v / 255`` and gets the float32 split's figures."""
    images, compact, _ = runs
    d, model, key = compact.dataset, compact.model, compact.keys["eval"]
    params, state = model.init(compact.keys["init"])
    eight = dataclasses.replace(d, test_images=images[-8:])
    floats = dataclasses.replace(eight, test_images=data.to_unit_float(images[-8:]))
    assert eight.test_images.dtype == np.uint8
    for fn in (evaluate.evaluate_model, evaluate.evaluate_iwae):
        kw = {"batch_size": 3} | ({"k": 4} if fn is evaluate.evaluate_iwae else {})
        got, want = (fn(model, params, state, x, key, **kw) for x in (eight, floats))
        assert got.keys() == want.keys()
        for name, value in want.items():
            assert np.asarray(got[name]).tobytes() == np.asarray(value).tobytes(), name
    assert evaluate.as_data(images[-8:])["image"].dtype == np.uint8  # not converted in full
    with pytest.raises(ValueError, match="test_images has dtype int32"):
        dataclasses.replace(d, test_images=images[-8:].astype(np.int32))
