"""Training data streamed from a TFDS data source (jaxvae.streaming): a fake prepared ``mnist`` of
2048 28x28x1 PNG images (array_record) in a temporary data directory, streamed with
``data.stream="always"`` (or the threshold lowered to 0): it trains, reads exactly the batches of
the device-resident engine (same params_digest), resumes mid-epoch bit-identically, and two
processes each read their half of every global batch."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxvae
from jaxvae import checkpoint, sharding, streaming
from jaxvae import config as config_lib
from tests import fake_tfds
from tests.conftest import CONFIGS, REPO

pytest.importorskip("grain")

NUM_TRAIN, NUM_TEST = 2048, 256
EXE = os.path.join(os.path.dirname(sys.executable), "jaxvae")


def _images(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of random position and size on a dark background, uint8 [N, 28, 28, 1]."""
    rng = np.random.default_rng({"train": 0, "test": 1}[split])
    n = {"train": NUM_TRAIN, "test": NUM_TEST}[split]
    yy, xx = np.mgrid[:28, :28]
    cy, cx, r = rng.uniform(6, 22, n), rng.uniform(6, 22, n), rng.uniform(3, 8, n)
    d2 = (yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2
    images = (255 * np.exp(-d2 / (2 * r[:, None, None] ** 2))).astype(np.uint8)
    return images[..., None], (np.arange(n) % 10).astype(np.int32)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """A ``mnist`` with TFDS's own version and features, so that ``tfds.builder("mnist",
    data_dir=...)`` finds it prepared (the class is not registered: TFDS has a ``mnist``)."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    fake_tfds.prepare("mnist", data_dir, {s: _images(s) for s in ("train", "test")})
    return data_dir


OVERRIDES = [
    "data.name=mnist",
    "data.binarize=dynamic",
    "train.epochs=2",
    "train.batch_size=128",
    "data.limit_test=256",
    "eval.num_pictures=4",
]


def _config(mnist_dir, *overrides):
    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))
    config_lib.apply_overrides(
        config,
        [*OVERRIDES, f"data.tfds_data_dir={mnist_dir}", "data.limit_train=0", *overrides],
    )
    return config


def _train(mnist_dir, workdir, *overrides):
    return jaxvae.train(_config(mnist_dir, *overrides), str(workdir), stream=io.StringIO())


@pytest.fixture(scope="module")
def streamed_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("streamed"))


@pytest.fixture(scope="module")
def streamed(mnist_dir, streamed_dir):
    """The uninterrupted streamed run (2 epochs of 16 steps, 4 devices)."""
    return _train(mnist_dir, streamed_dir, "data.stream=always")


def test_streamed_run_trains_on_four_devices(streamed, mnist_dir):
    assert np.isfinite(streamed["test_nelbo"]) and streamed["steps"] == 2 * NUM_TRAIN // 128
    assert streamed["devices"] == 4 and streamed["skipped_steps"] == 0
    assert "streamed from the TFDS data source" in streamed["data_protocol"]["train"]
    assert streamed["data_protocol"]["num_train"] == NUM_TRAIN


def test_streamed_run_reads_the_device_resident_batches(streamed, mnist_dir, tmp_path):
    """Same order as the engine that holds the data on the device, so the same parameters."""
    resident = _train(mnist_dir, tmp_path, "data.stream=never")
    assert "streamed" not in resident["data_protocol"]["train"]
    assert resident["params_digest"] == streamed["params_digest"]
    assert resident["test_nelbo"] == streamed["test_nelbo"]


def test_auto_streams_above_the_threshold_and_is_deterministic(streamed, mnist_dir, tmp_path):
    again = _train(mnist_dir, tmp_path, "data.stream=auto", "data.stream_threshold_mb=0")
    assert "streamed" in again["data_protocol"]["train"]
    assert again["params_digest"] == streamed["params_digest"]
    config = _config(mnist_dir, "data.stream=auto")  # 6 MiB, under the default 2048
    assert streaming.open_train_source(config_lib.validate(config).data, config.seed) is None


def test_resume_mid_epoch_is_bit_identical(streamed, mnist_dir, tmp_path):
    """Epoch 1 alone, then continued to 2; and a continuation from step 10 (mid-epoch)."""
    args = ("data.stream=always", "data.stream_workers=3")
    _train(mnist_dir, tmp_path / "a", *args, "train.epochs=1")
    resumed = _train(mnist_dir, tmp_path / "a", *args)
    assert resumed["resumed_from_step"] == 16
    assert resumed["params_digest"] == streamed["params_digest"]

    every = "train.checkpoint_every_steps=5"
    _train(mnist_dir, tmp_path / "b", *args, every, "train.epochs=1")
    assert checkpoint.steps(str(tmp_path / "b"))[-3:] == [10, 15, 16]
    for step in (15, 16):  # as if killed just after step 10's checkpoint
        shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(str(tmp_path / "b")), str(step)))
    resumed = _train(mnist_dir, tmp_path / "b", *args, every)
    assert resumed["resumed_from_step"] == 10
    assert resumed["params_digest"] == streamed["params_digest"]


def test_step_indices_are_the_epoch_permutation_in_batches():
    order = np.random.default_rng(0).permutation(20)
    got = [streaming.step_indices(order, s, per_epoch=2, batch_size=8) for s in range(4)]
    np.testing.assert_array_equal(got[0], order[:8])
    np.testing.assert_array_equal(got[1], order[8:16])
    np.testing.assert_array_equal(got[2], order[:8])  # epoch 1 restarts (its own order)


def test_one_process_holds_every_row(one_device_mesh):
    import jax

    from jaxvae import sharding

    assert streaming.local_rows(sharding.make_mesh(), 128) == slice(0, 128)
    assert streaming.local_rows(one_device_mesh, 128) == slice(0, 128)
    assert len(jax.devices()) == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_each_read_half_of_every_batch(mnist_dir, tmp_path):
    """Two processes of one device each: each reads the rows its device holds (the first or
    second half of each global batch) and the pair ends with the parameters of one process
    over two devices reading whole batches."""
    overrides = ("data.stream=always", "train.epochs=1")
    one = jaxvae.train(
        _config(mnist_dir, *overrides),
        str(tmp_path / "one"),
        mesh=sharding.make_mesh(jax.devices()[:2]),
        stream=io.StringIO(),
    )
    args = [
        "train",
        "--config",
        os.path.join(CONFIGS, "smoke.py"),
        *(f"--config.{o}" for o in OVERRIDES),
        f"--config.data.tfds_data_dir={mnist_dir}",
        "--config.data.limit_train=0",
        *(f"--config.{o}" for o in overrides),
        "--workdir",
        str(tmp_path / "two"),
        "--coordinator-address",
        f"localhost:{_free_port()}",
        "--num-processes",
        "2",
    ]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [
        subprocess.Popen(
            [EXE, *args, "--process-id", str(i)],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    with open(os.path.join(tmp_path, "two", "summary.json")) as f:
        two = json.load(f)
    assert one["devices"] == two["devices"] == 2 and two["processes"] == 2
    assert "streamed from the TFDS data source" in two["data_protocol"]["train"]
    assert two["params_digest"] == one["params_digest"]


def test_stream_always_needs_a_tfds_source(tmp_path):
    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))
    config_lib.apply_overrides(config, ["data.stream=always"])  # fashion_mnist from IDX files
    with pytest.raises(ValueError, match="data.stream='always' needs a TFDS data source"):
        config_lib.validate(config)
    config_lib.apply_overrides(config, ["data.name=npz", f"data.data_dir={tmp_path}/x.npz"])
    with pytest.raises(ValueError, match="data.stream='always'"):
        jaxvae.train(config, str(tmp_path / "w"), stream=io.StringIO())
    config_lib.apply_overrides(config, ["data.stream=sometimes"])
    with pytest.raises(ValueError, match="data.stream='sometimes'"):
        config_lib.validate(config)


def test_static_binarization_is_refused_when_streaming(mnist_dir, tmp_path):
    config = _config(mnist_dir, "data.stream=always", "data.binarize=static")
    with pytest.raises(ValueError, match="binarize='static'"):
        streaming.open_train_source(config_lib.validate(config).data, config.seed)


def test_eval_of_a_streamed_run_reads_only_the_test_split(
    streamed, streamed_dir, monkeypatch, capsys
):
    from jaxvae import cli
    from jaxvae.data import tfds as tfds_lib

    workdir, summary = streamed_dir, streamed
    read = tfds_lib.read_data_source

    def test_split_only(source, limit=0, has_labels=True):
        if len(source) == NUM_TRAIN:
            raise AssertionError("read the training split")
        return read(source, limit, has_labels)

    monkeypatch.setattr(tfds_lib, "read_data_source", test_split_only)
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", workdir, "--iwae-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    # the same binarized test images, state and eval key as the run's own figure
    assert result["test_nelbo"] == pytest.approx(summary["test_nelbo"], rel=1e-6)
    assert result["data_protocol"]["num_test"] == NUM_TEST
