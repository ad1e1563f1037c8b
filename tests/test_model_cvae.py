"""The conditional VAE: labels reach encoder and decoder, its log-weights against a float64 numpy
computation of log p(x, z | y) - log q(z | x, y), and its one-row-per-class samples."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import jaxvae
from jaxvae import config as config_lib
from jaxvae import models, pictures, plots
from tests.conftest import CONFIGS

IMAGE = (4, 4, 1)
CLASSES = 3


def _model(**kw):
    kw = dict(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=3) | kw
    return models.get("cvae")(num_classes=CLASSES, **kw)


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _mlp(p, h):
    """numpy float64 of networks.MLP: dense + ReLU hidden layers, then a dense output."""
    layers = sorted(p["MLP_0"], key=lambda n: int(n.split("_")[1]))
    for name in layers[:-1]:
        h = np.maximum(h @ p["MLP_0"][name]["kernel"] + p["MLP_0"][name]["bias"], 0.0)
    last = p["MLP_0"][layers[-1]]
    return h @ last["kernel"] + last["bias"]


def _one_hot(y):
    return np.eye(CLASSES)[np.asarray(y)]


def _decode_mean(p, z, y):
    logits = _mlp(p["decoder"], np.concatenate([z, _one_hot(y)], axis=-1))
    return special.expit(logits)


def _images(n, seed=3):
    return (np.random.default_rng(seed).random((n, *IMAGE)) > 0.5).astype(np.float32)


def test_decoder_and_encoder_depend_on_the_label():
    model = _model()
    params, state = model.init(jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (5, model.latent_dim))
    means = [np.asarray(model.decode(params, state, z, jnp.full((5,), c)).mean()) for c in (0, 1)]
    assert means[0].shape == (5, *IMAGE)
    assert np.min(np.abs(means[0] - means[1]).reshape(5, -1).max(axis=1)) > 1e-3
    x = jnp.asarray(_images(5))
    enc = [model.encode(params, state, {"image": x, "label": jnp.full((5,), c)}) for c in (0, 2)]
    assert np.min(np.abs(np.asarray(enc[0] - enc[1])).max(axis=1)) > 1e-4
    with pytest.raises(ValueError, match="labels"):
        model.decode(params, state, z)


def test_log_weights_match_numpy():
    """log p(x | z, y) + log N(z; 0, I) - log q(z | x, y), with the images' own labels."""
    model = _model()
    params, state = model.init(jax.random.key(0))
    n, s, key = 6, 4, jax.random.key(5)
    x, y = _images(n), np.array([0, 1, 2, 2, 1, 0], np.int32)
    got = model.log_weights(
        params, state, {"image": jnp.asarray(x), "label": jnp.asarray(y)}, key, s
    )
    p = _np(params)
    enc = _mlp(p["encoder"], np.concatenate([x.reshape(n, -1), _one_hot(y)], axis=-1))
    mean, log_var = enc[:, :3], enc[:, 3:]
    # The VAE's sampling convention: z_s = mean + exp(log_var / 2) * eps, eps ~ normal(key, [N, S, D]).
    eps = np.asarray(jax.random.normal(key, (n, s, 3)), np.float64)
    z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps
    probs = _decode_mean(p, z.reshape(n * s, 3), np.repeat(y, s)).reshape(n, s, -1)
    log_lik = np.sum(stats.bernoulli.logpmf(np.repeat(x.reshape(n, 1, -1), s, 1), probs), -1)
    log_prior = np.sum(stats.norm.logpdf(z), axis=-1)
    log_q = np.sum(stats.norm.logpdf(z, mean[:, None], np.exp(0.5 * log_var)[:, None]), axis=-1)
    np.testing.assert_allclose(np.asarray(got), log_lik + log_prior - log_q, rtol=1e-5, atol=1e-3)


def test_samples_have_one_row_per_class():
    model = _model()
    params, state = model.init(jax.random.key(0))
    key = jax.random.key(9)
    drawn = np.asarray(pictures.prior_samples(model, params, state, key, 64))
    cols = pictures.NCOLS
    assert drawn.shape == (CLASSES * cols, *IMAGE)
    # Prior draws z ~ N(0, I) (normal(key, [num, D])), row r decoded with label r.
    z = np.asarray(jax.random.normal(key, (CLASSES * cols, model.latent_dim)), np.float64)
    p = _np(params)
    for r in range(CLASSES):
        rows = slice(r * cols, (r + 1) * cols)
        want = _decode_mean(p, z[rows], np.full(cols, r)).reshape(cols, *IMAGE)
        np.testing.assert_allclose(drawn[rows], want, rtol=1e-5, atol=1e-5)
        other = _decode_mean(p, z[rows], np.full(cols, (r + 1) % CLASSES)).reshape(cols, *IMAGE)
        assert np.max(np.abs(drawn[rows] - other)) > 1e-3


def test_config_trains_and_draws_a_row_per_class(tmp_path):
    """The cvae config, shrunk: finite figures and a samples.png of 10 rows of 8."""
    config = config_lib.load_config_file(os.path.join(CONFIGS, "cvae.py"))
    config_lib.apply_overrides(
        config,
        [
            "model.channels=8,16",
            "model.latent_dim=4",
            "data.limit_train=256",
            "data.limit_test=64",
            "train.batch_size=32",
            "train.epochs=1",
            "train.progress=false",
            "eval.batch_size=64",
            "eval.iwae_k=8",
            "eval.iwae_num_examples=16",
            "eval.num_pictures=16",
        ],
    )
    workdir = tmp_path / "run"
    summary = jaxvae.train(config, str(workdir))
    assert summary["model"] == "cvae/conv"
    for key in ("test_nelbo", "test_kl", "test_nll"):
        assert np.isfinite(summary[key]), key
    height, width = plots.read_grid(str(workdir / "samples.png")).shape[:2]
    pad, scale = 2, 2  # plots.grid's defaults
    assert height == scale * (10 * (28 + pad) + pad)
    assert width == scale * (pictures.NCOLS * (28 + pad) + pad)
