"""Tests for the procedural dSprites (jaxvae.data.dsprites), the ground-truth interface
(jaxvae.data.ground_truth) and the Dataset's factors; each against an independent numpy computation
(np.ravel_multi_index, centres of mass, second moments, closed-form areas)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jaxvae import data
from jaxvae.data import dsprites

SIZES = dsprites.FACTOR_SIZES


def _factors(*rows) -> np.ndarray:
    return np.array(rows, np.int64).reshape(-1, 5)


def _centre_of_mass(image: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(image[..., 0])
    return np.array([rows.mean(), cols.mean()])


# --------------------------------------------------------------------------------------------
# The grid.
# --------------------------------------------------------------------------------------------


def test_grid_values_are_the_originals():
    # latents_possible_values of dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz
    assert SIZES == (3, 6, 40, 32, 32) and dsprites.NUM_EXAMPLES == 737_280
    np.testing.assert_allclose(dsprites.SCALES, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(dsprites.ORIENTATIONS[:3], [0.0, 0.16110732, 0.32221463], atol=1e-8)
    np.testing.assert_allclose(dsprites.ORIENTATIONS[-2:], [6.12207799, 6.28318531], atol=1e-8)
    np.testing.assert_allclose(
        dsprites.POSITIONS[[1, 15, 31]], [0.03225806, 0.48387097, 1.0], atol=1e-8
    )


def test_every_combination_maps_to_one_index_and_back():
    index = np.arange(dsprites.NUM_EXAMPLES)
    factors = data.index_to_factors(index, SIZES)
    assert factors.dtype == np.int32 and factors.shape == (dsprites.NUM_EXAMPLES, 5)
    # numpy's C order is the mixed-radix order with the last factor (y position) fastest.
    np.testing.assert_array_equal(factors, np.stack(np.unravel_index(index, SIZES), axis=1))
    np.testing.assert_array_equal(data.factors_to_index(factors, SIZES), index)
    assert data.factors_to_index(_factors([0, 0, 0, 0, 1]), SIZES)[0] == 1
    assert data.factors_to_index(_factors([1, 0, 0, 0, 0]), SIZES)[0] == 6 * 40 * 32 * 32


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[0, 0, 40, 0, 0]]), r"\[0, 2\] = 40"),
        (np.array([[0, 0, 0, 0, -1]]), r"\[0, 4\] = -1"),
        (np.zeros((2, 4), np.int64), r"shape \(2, 4\)"),
        (np.zeros((2, 5), np.float32), "dtype float32"),
    ],
)
def test_bad_factors_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        dsprites.render(bad)
    with pytest.raises(ValueError, match=match):
        data.factors_to_index(bad, SIZES)


def test_index_out_of_range_is_refused():
    with pytest.raises(ValueError, match="737280"):
        data.index_to_factors(np.array([737_280]), SIZES)


# --------------------------------------------------------------------------------------------
# Rendering: each factor changes only what it should.
# --------------------------------------------------------------------------------------------


def test_render_is_binary_deterministic_and_batch_independent():
    rng = np.random.default_rng(0)
    factors = data.index_to_factors(rng.integers(0, dsprites.NUM_EXAMPLES, 1500), SIZES)
    images = dsprites.render(factors)  # more than one chunk of 1024
    assert images.dtype == np.uint8 and images.shape == (1500, 64, 64, 1)
    assert set(np.unique(images)) == {0, 1}
    assert images.reshape(1500, -1).sum(1).min() > 30  # every sprite is drawn
    np.testing.assert_array_equal(images, dsprites.render(factors))
    np.testing.assert_array_equal(images[1100:1103], dsprites.render(factors[1100:1103]))


def _drawn_in_place(factors: np.ndarray) -> np.ndarray:
    """The module's geometry evaluated at each image's own 64x64 pixel centres (no sprite table):
    the centre at pixel (16 + x, 16 + y), y up, rotation by the orientation, size 10 x scale."""
    s, c, o, x, y = (factors[:, j, None, None] for j in range(5))
    pixels = np.arange(64, dtype=np.float64)
    dx, dy = pixels[None, None, :] - (16 + x), (16 + y) - pixels[None, :, None]
    theta, h = dsprites.ORIENTATIONS[o] % (2 * np.pi), 10.0 * dsprites.SCALES[c]
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / h
    v = (np.cos(theta) * dy - np.sin(theta) * dx) / h
    shapes = (dsprites._square(u, v), dsprites._ellipse(u, v), dsprites._heart(u, v))
    return np.choose(np.broadcast_to(s, u.shape), shapes).astype(np.uint8)[..., None]


def test_render_equals_drawing_each_image_in_place():
    """render() cuts each image out of its sprite drawn once on a larger canvas; the result is
    the drawing at the image's own pixels, for random combinations and the corner positions."""
    rng = np.random.default_rng(1)
    factors = data.index_to_factors(rng.integers(0, dsprites.NUM_EXAMPLES, 600), SIZES)
    corners = [
        [sh, 5, o, x, y] for sh in range(3) for o in (0, 7) for x in (0, 31) for y in (0, 31)
    ]
    factors = np.concatenate([factors, _factors(*corners)])
    np.testing.assert_array_equal(dsprites.render(factors), _drawn_in_place(factors))


def test_shape_changes_the_silhouette_not_the_centre():
    for scale, orientation, x, y in [(5, 0, 10, 20), (2, 13, 31, 0), (0, 27, 0, 31)]:
        images = dsprites.render(_factors(*[[s, scale, orientation, x, y] for s in range(3)]))
        for a in range(3):
            for b in range(a + 1, 3):
                assert (images[a] != images[b]).sum() > 10
        for image in images:
            np.testing.assert_allclose(_centre_of_mass(image), [16 + y, 16 + x], atol=0.5)


@pytest.mark.parametrize("shape", range(3))
def test_x_and_y_position_translate_by_one_pixel_per_step(shape):
    rng = np.random.default_rng(shape)
    for scale, orientation in zip(rng.integers(0, 6, 4), rng.integers(0, 40, 4), strict=True):
        rows = [[shape, scale, orientation, x, 7] for x in range(32)]
        rows += [[shape, scale, orientation, 7, y] for y in range(32)]
        images = dsprites.render(_factors(*rows))
        centres = np.array([_centre_of_mass(im) for im in images])
        # x moves the centre of mass right (columns) by one pixel per step, rows unchanged ...
        np.testing.assert_allclose(np.diff(centres[:32, 1]), 1.0, atol=1e-9)
        np.testing.assert_allclose(centres[:32, 0], centres[0, 0], atol=1e-9)
        # ... y moves it down (rows).
        np.testing.assert_allclose(np.diff(centres[32:, 0]), 1.0, atol=1e-9)
        np.testing.assert_allclose(centres[32:, 1], centres[32, 1], atol=1e-9)
        # The sprite itself is unchanged: a pure translation, never clipped by the canvas.
        np.testing.assert_array_equal(images[31], np.roll(images[0], 31, axis=1))
        np.testing.assert_array_equal(images[63], np.roll(images[32], 31, axis=0))
        assert not images[:, [0, -1]].any() and not images[:, :, [0, -1]].any()


@pytest.mark.parametrize("shape", range(3))
def test_scale_grows_the_area_as_its_square(shape):
    # Closed-form areas for half-size h = 10 * scale pixels: square (2h)^2, ellipse pi h (h/2),
    # heart 3.6595 / 1.139^2 h^2 (the region (x^2+y^2-1)^3 <= x^2 y^3 has area 3.6595).
    closed_form = [4.0, np.pi / 2, 3.6595 / 1.139**2][shape]
    for orientation in (0, 5, 17, 33):
        images = dsprites.render(_factors(*[[shape, s, orientation, 12, 19] for s in range(6)]))
        areas = images.reshape(6, -1).sum(1)
        assert (np.diff(areas) > 0).all(), areas
        expected = closed_form * (10 * dsprites.SCALES) ** 2
        np.testing.assert_allclose(areas, expected, rtol=0.25)
        np.testing.assert_allclose(areas[-1], expected[-1], rtol=0.12)


@pytest.mark.parametrize("shape", range(3))
def test_orientation_preserves_area_and_wraps_at_two_pi(shape):
    images = dsprites.render(_factors(*[[shape, 5, k, 15, 16] for k in range(40)]))
    areas = images.reshape(40, -1).sum(1)
    np.testing.assert_allclose(areas, areas.mean(), rtol=0.1)
    # The grid holds both 0 and 2 pi, as the original's: the same image.
    np.testing.assert_array_equal(images[0], images[39])
    assert (images[0] != images[1]).any()


def test_orientation_rotates_the_ellipse_counter_clockwise():
    # The principal axis of the ellipse (second moments of its pixels, y up) is at the
    # orientation angle, modulo pi.
    images = dsprites.render(_factors(*[[1, 5, k, 15, 16] for k in range(40)]))
    for k, image in enumerate(images):
        rows, cols = np.nonzero(image[..., 0])
        x, y = cols - cols.mean(), -(rows - rows.mean())
        axis = 0.5 * np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean())
        error = np.angle(np.exp(2j * (axis - dsprites.ORIENTATIONS[k]))) / 2
        assert abs(error) < 0.05, (k, axis)


def test_square_repeats_every_quarter_turn_the_heart_does_not():
    # Orientation k + 10 is 10 * 2 pi / 39 = 92.3 degrees on: the square nearly repeats.
    def iou(shape, k):
        a, b = dsprites.render(_factors([shape, 5, k, 15, 15], [shape, 5, k + 10, 15, 15]))
        return (a & b).sum() / (a | b).sum()

    assert min(iou(0, k) for k in range(30)) > 0.9
    assert max(iou(2, k) for k in range(30)) < 0.85
    assert max(iou(1, k) for k in range(30)) < 0.5


# --------------------------------------------------------------------------------------------
# The ground-truth interface.
# --------------------------------------------------------------------------------------------


def test_procedural_ground_truth_interface():
    gt = data.ProceduralDSprites()
    assert isinstance(gt, data.GroundTruthData)
    assert gt.factor_sizes == SIZES and gt.factor_names[0] == "shape"
    factors = gt.sample_factors(5000, np.random.default_rng(1))
    assert factors.dtype == np.int32 and factors.shape == (5000, 5)
    assert (factors >= 0).all() and (factors < np.array(SIZES)).all()
    # every value of every factor is drawn, about uniformly
    for j, size in enumerate(SIZES):
        counts = np.bincount(factors[:, j], minlength=size)
        assert counts.min() > 0.5 * 5000 / size
    np.testing.assert_array_equal(factors, gt.sample_factors(5000, np.random.default_rng(1)))
    assert (factors != gt.sample_factors(5000, np.random.default_rng(2))).any()
    obs = gt.sample_observations_from_factors(factors[:50], np.random.default_rng(0))
    assert obs.dtype == np.float32 and obs.shape == (50, 64, 64, 1)
    np.testing.assert_array_equal(obs, dsprites.render(factors[:50]).astype(np.float32))
    np.testing.assert_array_equal(data.distinct_combinations(gt), np.arange(737_280))


def _grid_data(sizes=(2, 3, 4)):
    index = np.arange(int(np.prod(sizes)))
    factors = np.stack(np.unravel_index(index, sizes), axis=1)
    images = np.random.default_rng(0).integers(0, 256, (index.size, 3, 2, 1), np.uint8)
    return images, factors, sizes


def test_array_ground_truth_full_grid_in_order():
    images, factors, sizes = _grid_data()
    gt = data.ArrayGroundTruthData(images, factors, sizes, ("a", "b", "c"))
    assert gt._in_order
    query = np.array([[1, 2, 3], [0, 0, 0], [1, 0, 2]])
    expected = images[np.ravel_multi_index(tuple(query.T), sizes)] / np.float32(255)
    obs = gt.sample_observations_from_factors(query, np.random.default_rng(0))
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs, expected)
    sampled = gt.sample_factors(200, np.random.default_rng(5))
    assert sampled.shape == (200, 3) and (sampled < np.array(sizes)).all()
    np.testing.assert_array_equal(data.distinct_combinations(gt), np.arange(24))


def test_array_ground_truth_shuffled_subset_and_duplicates():
    images, factors, sizes = _grid_data()
    perm = np.random.default_rng(3).permutation(len(images))[:15]  # a shuffled subset
    rows = np.concatenate([perm, perm[:3]])  # the first three combinations twice
    dup_images = images[rows].copy()
    dup_images[15:] = 255 - dup_images[15:]  # the duplicates look different
    gt = data.ArrayGroundTruthData(dup_images, factors[rows], sizes, ("a", "b", "c"))
    assert data.distinct_combinations(gt) is None  # a lookup may draw from rng
    once = data.ArrayGroundTruthData(images[perm], factors[perm], sizes, ("a", "b", "c"))
    np.testing.assert_array_equal(data.distinct_combinations(once), np.sort(perm))
    query = factors[perm[3:12]]
    np.testing.assert_array_equal(
        gt.sample_observations_from_factors(query, np.random.default_rng(0)),
        images[perm[3:12]] / np.float32(255),
    )
    # A combination held twice: either image, drawn from rng; the same rng, the same choice.
    query = np.repeat(factors[perm[:1]], 200, axis=0)
    obs = gt.sample_observations_from_factors(query, np.random.default_rng(9))
    firsts = (obs == images[perm[0]] / np.float32(255)).all(axis=(1, 2, 3))
    seconds = (obs == dup_images[15] / np.float32(255)).all(axis=(1, 2, 3))
    assert (firsts | seconds).all() and 50 < firsts.sum() < 150
    np.testing.assert_array_equal(
        obs, gt.sample_observations_from_factors(query, np.random.default_rng(9))
    )
    # Only combinations of the table are sampled, and a missing one is refused.
    sampled = gt.sample_factors(300, np.random.default_rng(1))
    keys = set(np.ravel_multi_index(tuple(factors[perm].T), sizes).tolist())
    assert set(np.ravel_multi_index(tuple(sampled.T), sizes).tolist()) <= keys
    missing = factors[np.setdiff1d(np.arange(len(images)), perm)[:1]]
    with pytest.raises(ValueError, match="is not in the table"):
        gt.sample_observations_from_factors(missing, np.random.default_rng(0))


def test_array_ground_truth_rejects_mismatches():
    images, factors, sizes = _grid_data()
    with pytest.raises(ValueError, match="one name per factor"):
        data.ArrayGroundTruthData(images, factors, sizes, ("a", "b"))
    with pytest.raises(ValueError, match="images have shape"):
        data.ArrayGroundTruthData(images[:5], factors, sizes, ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"factors\[0, 2\] = 4"):
        data.ArrayGroundTruthData(images[:1], np.array([[0, 0, 4]]), sizes, ("a", "b", "c"))


def test_split_indices_is_the_documented_permutation():
    train, test = data.split_indices(100, 10, seed=4)
    perm = np.random.default_rng(4).permutation(100)
    np.testing.assert_array_equal(train, perm[:90])
    np.testing.assert_array_equal(test, perm[90:])
    with pytest.raises(ValueError, match="num_test=100"):
        data.split_indices(100, 100)


# --------------------------------------------------------------------------------------------
# The training Dataset.
# --------------------------------------------------------------------------------------------


def test_load_dsprites_procedural_renders_only_what_the_limits_keep():
    ds = data.load_dataset("dsprites_procedural", limit_train=40, limit_test=30, validation_size=25)
    assert ds.name == "dsprites_procedural" and ds.image_shape == (64, 64, 1)
    assert ds.factor_names == dsprites.FACTOR_NAMES and ds.factor_sizes == SIZES
    assert ds.class_names == ("square", "ellipse", "heart") and ds.num_classes == 3
    assert [len(ds.train_images), len(ds.validation_images), len(ds.test_images)] == [40, 25, 30]
    # The documented split: test is the last 10% of a fixed-seed permutation, validation the end
    # of the rest, and a limit keeps a prefix.
    perm = np.random.default_rng(0).permutation(737_280)
    cut = 737_280 - 73_728
    expected = {
        "train": perm[:40],
        "validation": perm[cut - 25 : cut],
        "test": perm[cut : cut + 30],
    }
    for split, index in expected.items():
        factors = getattr(ds, f"{split}_factors")
        np.testing.assert_array_equal(factors, np.stack(np.unravel_index(index, SIZES), axis=1))
        np.testing.assert_array_equal(
            data.to_unit_float(getattr(ds, f"{split}_images")),
            dsprites.render(factors).astype(np.float32),
        )
        np.testing.assert_array_equal(getattr(ds, f"{split}_labels"), factors[:, 0])
    assert ds.protocol["num_validation"] == 25 and "permutation" in ds.protocol["split"]
    # Every split stays uint8, 0 and 255 (read as 0.0 and 1.0).
    for split in ("train", "validation", "test"):
        images = getattr(ds, f"{split}_images")
        assert images.dtype == np.uint8 and set(np.unique(images)) == {0, 255}, split
    again = data.load_dataset("dsprites_procedural", limit_train=10, limit_test=30)
    np.testing.assert_array_equal(again.train_factors, ds.train_factors[:10])
    np.testing.assert_array_equal(again.test_images, ds.test_images)


def test_dsprites_procedural_binarizes_like_any_dataset():
    ds = data.load_dataset("dsprites_procedural", limit_train=8, limit_test=8, binarize="static")
    # 0/1 pixels stay 0/1 under Bernoulli(x); the factors ride along untouched.
    np.testing.assert_array_equal(ds.train_images, dsprites.render(ds.train_factors))
    with pytest.raises(ValueError, match="source='tfds'"):
        data.load_dataset("dsprites_procedural", source="tfds", limit_train=1)


def test_dataset_factor_fields_are_checked():
    ds = data.load_dataset("dsprites_procedural", limit_train=6, limit_test=4)
    with pytest.raises(ValueError, match=r"train_factors is int32 \(5, 5\)"):
        dataclasses.replace(ds, train_factors=ds.train_factors[:5])
    with pytest.raises(ValueError, match="test_factors is None"):
        dataclasses.replace(ds, test_factors=None)
    bad = ds.train_factors.copy()
    bad[0, 2] = 40
    with pytest.raises(ValueError, match="train_factors"):
        dataclasses.replace(ds, train_factors=bad)
    with pytest.raises(ValueError, match="factor_sizes is empty"):
        dataclasses.replace(ds, factor_names=(), factor_sizes=())
    # Data without factors is as before.
    plain = data.synthetic_dataset(num_train=4, num_test=2)
    assert plain.factor_sizes == () and plain.train_factors is None
    assert plain.validation_factors is None


def test_split_validation_moves_the_factors():
    ds = data.load_dataset("dsprites_procedural", limit_train=10, limit_test=4)
    split = data.split_validation(ds, 3)
    np.testing.assert_array_equal(split.train_factors, ds.train_factors[:7])
    np.testing.assert_array_equal(split.validation_factors, ds.train_factors[7:])
    np.testing.assert_array_equal(split.validation_images, data.to_unit_float(ds.train_images[7:]))


def test_dsprites_names_are_registered():
    for name in ("dsprites_procedural", "dsprites", "shapes3d"):
        assert name in data.DATASETS and name in data.GROUND_TRUTH_DATASETS
