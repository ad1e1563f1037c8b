"""CIFAR-10 through TFDS, without TensorFlow or a download: a fake prepared ``cifar10`` (a few dozen
random 32x32x3 uint8 images, array_record) in a temporary data directory, read by
``data.name="cifar10"`` and trained on with the logistic-mixture config."""

import os

import numpy as np
import pytest
from PIL import Image

import jaxvae
from jaxvae import config as config_lib
from jaxvae import data as data_lib
from tests import fake_tfds
from tests.conftest import CONFIGS

NUM_TRAIN, NUM_TEST = 48, 24


def _images(split: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng({"train": 0, "test": 1}[split])
    n = {"train": NUM_TRAIN, "test": NUM_TEST}[split]
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, (np.arange(n) % 10).astype(np.int32)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    fake_tfds.prepare("cifar10", path, {s: _images(s) for s in ("train", "test")})
    return path


def test_fake_cifar10_reads_back_through_the_loader(cifar_dir):
    ds = data_lib.load_dataset("cifar10", tfds_data_dir=cifar_dir)
    assert ds.image_shape == (32, 32, 3) and ds.num_classes == 10
    for split in ("train", "test"):
        images, labels = _images(split)
        stored = getattr(ds, f"{split}_images")  # training images stay uint8 (their stored form)
        assert stored.dtype == (np.uint8 if split == "train" else np.float32)
        np.testing.assert_allclose(data_lib.to_unit_float(stored), images / 255.0, atol=1e-6)
        np.testing.assert_array_equal(getattr(ds, f"{split}_labels"), labels)


def test_logistic_config_trains_on_cifar10(cifar_dir, tmp_path):
    config = config_lib.load_config_file(os.path.join(CONFIGS, "logistic.py"))
    config_lib.apply_overrides(
        config,
        [
            "data.name=cifar10",
            f"data.tfds_data_dir={cifar_dir}",
            "model.channels=8,16",
            "model.num_mixtures=2",
            "model.latent_dim=4",
            "train.batch_size=16",
            "train.epochs=2",
            "train.progress=false",
            "eval.batch_size=24",
            "eval.iwae_k=4",
            "eval.iwae_num_examples=8",
            "eval.num_pictures=8",
        ],
    )
    workdir = tmp_path / "run"
    summary = jaxvae.train(config, str(workdir))
    assert summary["dataset"] == "cifar10" and summary["likelihood"] == "logistic_mixture"
    assert summary["steps"] == 2 * (NUM_TRAIN // 16)
    for key in ("test_nelbo", "test_bpd_nelbo", "test_nll", "test_bpd_nll"):
        assert np.isfinite(summary[key]), key
    np.testing.assert_allclose(
        summary["test_bpd_nelbo"], summary["test_nelbo"] / (32 * 32 * 3 * np.log(2)), rtol=1e-9
    )
    # Uniform noise images: about 8 bits per dimension, not far below.
    assert 6.0 < summary["test_bpd_nelbo"] < 20.0
    with Image.open(workdir / "samples.png") as im:
        assert im.mode == "RGB"
