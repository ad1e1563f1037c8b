"""What latent_space.png and the labelled grids are made of: the PCA against the covariance's
eigenvectors, and grids whose title and row labels sit in margins around their exact pixels
(`jaxvae encode` and the run's pictures themselves: tests/test_cli.py)."""

import numpy as np
import pytest
from PIL import Image

from jaxvae import plots


def _ink(region):
    """Whether a region of a picture holds dark (text) pixels."""
    return bool((np.asarray(region) < 128).any())


def test_grids_keep_their_pixels_and_label_rows_in_margins(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (1, 3):
        images = rng.random((12, 6, 5, channels)).astype(np.float32)
        path = str(tmp_path / f"g{channels}.png")
        plots.save_grid(path, images, 4, title="a title", row_labels=["input", "recon", "input"])
        raw = plots.grid(images, 4)
        np.testing.assert_array_equal(plots.read_grid(path), raw[..., 0] if channels == 1 else raw)
        with Image.open(path) as im:
            full = np.asarray(im)
            left, top, w, h = (int(v) for v in im.info[plots.GRID_BOX].split())
        assert full.shape[0] == top + h and full.shape[1] >= left + w and left > 0 and top > 0
        assert _ink(full[:top]) and not _ink(full[top:, :left][: 2 * plots.PAD])
        bands = [full[top + 2 * (2 + 8 * r) : top + 2 * (8 + 8 * r), :left] for r in range(3)]
        assert all(_ink(b) for b in bands)
        np.testing.assert_array_equal(bands[0], bands[2])  # the same label, drawn the same
        assert not np.array_equal(bands[0], bands[1])
    with pytest.raises(ValueError, match="2 row labels for a grid of 3 rows"):
        plots.save_grid(path, images, 4, row_labels=["a", "b"])


def test_pca_matches_the_eigenvectors_of_the_covariance():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 3.0
    points, ratios = plots.pca(codes)
    centred = codes - codes.mean(0)
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    top = vectors[:, ::-1][:, :2]
    want = centred @ top
    signs = np.sign(np.sum(points * want, axis=0))
    np.testing.assert_allclose(points, want * signs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ratios, values[::-1][:2] / values.sum(), rtol=1e-9)
    # each axis is signed so that its largest loading is positive
    loadings = top * signs
    assert np.all(loadings[np.argmax(np.abs(loadings), axis=0), [0, 1]] > 0)
    # one latent: the second coordinate is zero
    line, ratio = plots.pca(codes[:, :1])
    np.testing.assert_allclose(line[:, 0] ** 2, centred[:, 0] ** 2, rtol=1e-9)
    assert np.all(line[:, 1] == 0) and ratio.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="codes must be"):
        plots.pca(codes[:1])
