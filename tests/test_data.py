"""Tests for jaxvae.data (and jaxvae.data.tfds_fashion_mnist, jaxvae.corruptions)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import socket

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxvae import data
from jaxvae.data import tfds_fashion_mnist
from tests import fake_tfds

FASHION_DIR = data.DEFAULT_FASHION_MNIST_DIR


# --------------------------------------------------------------------------------------------
# Fixtures and helpers.
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def fashion_idx() -> data.Dataset:
    return data.load_dataset("fashion_mnist", data_dir=FASHION_DIR, source="idx")


@pytest.fixture(scope="session")
def fashion_tfds_dir(tmp_path_factory) -> str:
    tfds_dir = str(tmp_path_factory.mktemp("tfds_fashion"))
    tfds_fashion_mnist.prepare(idx_dir=FASHION_DIR, tfds_data_dir=tfds_dir)
    return tfds_dir


@pytest.fixture
def offline(monkeypatch):
    """Fails the test if anything prepares or downloads a TFDS dataset, or opens a connection."""

    def prepare(*args, **kwargs):
        raise AssertionError("a TFDS dataset was prepared or downloaded")

    def connect(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", prepare)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", connect)


def _files(root):
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


class _CountingSource:
    """A data source that counts the records read from it."""

    def __init__(self, source):
        self.source, self.read = source, 0

    def __len__(self):
        return len(self.source)

    def __getitem__(self, key):
        self.read += 1
        return self.source[key]

    def __getitems__(self, keys):
        self.read += len(keys)
        return self.source.__getitems__(keys)


def _raw_idx(filename: str) -> bytes:
    with gzip.open(os.path.join(FASHION_DIR, filename), "rb") as f:
        return f.read()


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


# --------------------------------------------------------------------------------------------
# Fashion-MNIST from IDX files.
# --------------------------------------------------------------------------------------------


def test_fashion_mnist_idx_shapes_range_and_counts(fashion_idx):
    ds = fashion_idx
    assert ds.name == "fashion_mnist"
    assert ds.train_images.shape == (60000, 28, 28, 1)
    assert ds.test_images.shape == (10000, 28, 28, 1)
    # The training images stay uint8 (their stored form); the test images are float32.
    assert ds.train_images.dtype == np.uint8 and ds.test_images.dtype == np.float32
    assert ds.train_labels.dtype == np.int32 and ds.test_labels.dtype == np.int32
    assert ds.train_images.min() == 0 and ds.train_images.max() == 255
    assert ds.test_images.min() == 0.0 and ds.test_images.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.train_labels), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.test_labels), np.full(10, 1000))
    assert ds.image_shape == (28, 28, 1)
    assert ds.num_classes == 10
    assert ds.class_names[9] == "Ankle boot"


def test_fashion_mnist_idx_matches_raw_bytes(fashion_idx):
    raw = _raw_idx("train-images-idx3-ubyte.gz")
    pixels = np.frombuffer(raw, np.uint8, offset=16)
    expected_mean = pixels.astype(np.float64).sum() / (pixels.size * 255.0)
    # The training images are the file's bytes, pixel for pixel (uint8, their stored form).
    np.testing.assert_array_equal(fashion_idx.train_images.reshape(-1), pixels)
    # Published statistic of the Fashion-MNIST training set.
    assert expected_mean == pytest.approx(0.2860, abs=1e-4)
    # The first labels of both splits.
    labels = np.frombuffer(_raw_idx("t10k-labels-idx1-ubyte.gz"), np.uint8, offset=8)
    np.testing.assert_array_equal(fashion_idx.test_labels, labels)
    assert fashion_idx.train_labels[0] == 9  # The first training image is an ankle boot.


def test_fashion_mnist_uncompressed_files_and_env_var(tmp_path, monkeypatch, fashion_idx):
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(_raw_idx(stem + ".gz"))
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        os.symlink(os.path.join(FASHION_DIR, stem + ".gz"), tmp_path / (stem + ".gz"))
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path))
    ds = data.load_dataset("fashion_mnist", limit_train=50)
    np.testing.assert_array_equal(ds.test_images, fashion_idx.test_images)
    np.testing.assert_array_equal(ds.train_labels, fashion_idx.train_labels[:50])


def test_fashion_mnist_missing_directory_names_paths(tmp_path, monkeypatch):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ValueError) as err:
        data.load_dataset("fashion_mnist", data_dir=missing)
    message = str(err.value)
    assert missing in message and "data_dir" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert data.FASHION_MNIST_ENV in message

    monkeypatch.setenv(data.FASHION_MNIST_ENV, missing)
    with pytest.raises(ValueError, match=f"{data.FASHION_MNIST_ENV} environment variable"):
        data.load_dataset("fashion_mnist")


def test_fashion_mnist_missing_files_lists_tried_paths(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in message
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in message
    assert "apt-get install dataset-fashion-mnist" in message


def _dir_with_bad_train_images(tmp_path, name: str, content: bytes) -> str:
    (tmp_path / name).write_bytes(content)
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        os.symlink(os.path.join(FASHION_DIR, stem + ".gz"), tmp_path / (stem + ".gz"))
    return str(tmp_path)


def test_fashion_mnist_truncated_gzip_raises(tmp_path):
    with open(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"), "rb") as f:
        head = f.read(5000)
    directory = _dir_with_bad_train_images(tmp_path, "train-images-idx3-ubyte.gz", head)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        data.load_dataset("fashion_mnist", data_dir=directory)


def test_fashion_mnist_truncated_idx_raises(tmp_path):
    content = _raw_idx("train-images-idx3-ubyte.gz")[:-100]
    directory = _dir_with_bad_train_images(tmp_path, "train-images-idx3-ubyte", content)
    with pytest.raises(ValueError, match="truncated"):
        data.load_dataset("fashion_mnist", data_dir=directory)


def test_fashion_mnist_wrong_shape_raises(tmp_path):
    content = _idx_bytes(np.zeros((5, 28, 28), np.uint8))
    directory = _dir_with_bad_train_images(tmp_path, "train-images-idx3-ubyte", content)
    with pytest.raises(ValueError, match=r"\(60000, 28, 28\)"):
        data.load_dataset("fashion_mnist", data_dir=directory)


def test_parse_idx_round_trip_and_errors():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(data.parse_idx(_idx_bytes(array)), array)
    good = _idx_bytes(array)
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="type code 0x0d"):
        data.parse_idx(good[:2] + b"\x0d" + good[3:])
    with pytest.raises(ValueError, match="truncated"):
        data.parse_idx(good[:-1])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.parse_idx(good + b"\x00")
    with pytest.raises(ValueError, match="header"):
        data.parse_idx(good[:9])


# --------------------------------------------------------------------------------------------
# Fashion-MNIST through the TFDS data source.
# --------------------------------------------------------------------------------------------


def test_fashion_mnist_tfds_equals_idx(fashion_idx, fashion_tfds_dir):
    ds = data.load_dataset("fashion_mnist", source="tfds", tfds_data_dir=fashion_tfds_dir)
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        expected, actual = getattr(fashion_idx, field), getattr(ds, field)
        assert actual.dtype == expected.dtype
        np.testing.assert_array_equal(actual, expected)
    assert ds.class_names == fashion_idx.class_names


def test_fashion_mnist_tfds_reuses_prepared_copy(
    fashion_idx, fashion_tfds_dir, tmp_path, offline, monkeypatch
):
    # Already prepared: the IDX directory is not needed any more, nothing is prepared again, and
    # only the records asked for are read (random access, not the whole split).
    sources = []
    as_data_source = tfds_fashion_mnist.JaxvaeFashionMnist.as_data_source

    def counting(self, *args, **kwargs):
        sources.extend(_CountingSource(s) for s in as_data_source(self, *args, **kwargs))
        return sources

    monkeypatch.setattr(tfds_fashion_mnist.JaxvaeFashionMnist, "as_data_source", counting)
    before = {p: os.stat(p).st_mtime_ns for p in _files(fashion_tfds_dir)}
    ds = data.load_dataset(
        "fashion_mnist",
        data_dir=str(tmp_path / "no_idx_here"),
        source="tfds",
        tfds_data_dir=fashion_tfds_dir,
        limit_train=7,
        limit_test=3,
    )
    assert [s.read for s in sources] == [7, 3]
    assert {p: os.stat(p).st_mtime_ns for p in _files(fashion_tfds_dir)} == before
    monkeypatch.undo()  # TFDS's own reader below, as it is
    assert len(ds.train_images) == 7 and len(ds.test_images) == 3
    np.testing.assert_array_equal(ds.test_images, fashion_idx.test_images[:3])
    np.testing.assert_array_equal(ds.train_labels, fashion_idx.train_labels[:7])
    # Importing the module registered the builder, so TFDS's own reader finds it by name.
    source = tfds.data_source(
        tfds_fashion_mnist.BUILDER_NAME, split="test", data_dir=fashion_tfds_dir, download=False
    )
    assert len(source) == 10000
    assert int(source[4]["label"]) == fashion_idx.test_labels[4]


def test_fashion_mnist_tfds_unprepared_without_idx_fails_fast(tmp_path, offline):
    # the missing files are reported before TFDS starts preparing
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset(
            "fashion_mnist",
            data_dir=str(tmp_path / "missing"),
            source="tfds",
            tfds_data_dir=str(tmp_path / "tfds"),
        )
    assert not (tmp_path / "tfds" / tfds_fashion_mnist.BUILDER_NAME / "1.0.0").exists()


def test_fashion_mnist_tfds_unwritable_dir_raises(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="writable TFDS data directory"):
        data.load_dataset(
            "fashion_mnist", source="tfds", tfds_data_dir=str(blocker / "tfds"), limit_train=1
        )


# --------------------------------------------------------------------------------------------
# Stock TFDS datasets (with tiny fake prepared copies; nothing is downloaded).
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "binarized_mnist", "cifar10"])
def test_tfds_dataset_reads_prepared_data(name, tmp_path):
    arrays = fake_tfds.prepare_random(name, str(tmp_path))
    ds = data.load_dataset(name, tfds_data_dir=str(tmp_path), source="tfds")
    assert ds.name == name
    assert ds.image_shape == fake_tfds.SPECS[name]["shape"]
    for split in ("train", "test"):
        images, labels = arrays[split]
        actual_images = data.to_unit_float(getattr(ds, f"{split}_images"))
        assert actual_images.dtype == np.float32
        np.testing.assert_array_equal(np.rint(actual_images * 255).astype(np.uint8), images)
        np.testing.assert_array_equal(getattr(ds, f"{split}_labels"), labels.astype(np.int32))
    assert ds.num_classes == (10 if fake_tfds.SPECS[name]["labels"] else 1)


def test_tfds_dataset_default_dir_from_env_and_limits(tmp_path, monkeypatch):
    arrays = fake_tfds.prepare_random("mnist", str(tmp_path))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    ds = data.load_dataset("mnist", limit_train=5, limit_test=100)
    assert len(ds.train_images) == 5 and len(ds.test_images) == fake_tfds.RANDOM_SIZES["test"]
    np.testing.assert_array_equal(ds.train_images, arrays["train"][0][:5])  # uint8 as stored


@pytest.mark.parametrize("name", ["mnist", "binarized_mnist", "cifar10"])
def test_tfds_dataset_unprepared_fails_fast(name, tmp_path, offline):
    # at once: nothing is downloaded or prepared, the network is not tried
    empty = str(tmp_path / "empty_tfds")
    with pytest.raises(ValueError) as err:
        data.load_dataset(name, tfds_data_dir=empty)
    message = str(err.value)
    assert repr(name) in message and empty in message
    assert "download_and_prepare" in message and "--config.data.tfds_data_dir" in message


def test_tfds_dataset_rejects_idx_source():
    with pytest.raises(ValueError, match="source='idx'"):
        data.load_dataset("mnist", source="idx")


# --------------------------------------------------------------------------------------------
# User .npz files.
# --------------------------------------------------------------------------------------------


def test_npz_uint8_3d_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, train_images=train, test_images=test, train_labels=np.arange(6))
    ds = data.load_dataset("npz", data_dir=str(path))
    assert ds.name == "npz" and ds.image_shape == (5, 4, 1)
    np.testing.assert_array_equal(ds.train_images[..., 0], train)  # uint8 training images stay
    np.testing.assert_allclose(ds.test_images[..., 0], test / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.train_labels, np.arange(6))
    np.testing.assert_array_equal(ds.test_labels, np.zeros(3))
    assert ds.train_labels.dtype == np.int32 and ds.test_labels.dtype == np.int32
    assert ds.num_classes == 6


def test_npz_float_4d_round_trip_with_limits(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.random((8, 4, 4, 3))
    test = rng.random((4, 4, 4, 3)).astype(np.float32)
    path = tmp_path / "d.npz"
    labels = np.array([0, 1, 2, 0], np.int64)
    np.savez(path, train_images=train, test_images=test, test_labels=labels)
    ds = data.load_dataset("npz", data_dir=str(path), limit_train=5)
    np.testing.assert_array_equal(ds.train_images, train[:5].astype(np.float32))
    np.testing.assert_array_equal(ds.test_images, test)
    np.testing.assert_array_equal(ds.test_labels, labels)
    assert ds.image_shape == (4, 4, 3)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"train_images": np.full((2, 3, 3), 1.5), "test_images": np.zeros((1, 3, 3))}, r"1\.5"),
        ({"train_images": np.full((2, 3, 3), -0.1), "test_images": np.zeros((1, 3, 3))}, r"-0\.1"),
        ({"train_images": np.full((2, 3, 3), np.nan), "test_images": np.zeros((1, 3, 3))}, "nan"),
        ({"train_imgs": np.zeros((2, 3, 3)), "test_images": np.zeros((1, 3, 3))}, "train_imgs"),
        ({"train_images": np.zeros((2, 3, 3))}, "missing: \\['test_images'\\]"),
        (
            {"train_images": np.zeros((2, 3, 3), np.int64), "test_images": np.zeros((1, 3, 3))},
            "int64",
        ),
        ({"train_images": np.zeros((2, 3)), "test_images": np.zeros((1, 3, 3))}, r"\(2, 3\)"),
        ({"train_images": np.zeros((2, 3, 3)), "test_images": np.zeros((1, 4, 3))}, "same"),
        (
            {
                "train_images": np.zeros((2, 3, 3)),
                "test_images": np.zeros((1, 3, 3)),
                "train_labels": np.zeros(3, np.int64),
            },
            "shape \\(3,\\)",
        ),
        (
            {
                "train_images": np.zeros((2, 3, 3)),
                "test_images": np.zeros((1, 3, 3)),
                "test_labels": np.array([-1]),
            },
            "non-negative",
        ),
        (
            {
                "train_images": np.zeros((2, 3, 3)),
                "test_images": np.zeros((1, 3, 3)),
                "test_labels": np.array([0.5]),
            },
            "float64",
        ),
    ],
)
def test_npz_bad_contents_raise(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        data.load_dataset("npz", data_dir=str(path))


def test_npz_missing_or_unreadable_file_raises(tmp_path):
    with pytest.raises(ValueError, match="needs the path"):
        data.load_dataset("npz")
    with pytest.raises(ValueError, match="does not exist"):
        data.load_dataset("npz", data_dir=str(tmp_path / "none.npz"))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="Could not read"):
        data.load_dataset("npz", data_dir=str(garbage))


# --------------------------------------------------------------------------------------------
# Argument validation, config and Dataset.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(name="imagenet"), "name='imagenet'"),
        (dict(name="fashion_mnist", source="web"), "source='web'"),
        (dict(name="fashion_mnist", binarize="always"), "binarize='always'"),
        (dict(name="fashion_mnist", limit_train=-1), "limit_train=-1"),
        (dict(name="fashion_mnist", limit_test=-5), "limit_test=-5"),
        (dict(name="npz", source="tfds"), "source='tfds'"),
    ],
)
def test_load_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_dataset(**kwargs)


def test_load_from_config(fashion_idx):
    cfg = ml_collections.ConfigDict(
        dict(
            name="fashion_mnist",
            data_dir="",
            tfds_data_dir="",
            source="auto",
            binarize="static",
            limit_train=20,
            limit_test=10,
            batch_size=32,  # Other fields of the data section are ignored.
        )
    )
    ds = data.load_from_config(cfg, 3)
    again = data.load_dataset(
        "fashion_mnist", binarize="static", seed=3, limit_train=20, limit_test=10
    )
    np.testing.assert_array_equal(ds.train_images, again.train_images)
    np.testing.assert_array_equal(ds.test_labels, fashion_idx.test_labels[:10])
    with pytest.raises(ValueError, match="no dataset name"):
        data.load_from_config(ml_collections.ConfigDict(dict(name="")), 0)


def test_dataset_validates_arrays():
    good = data.synthetic_dataset(num_train=4, num_test=2)
    with pytest.raises(ValueError, match="float64"):
        data.Dataset(
            "x",
            good.train_images.astype(np.float64),
            *[good.train_labels, good.test_images, good.test_labels],
        )
    with pytest.raises(ValueError, match="train_labels"):
        data.Dataset(
            "x", good.train_images, good.train_labels[:3], good.test_images, good.test_labels
        )
    with pytest.raises(ValueError, match="same"):
        data.Dataset(
            "x", good.train_images, good.train_labels, good.test_images[:, :5], good.test_labels
        )


def test_synthetic_dataset_is_deterministic_and_in_range():
    a = data.synthetic_dataset(num_train=30, num_test=12, shape=(32, 32, 3), seed=5)
    b = data.synthetic_dataset(num_train=30, num_test=12, shape=(32, 32, 3), seed=5)
    c = data.synthetic_dataset(num_train=30, num_test=12, shape=(32, 32, 3), seed=6)
    assert a.train_images.shape == (30, 32, 32, 3) and a.test_images.shape == (12, 32, 32, 3)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    assert not np.array_equal(a.train_images, c.train_images)
    assert a.train_images.min() >= 0.0 and a.train_images.max() <= 1.0
    assert a.train_images.max() > 0.5  # Not blank.
    np.testing.assert_array_equal(a.train_labels, np.arange(30) % 10)
    assert a.num_classes == 10 and a.image_shape == (32, 32, 3)
    # Different classes look different.
    gray = data.synthetic_dataset(num_train=20, num_test=1)
    assert np.abs(gray.train_images[0] - gray.train_images[1]).mean() > 0.02
    with pytest.raises(ValueError, match="num_train=0"):
        data.synthetic_dataset(num_train=0)
    with pytest.raises(ValueError, match="shape"):
        data.synthetic_dataset(shape=(28, 28))


# --------------------------------------------------------------------------------------------
# Binarization and noise.
# --------------------------------------------------------------------------------------------


def test_static_binarization_exact_and_deterministic(tmp_path):
    base = data.synthetic_dataset(num_train=40, num_test=20)
    path = tmp_path / "s.npz"
    np.savez(path, train_images=base.train_images, test_images=base.test_images)
    first = data.load_dataset("npz", data_dir=str(path), binarize="static", seed=7)
    second = data.load_dataset("npz", data_dir=str(path), binarize="static", seed=7)
    other = data.load_dataset("npz", data_dir=str(path), binarize="static", seed=8)
    limited = data.load_dataset(
        "npz", data_dir=str(path), binarize="static", seed=7, limit_train=10, limit_test=5
    )
    for images in (first.train_images, first.test_images):
        assert set(np.unique(images)) <= {0.0, 1.0}
        assert images.dtype == np.float32
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.test_images, second.test_images)
    assert not np.array_equal(first.train_images, other.train_images)
    np.testing.assert_array_equal(limited.train_images, first.train_images[:10])
    np.testing.assert_array_equal(limited.test_images, first.test_images[:5])
    assert first.train_images.mean() == pytest.approx(base.train_images.mean(), abs=0.01)
    dynamic = data.load_dataset("npz", data_dir=str(path), binarize="dynamic")
    np.testing.assert_array_equal(dynamic.train_images, base.train_images)


def test_dynamic_binarize_mean_matches_intensity():
    x = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 5, dtype=jnp.float32), (20000, 5))
    y = data.dynamic_binarize(jax.random.key(0), x)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert set(np.unique(np.asarray(y))) <= {0.0, 1.0}
    np.testing.assert_allclose(np.asarray(y.mean(axis=0)), np.linspace(0, 1, 5), atol=0.015)
    z = data.dynamic_binarize(jax.random.key(1), x)
    assert not np.array_equal(np.asarray(y), np.asarray(z))


def test_add_noise_masking_fraction():
    x = jnp.full((200, 100), 0.7, jnp.float32)
    y = data.add_noise(jax.random.key(0), x, kind="masking", level=0.3)
    zeroed = np.asarray(y == 0.0)
    assert zeroed.mean() == pytest.approx(0.3, abs=0.01)
    np.testing.assert_array_equal(np.asarray(y)[~zeroed], np.float32(0.7))


def test_add_noise_gaussian_clips_and_scales():
    x = jnp.full((200, 100), 0.5, jnp.float32)
    small = data.add_noise(jax.random.key(0), x, kind="gaussian", level=0.05)
    assert float(jnp.std(small - x)) == pytest.approx(0.05, rel=0.05)
    big = data.add_noise(jax.random.key(0), x, kind="gaussian", level=3.0)
    assert float(big.min()) == 0.0 and float(big.max()) == 1.0
    assert float(jnp.mean(big == 0.0)) > 0.3  # Most noisy pixels are clipped.
    np.testing.assert_array_equal(
        np.asarray(data.add_noise(jax.random.key(1), x, kind="gaussian", level=0.0)), np.asarray(x)
    )


def test_add_noise_salt_pepper():
    x = jnp.full((200, 100), 0.5, jnp.float32)
    y = np.asarray(data.add_noise(jax.random.key(2), x, kind="salt_pepper", level=0.2))
    assert set(np.unique(y)) <= {0.0, 0.5, 1.0}
    assert (y != 0.5).mean() == pytest.approx(0.2, abs=0.01)
    assert (y == 1.0).mean() == pytest.approx(0.1, abs=0.01)
    assert (y == 0.0).mean() == pytest.approx(0.1, abs=0.01)


def test_add_noise_works_under_jit_and_validates():
    noisy = jax.jit(lambda k, x: data.add_noise(k, x, kind="masking", level=0.5))
    out = noisy(jax.random.key(0), jnp.ones((4, 8, 8, 1)))
    assert out.shape == (4, 8, 8, 1) and out.dtype == jnp.float32
    x = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match="kind='blur'"):
        data.add_noise(jax.random.key(0), x, kind="blur", level=0.1)
    with pytest.raises(ValueError, match="probability"):
        data.add_noise(jax.random.key(0), x, kind="masking", level=1.5)
    with pytest.raises(ValueError, match="-0.1"):
        data.add_noise(jax.random.key(0), x, kind="gaussian", level=-0.1)
    with pytest.raises(ValueError, match="Python number"):
        data.add_noise(jax.random.key(0), x, kind="masking", level="a lot")
    with pytest.raises(ValueError, match="int32"):
        data.add_noise(jax.random.key(0), jnp.zeros((2, 2), jnp.int32), kind="masking", level=0.1)


# --------------------------------------------------------------------------------------------
# The evaluation protocol of binarized data.
# --------------------------------------------------------------------------------------------


def _raw_fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's uint8 images [N, 28, 28, 1] and labels straight from the gzipped IDX bytes."""
    prefix = {"train": "train", "test": "t10k"}[split]
    pixels = np.frombuffer(_raw_idx(f"{prefix}-images-idx3-ubyte.gz"), np.uint8, offset=16)
    labels = np.frombuffer(_raw_idx(f"{prefix}-labels-idx1-ubyte.gz"), np.uint8, offset=8)
    return pixels.reshape(-1, 28, 28, 1), labels


def _unit(pixels: np.ndarray) -> np.ndarray:
    return (pixels / 255.0).astype(np.float32)


def _binarized(x: np.ndarray, seed: int, streams: int, stream: int) -> np.ndarray:
    """The documented one-off binarization, written again: u < x per pixel, u in file order."""
    u = np.random.default_rng(seed).spawn(streams)[stream].random(x.shape, dtype=np.float32)
    return (u < x).astype(np.float32)


def test_dynamic_binarization_fixes_a_binary_test_set(fashion_idx):
    one = data.load_dataset("fashion_mnist", binarize="dynamic", seed=1, limit_train=300)
    two = data.load_dataset("fashion_mnist", binarize="dynamic", seed=2, limit_train=300)
    # The documented procedure, computed again with numpy from the raw file bytes.
    x = _unit(_raw_fashion("test")[0])
    expected = _binarized(x, seed=0, streams=2, stream=0)
    assert data.EVAL_BINARIZATION_SEED == 0
    assert one.test_images.dtype == np.float32
    assert set(np.unique(one.test_images)) == {0.0, 1.0}
    np.testing.assert_array_equal(one.test_images, expected)
    np.testing.assert_array_equal(two.test_images, one.test_images)  # Not the run's seed.
    assert one.test_images.mean() == pytest.approx(x.mean(), abs=2e-3)
    np.testing.assert_array_equal(one.test_labels, fashion_idx.test_labels)
    # Training stays continuous: the training loop resamples every batch.
    np.testing.assert_array_equal(one.train_images, _raw_fashion("train")[0][:300])
    assert len(np.unique(one.train_images)) > 100
    # A limited test set is a prefix of the full one.
    few = data.load_dataset("fashion_mnist", binarize="dynamic", limit_train=10, limit_test=25)
    np.testing.assert_array_equal(few.test_images, expected[:25])


def test_protocol_records_each_binarization(tmp_path):
    base = data.synthetic_dataset(num_train=40, num_test=20)
    path = tmp_path / "s.npz"
    np.savez(path, train_images=base.train_images, test_images=base.test_images)
    protocols = {
        mode: data.load_dataset("npz", data_dir=str(path), binarize=mode, seed=7).protocol
        for mode in ("none", "static", "dynamic")
    }
    for mode, protocol in protocols.items():
        assert json.loads(json.dumps(protocol)) == protocol
        assert protocol["binarize"] == mode
        assert protocol["num_train"] == 40 and protocol["num_test"] == 20
    assert protocols["none"]["binarization_seed"] is None
    assert protocols["none"]["test"] == protocols["none"]["train"] == "continuous pixels in [0, 1]"
    assert protocols["static"]["binarization_seed"] == 7
    assert "default_rng(7).spawn(3)[1]" in protocols["static"]["test"]
    assert protocols["dynamic"]["binarization_seed"] == 0
    assert "default_rng(0).spawn(2)[0]" in protocols["dynamic"]["test"]
    assert "resampled" in protocols["dynamic"]["train"]
    # The static test set depends on the run's seed, as before; the dynamic one does not.
    static = data.load_dataset("npz", data_dir=str(path), binarize="static", seed=7)
    expected = _binarized(base.test_images, seed=7, streams=3, stream=1)
    np.testing.assert_array_equal(static.test_images, expected)
    with pytest.raises(ValueError, match="JSON"):
        dataclasses.replace(base, protocol={"seed": np.int64(3)})
    assert base.protocol == {}


# --------------------------------------------------------------------------------------------
# The validation split.
# --------------------------------------------------------------------------------------------


def test_validation_split_is_the_end_of_the_real_training_file():
    pixels, labels = _raw_fashion("train")
    ds = data.load_dataset("fashion_mnist", validation_size=10000)
    assert ds.train_images.shape == (50000, 28, 28, 1)
    assert ds.validation_images.shape == (10000, 28, 28, 1) and ds.test_images.shape[0] == 10000
    assert ds.validation_images.dtype == np.float32 and ds.validation_labels.dtype == np.int32
    # Independent slicing of the raw bytes: the first 50k train, the last 10k validate.
    np.testing.assert_array_equal(ds.train_images, pixels[:50000])
    np.testing.assert_array_equal(ds.validation_images, _unit(pixels[50000:]))
    np.testing.assert_array_equal(ds.train_labels, labels[:50000])
    np.testing.assert_array_equal(ds.validation_labels, labels[50000:])
    protocol = ds.protocol
    assert protocol["validation_size"] == 10000 and protocol["num_validation"] == 10000
    assert protocol["num_train"] == 50000 and "last 10000" in protocol["validation"]
    # limit_train applies after the split: the validation set stays the last 10k of the file.
    few = data.load_dataset("fashion_mnist", validation_size=10000, limit_train=100)
    np.testing.assert_array_equal(few.validation_images, ds.validation_images)
    np.testing.assert_array_equal(few.train_labels, labels[:100])
    assert few.protocol["num_train"] == 100
    # A limit above what is left keeps all of it, never validation images.
    rest = data.load_dataset("fashion_mnist", validation_size=59990, limit_train=50)
    assert rest.train_images.shape[0] == 10 and rest.validation_images.shape[0] == 59990


def test_dynamic_binarization_of_the_validation_set():
    pixels, _ = _raw_fashion("train")
    one = data.load_dataset("fashion_mnist", binarize="dynamic", seed=1, validation_size=2000)
    two = data.load_dataset("fashion_mnist", binarize="dynamic", seed=5, validation_size=2000)
    x = _unit(pixels[58000:])
    expected = _binarized(x, seed=0, streams=2, stream=1)
    np.testing.assert_array_equal(one.validation_images, expected)
    np.testing.assert_array_equal(two.validation_images, one.validation_images)
    assert not np.array_equal(expected, _binarized(x, seed=0, streams=2, stream=0))  # own stream
    # The test set is binarized as without a validation set; training stays continuous.
    test_x = _unit(_raw_fashion("test")[0])
    np.testing.assert_array_equal(one.test_images, _binarized(test_x, 0, 2, 0))
    np.testing.assert_array_equal(one.train_images[:500], pixels[:500])
    assert "default_rng(0).spawn(2)[1]" in one.protocol["validation"]


def test_validation_split_with_static_binarization_and_limits(tmp_path):
    base = data.synthetic_dataset(num_train=40, num_test=20)
    path = tmp_path / "s.npz"
    np.savez(path, train_images=base.train_images, test_images=base.test_images)
    plain = data.load_dataset("npz", data_dir=str(path), binarize="static", seed=3)
    split = data.load_dataset(
        "npz", data_dir=str(path), binarize="static", seed=3, validation_size=15, limit_train=20
    )
    # Train and test are binarized as without the split; the validation set has its own stream.
    np.testing.assert_array_equal(split.train_images, plain.train_images[:20])
    np.testing.assert_array_equal(split.test_images, plain.test_images)
    np.testing.assert_array_equal(
        split.validation_images, _binarized(base.train_images[25:], seed=3, streams=3, stream=2)
    )
    assert "spawn(3)[2]" in split.protocol["validation"]
    assert split.protocol["num_train"] == 20 and split.protocol["num_validation"] == 15
    # The same through a config section.
    cfg = ml_collections.ConfigDict(
        dict(name="npz", data_dir=str(path), binarize="static", validation_size=15, limit_train=20)
    )
    np.testing.assert_array_equal(
        data.load_from_config(cfg, 3).validation_images, split.validation_images
    )


def test_validation_split_through_tfds(tmp_path):
    arrays = fake_tfds.prepare_random("mnist", str(tmp_path))
    ds = data.load_dataset("mnist", tfds_data_dir=str(tmp_path), validation_size=5, limit_train=3)
    images, labels = arrays["train"]
    np.testing.assert_array_equal(ds.validation_images, _unit(images[-5:]))
    np.testing.assert_array_equal(ds.validation_labels, labels[-5:])
    np.testing.assert_array_equal(ds.train_images, images[:3])


def test_validation_split_refuses_bad_sizes(tmp_path):
    base = data.synthetic_dataset(num_train=40, num_test=20)
    path = tmp_path / "s.npz"
    np.savez(path, train_images=base.train_images, test_images=base.test_images)
    with pytest.raises(ValueError, match=r"validation_size=-1"):
        data.load_dataset("npz", data_dir=str(path), validation_size=-1)
    with pytest.raises(ValueError, match=r"validation_size=40; expected an integer in \[1, 39\]"):
        data.load_dataset("npz", data_dir=str(path), validation_size=40)
    assert (
        data.load_dataset("npz", data_dir=str(path), validation_size=39).train_images.shape[0] == 1
    )
    held_out = data.split_validation(base, 10)
    with pytest.raises(ValueError, match="already has 10 validation examples"):
        data.split_validation(held_out, 5)


def test_dataset_validation_fields_default_empty_and_are_checked():
    good = data.synthetic_dataset(num_train=4, num_test=2)
    assert good.validation_images.shape == (0, 28, 28, 1)
    assert good.validation_images.dtype == np.float32
    assert good.validation_labels.shape == (0,) and good.validation_labels.dtype == np.int32
    with pytest.raises(ValueError, match="validation_images has dtype float64"):
        dataclasses.replace(good, validation_images=np.zeros((1, 28, 28, 1)))
    with pytest.raises(ValueError, match="validation_labels"):
        dataclasses.replace(good, validation_images=np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match="validation images are"):
        dataclasses.replace(
            good,
            validation_images=np.zeros((1, 5, 5, 1), np.float32),
            validation_labels=np.zeros(1, np.int32),
        )
    with_validation = dataclasses.replace(
        good,
        validation_images=np.zeros((1, 28, 28, 1), np.float32),
        validation_labels=np.array([12], np.int32),
        class_names=(),
    )
    assert with_validation.num_classes == 13


@pytest.mark.parametrize("binarize", ["none", "static", "dynamic"])
def test_test_only_load_gives_the_test_split_of_a_full_load(tmp_path, binarize):
    rng = np.random.default_rng(3)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8),
        test_images=rng.integers(0, 256, (9, 4, 4, 3), dtype=np.uint8),
        test_labels=np.arange(9),
    )
    kwargs = dict(data_dir=str(path), binarize=binarize, seed=5, limit_test=7)
    full = data.load_dataset("npz", validation_size=4, limit_train=10, **kwargs)
    only = data.load_dataset("npz", test_only=True, **kwargs)
    np.testing.assert_array_equal(only.test_images, full.test_images)
    np.testing.assert_array_equal(only.test_labels, full.test_labels)
    assert only.train_images.shape == (0, 4, 4, 3) and only.validation_images.shape[0] == 0
    assert only.protocol == {k: full.protocol[k] for k in only.protocol}
    assert sorted(only.protocol) == ["binarization_seed", "binarize", "num_test", "test"]
    # a file whose training arrays are gone still gives its test split
    np.savez(path, test_images=np.zeros((2, 4, 4, 3), np.uint8))
    assert data.load_dataset("npz", test_only=True, **kwargs).test_images.shape == (2, 4, 4, 3)
