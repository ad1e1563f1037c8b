"""TFDS dsprites and shapes3d (jaxvae.data.tfds_ground_truth) on fake prepared copies: a few hundred
distinct factor combinations each, in the datasets' own TFDS features, read back with factors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxvae import data
from tests import fake_tfds

NUM = 300


def _sizes(name):
    return tuple(fake_tfds.GROUND_TRUTH_SPECS[name]["factors"].values())


def _expected_images(name: str, factors: np.ndarray) -> np.ndarray:
    """The fake image of each combination: dsprites' rendering, or noise seeded by the index."""
    if name == "dsprites":
        return data.render_dsprites(factors)
    index = np.ravel_multi_index(tuple(factors.T), _sizes(name))
    return np.stack(
        [np.random.default_rng(int(i)).integers(0, 256, (64, 64, 3), np.uint8) for i in index]
    )


def _fake_factors(name: str) -> np.ndarray:
    sizes = _sizes(name)
    index = np.random.default_rng(7).choice(math.prod(sizes), NUM, replace=False)
    return np.stack(np.unravel_index(index, sizes), axis=1).astype(np.int32)


@pytest.fixture(scope="module", params=["dsprites", "shapes3d"])
def prepared(request, tmp_path_factory):
    name = request.param
    path = str(tmp_path_factory.mktemp(f"tfds_{name}"))
    factors = _fake_factors(name)
    fake_tfds.prepare_ground_truth(name, path, _expected_images(name, factors), factors)
    return name, path, factors


def test_splits_images_and_factors(prepared):
    name, path, factors = prepared
    ds = data.load_dataset(name, tfds_data_dir=path)
    assert ds.factor_names == tuple(fake_tfds.GROUND_TRUTH_SPECS[name]["factors"])
    assert ds.factor_sizes == _sizes(name)
    # 10% held out for test, the rest train.
    assert len(ds.test_images) == NUM // 10 and len(ds.train_images) == NUM - NUM // 10
    assert len(ds.validation_images) == 0 and ds.validation_factors.shape == (0, len(_sizes(name)))
    seen = []
    for split in ("train", "test"):
        images, factors_split = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_factors")
        # Every split stays uint8 (dsprites' 0/1 as 0/255), read as v / 255.
        assert images.dtype == np.uint8
        images = data.to_unit_float(images)
        assert factors_split.dtype == np.int32
        scale = 1.0 if name == "dsprites" else 255.0
        np.testing.assert_array_equal(
            images, _expected_images(name, factors_split).astype(np.float32) / np.float32(scale)
        )
        assert 0.0 <= images.min() and images.max() <= 1.0
        shape_column = ds.factor_names.index("shape")
        np.testing.assert_array_equal(
            getattr(ds, f"{split}_labels"), factors_split[:, shape_column]
        )
        seen.append(np.ravel_multi_index(tuple(factors_split.T), _sizes(name)))
    # Train and test are disjoint and together every record.
    all_index = np.ravel_multi_index(tuple(factors.T), _sizes(name))
    assert not np.intersect1d(seen[0], seen[1]).size
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(all_index))
    assert ds.num_classes == _sizes(name)[ds.factor_names.index("shape")]
    assert "permutation" in ds.protocol["split"]


def test_deterministic_limits_and_validation(prepared):
    name, path, _ = prepared
    full = data.load_dataset(name, tfds_data_dir=path)
    again = data.load_dataset(name, tfds_data_dir=path)
    for split in ("train", "test"):
        np.testing.assert_array_equal(
            getattr(full, f"{split}_factors"), getattr(again, f"{split}_factors")
        )
    small = data.load_dataset(
        name, tfds_data_dir=path, limit_train=11, limit_test=5, validation_size=20
    )
    # A limit keeps a prefix; the validation set is the end of the training split.
    np.testing.assert_array_equal(small.train_factors, full.train_factors[:11])
    np.testing.assert_array_equal(small.train_images, full.train_images[:11])
    np.testing.assert_array_equal(small.test_factors, full.test_factors[:5])
    np.testing.assert_array_equal(small.validation_factors, full.train_factors[-20:])
    np.testing.assert_array_equal(small.validation_images, full.train_images[-20:])
    assert small.protocol["num_validation"] == 20


def test_the_split_is_the_documented_permutation(prepared):
    name, path, _ = prepared
    ds = data.load_dataset(name, tfds_data_dir=path, limit_test=4)
    reader = data.prepared_builder(name, path).as_data_source(split="train")
    perm = np.random.default_rng(0).permutation(NUM)
    expected = [reader[int(i)] for i in perm[NUM - NUM // 10 :][:4]]
    for row, record in enumerate(expected):
        for j, factor in enumerate(ds.factor_names):
            assert ds.test_factors[row, j] == record[f"label_{factor}"]


def test_ground_truth_from_tfds_looks_up_observations(prepared):
    name, path, factors = prepared
    gt = data.ground_truth_from_tfds(name, path)
    assert isinstance(gt, data.GroundTruthData)
    assert gt.factor_sizes == _sizes(name)
    sampled = gt.sample_factors(40, np.random.default_rng(3))
    assert sampled.dtype == np.int32 and sampled.shape == (40, len(_sizes(name)))
    # Only combinations present in the data are sampled.
    present = set(np.ravel_multi_index(tuple(factors.T), _sizes(name)).tolist())
    assert set(np.ravel_multi_index(tuple(sampled.T), _sizes(name)).tolist()) <= present
    np.testing.assert_array_equal(sampled, gt.sample_factors(40, np.random.default_rng(3)))
    observations = gt.sample_observations_from_factors(sampled, np.random.default_rng(0))
    scale = 1.0 if name == "dsprites" else 255.0
    assert observations.dtype == np.float32
    np.testing.assert_array_equal(
        observations, _expected_images(name, sampled).astype(np.float32) / np.float32(scale)
    )


def test_unprepared_fails_fast(tmp_path):
    empty = str(tmp_path / "none")
    for name in ("dsprites", "shapes3d"):
        with pytest.raises(ValueError, match=f"'{name}' is not prepared"):
            data.load_dataset(name, tfds_data_dir=empty)


def test_validation_size_out_of_range(prepared):
    name, path, _ = prepared
    with pytest.raises(ValueError, match="validation_size=270"):
        data.load_dataset(name, tfds_data_dir=path, validation_size=270)
