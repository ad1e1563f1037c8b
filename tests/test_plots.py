"""Pure picture functions: latent traversals against a numpy computation."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import plots

D, H, W, C = 5, 3, 4, 2


def _linear_decoder(seed=0):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(H * W * C, D)).astype(np.float32)
    bias = rng.normal(size=(H * W * C,)).astype(np.float32)
    calls = []

    def decode_mean(z):
        calls.append(z.shape)
        return (z @ weight.T + bias).reshape(z.shape[0], H, W, C)

    return decode_mean, weight, bias, calls


def test_traversal_grid_matches_numpy():
    decode_mean, weight, bias, calls = _linear_decoder()
    z_base = np.array([0.3, -1.2, 0.7, 2.0, -0.1], np.float32)
    dims = [3, 0, 4]  # row order as given, e.g. by KL
    values = np.linspace(-3, 3, 9, dtype=np.float32)
    images = np.asarray(plots.traversal_grid(decode_mean, z_base, dims, values))
    assert images.shape == (len(dims) * len(values), H, W, C)
    assert calls == [(len(dims) * len(values), D)]  # one batched decode
    for r, dim in enumerate(dims):
        for j, v in enumerate(values):
            z = z_base.astype(np.float64).copy()
            z[dim] = v
            want = (weight.astype(np.float64) @ z + bias).reshape(H, W, C)
            np.testing.assert_allclose(images[r * len(values) + j], want, rtol=1e-5, atol=1e-5)


def test_traversal_grid_changes_only_the_swept_coordinate():
    seen = []

    def decode_mean(z):
        seen.append(np.asarray(z))
        return jnp.zeros((z.shape[0], 1, 1, 1))

    z_base = np.arange(D, dtype=np.float32)
    plots.traversal_grid(decode_mean, z_base, [1, 2], [-1.0, 9.0])
    np.testing.assert_array_equal(
        seen[0],
        [[0, -1, 2, 3, 4], [0, 9, 2, 3, 4], [0, 1, -1, 3, 4], [0, 1, 9, 3, 4]],
    )


@pytest.mark.parametrize(
    "z_base, dims, values, match",
    [
        (np.zeros((1, D)), [0], [0.0], "z_base"),
        (np.zeros(D), [D], [0.0], r"dims must lie in \[0, 5\)"),
        (np.zeros(D), [-1], [0.0], "dims must lie"),
        (np.zeros(D), [], [0.0], "non-empty"),
        (np.zeros(D), [0], [[0.0]], "non-empty 1-D"),
    ],
)
def test_traversal_grid_rejects_bad_arguments(z_base, dims, values, match):
    decode_mean, *_ = _linear_decoder()
    with pytest.raises(ValueError, match=match):
        plots.traversal_grid(decode_mean, z_base, dims, values)
