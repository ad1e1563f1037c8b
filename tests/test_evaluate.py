"""Tests for jaxvae.evaluate: closed-form cases and independent numpy/scipy recomputations."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import scipy.special
import scipy.stats

from jaxvae import evaluate, likelihoods, models
from jaxvae.evaluate import active_units

IMAGE_SHAPE = (4, 4, 1)
PIXELS = 16
LATENT = 3


# --------------------------------------------------------------------------------------------
# Helpers: tiny MLP models with numpy-drawn parameters and a float64 numpy forward pass.
# --------------------------------------------------------------------------------------------


def _model(kind="vae", likelihood="bernoulli"):
    return models.get(kind)(
        architecture="mlp",
        image_shape=IMAGE_SHAPE,
        latent_dim=LATENT,
        hidden=(8,),
        likelihood=likelihoods.make(likelihood, image_shape=IMAGE_SHAPE, gaussian_std=0.3),
    )


# The families' evaluation functions, with their (empty) model state.
def evaluate_iwae(model, params, data, key, **kwargs):
    return evaluate.evaluate_iwae(model, params, {}, data, key, **kwargs)


def evaluate_model(model, params, data, key, **kwargs):
    return evaluate.evaluate_model(model, params, {}, data, key, **kwargs)


def _layers(params, net):
    """The dense layers of an MLP encoder's or decoder's one MLP: ``{"Dense_0": ..., ...}``."""
    return params[net]["MLP_0"]


def _random_params(model, seed, kernel_scale=1.0):
    rng = np.random.default_rng(seed)
    shapes, _ = jax.eval_shape(model.init, jax.random.key(0))

    def draw(path, leaf):
        is_kernel = "kernel" in jax.tree_util.keystr(path)
        scale = kernel_scale / np.sqrt(leaf.shape[0]) if is_kernel else 0.3
        return (scale * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _images(n, seed=0, binary=False):
    x = np.random.default_rng(100 + seed).uniform(size=(n, *IMAGE_SHAPE))
    return (x < 0.5 if binary else x).astype(np.float32)


def _np(a):
    return np.asarray(a, np.float64)


def _mlp(layers, h):
    names = sorted(layers, key=lambda s: int(s.split("_")[1]))
    for i, name in enumerate(names):
        h = h @ _np(layers[name]["kernel"]) + _np(layers[name]["bias"])
        if i < len(names) - 1:
            h = np.maximum(h, 0.0)
    return h


def _np_encode(params, x):
    return _mlp(_layers(params, "encoder"), _np(x).reshape(x.shape[0], -1))


def _np_log_lik(model, params, x_flat, z):
    """log p(x|z) for flat images ``x_flat`` [..., PIXELS] and latents ``z`` [..., LATENT]."""
    out = _mlp(_layers(params, "decoder"), z)
    if model.likelihood.name == "bernoulli":
        return np.sum(x_flat * -np.logaddexp(0, -out) + (1 - x_flat) * -np.logaddexp(0, out), -1)
    mean = scipy.special.expit(out)
    return np.sum(scipy.stats.norm.logpdf(x_flat, mean, model.likelihood.gaussian_std), -1)


# --------------------------------------------------------------------------------------------
# IWAE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "likelihood,cases",
    [
        ("bernoulli", [(1, 500), (7, 3), (64, 16), (64, 5)]),
        ("gaussian", [(7, 3), (64, 64)]),
    ],
)
def test_iwae_is_exact_when_posterior_is_prior_and_decoder_ignores_z(likelihood, cases):
    model = _model(likelihood=likelihood)
    params = _random_params(model, seed=1)
    # q(z|x) = N(0, I) = p(z): the encoder's last layer outputs zeros (mean 0, log_var 0).
    _layers(params, "encoder")["Dense_1"]["kernel"][:] = 0.0
    _layers(params, "encoder")["Dense_1"]["bias"][:] = 0.0
    # p(x|z) does not depend on z: the decoder's first layer ignores its input.
    _layers(params, "decoder")["Dense_0"]["kernel"][:] = 0.0
    x = _images(13, seed=1)
    # Then every importance weight is p(x|z) = p(x), so log p_k(x) = log p(x) exactly for any k.
    log_px = _np_log_lik(model, params, _np(x).reshape(13, -1), np.zeros((13, LATENT)))
    for k, chunk in cases:
        out = evaluate_iwae(model, params, x, jax.random.key(k), k=k, batch_size=5, chunk=chunk)
        assert out["iwae_k"] == k and out["num_examples"] == 13
        np.testing.assert_allclose(out["nll"], -log_px.mean(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(out["nll_se"], np.std(log_px, ddof=1) / np.sqrt(13), rtol=1e-4)
    # One image: no standard error.
    one = evaluate_iwae(model, params, x[:1], jax.random.key(0), k=7, batch_size=5, chunk=3)
    np.testing.assert_allclose(one["nll"], -log_px[0], atol=1e-4, rtol=0)
    assert np.isnan(one["nll_se"]) and one["num_examples"] == 1


def _np_iwae(model, params, x, k, rng):
    """Per-image IWAE estimates log p_k(x) in numpy, and the delta-method sd of each estimate."""
    enc = _np_encode(params, x)
    mean, log_var = enc[:, :LATENT], enc[:, LATENT:]
    std = np.exp(0.5 * log_var)
    x_flat = _np(x).reshape(x.shape[0], -1)
    log_px, sds, lik_sds = [], [], []
    for i in range(x.shape[0]):
        z = mean[i] + std[i] * rng.standard_normal((k, LATENT))
        log_lik = _np_log_lik(model, params, x_flat[i], z)
        log_w = (
            log_lik
            + scipy.stats.norm.logpdf(z).sum(-1)
            - scipy.stats.norm.logpdf(z, mean[i], std[i]).sum(-1)
        )
        log_px.append(scipy.special.logsumexp(log_w) - np.log(k))
        w = np.exp(log_w - log_w.max())
        sds.append(np.std(w) / (np.mean(w) * np.sqrt(k)))  # sd(log mean w) ~= sd(w) / (E w sqrt k)
        lik_sds.append(np.std(log_lik))
    return np.array(log_px), np.array(sds), np.array(lik_sds)


def test_iwae_matches_independent_monte_carlo_and_bounds():
    model = _model()
    params = _random_params(model, seed=2, kernel_scale=1.5)
    n, k = 20, 2000
    x = _images(n, seed=2, binary=True)
    out = evaluate_iwae(model, params, x, jax.random.key(3), k=k, batch_size=10, chunk=500)
    log_px, sds, lik_sds = _np_iwae(model, params, x, k, np.random.default_rng(0))
    # Two independent estimators with the same expectation: their difference of means has
    # sd sqrt(2 sum_i sd_i^2) / n; allow 5 of those (and check the test is still sharp).
    tol = 5 * np.sqrt(2 * np.sum(sds**2)) / n + 1e-3
    assert tol < 0.5
    assert abs(out["nll"] - (-log_px.mean())) < tol, (out["nll"], -log_px.mean(), tol)
    # The standard error over images: the between-image spread dominates the Monte-Carlo noise.
    np.testing.assert_allclose(out["nll_se"], np.std(log_px, ddof=1) / np.sqrt(n), rtol=0.1)
    assert out["nll_se"] > 0 and np.isfinite(out["nll_se"])

    # The k-sample bound is tighter than the ELBO: -log p_k(x) <= -ELBO(x) on average. The
    # single-sample negative ELBO estimate has sd sqrt(sum_i Var_q log p(x_i|z)) / n.
    nelbo = evaluate_model(model, params, x, jax.random.key(4), batch_size=10)["nelbo"]
    assert out["nll"] <= nelbo + 5 * np.sqrt(np.sum(lik_sds**2)) / n + 1e-4


def test_iwae_rejects_bad_arguments():
    vae = _model()
    params = _random_params(vae, seed=0)
    x = _images(2)
    for bad_k in (0, -3, 2.0, True, np.int64(0)):
        with pytest.raises(ValueError, match="IWAE k must be a positive integer"):
            evaluate_iwae(vae, params, x, jax.random.key(0), k=bad_k)
    out = evaluate_iwae(vae, params, x, jax.random.key(0), k=np.int32(3))
    assert out["iwae_k"] == 3 and type(out["iwae_k"]) is int
    with pytest.raises(ValueError, match="empty"):
        evaluate_iwae(vae, params, x[:0], jax.random.key(0), k=2)
    # the whole array is checked, not just its first image
    with pytest.raises(ValueError, match=r"\(5,\) do not fit the model"):
        evaluate_model(vae, params, np.zeros(5, np.float32), jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"4, 4, 2\) do not fit the model: expected \[N, 4, 4, 1\]"
    ):
        evaluate_iwae(vae, params, np.zeros((2, 4, 4, 2), np.float32), jax.random.key(0), k=2)
    ae = _model(kind="ae")
    with pytest.raises(ValueError, match="kind .ae."):
        evaluate_iwae(ae, _random_params(ae, seed=0), x, jax.random.key(0), k=2)


# --------------------------------------------------------------------------------------------
# ELBO and active units
# --------------------------------------------------------------------------------------------


def test_evaluate_model_of_a_vae_matches_numpy_and_counts_active_units():
    model = _model(likelihood="gaussian")
    params = _random_params(model, seed=5, kernel_scale=1.5)
    # Latent 0's posterior mean ignores x (inactive); latent 2's barely varies.
    _layers(params, "encoder")["Dense_1"]["kernel"][:, 0] = 0.0
    _layers(params, "encoder")["Dense_1"]["kernel"][:, 2] *= 0.01
    n = 8
    x = _images(n, seed=5)
    key = jax.random.key(6)
    out = evaluate_model(model, params, x, key, batch_size=n)

    enc = _np_encode(params, x)
    mean, log_var = enc[:, :LATENT], enc[:, LATENT:]
    # One batch: the sample uses fold_in(key, 0) and the batch's shape.
    eps = _np(jax.random.normal(jax.random.fold_in(key, 0), (n, LATENT)))
    z = mean + np.exp(0.5 * log_var) * eps
    recon = -_np_log_lik(model, params, _np(x).reshape(n, -1), z)
    var = np.exp(log_var)
    kl = np.sum(-0.5 * log_var + 0.5 * (var + mean**2) - 0.5, axis=1)
    np.testing.assert_allclose(out["recon"], recon.mean(), rtol=2e-5)
    np.testing.assert_allclose(out["kl"], kl.mean(), rtol=2e-5)
    np.testing.assert_allclose(out["nelbo"], (recon + kl).mean(), rtol=2e-5)

    expected_active = int(np.sum(np.var(mean, axis=0) > 0.01))
    assert expected_active == 1  # only latent 1 varies enough
    assert out["active_units"] == expected_active

    # Batches that do not divide the images: the analytic KL and active units are unchanged.
    padded = evaluate_model(model, params, x, key, batch_size=3)
    np.testing.assert_allclose(padded["kl"], out["kl"], rtol=1e-6)
    assert padded["active_units"] == expected_active
    assert np.isfinite(padded["recon"]) and padded["recon"] != out["recon"]


def test_active_units_against_known_variances():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 1))
    base = (base - base.mean()) / base.std()  # population variance exactly 1
    stds = np.array([0.0, 0.05, 0.09, 0.11, 1.0, 3.0])  # variances 0, .0025, .0081, .0121, 1, 9
    means = base * stds + rng.normal(size=6)
    np.testing.assert_allclose(np.var(means, axis=0), stds**2, rtol=1e-9, atol=1e-12)
    assert active_units(means) == 3
    assert active_units(means, threshold=0.005) == 4
    assert active_units(means, threshold=2.0) == 1
    assert active_units(means.astype(np.float32)) == 3


# --------------------------------------------------------------------------------------------
# Autoencoders
# --------------------------------------------------------------------------------------------


def test_evaluate_model_of_an_ae_matches_numpy_for_any_batch_size():
    model = _model(kind="ae")
    params = _random_params(model, seed=7, kernel_scale=1.5)
    n = 13
    x = _images(n, seed=7)
    code = _np_encode(params, x)
    out = scipy.special.expit(_mlp(_layers(params, "decoder"), code))
    diff = out - _np(x).reshape(n, -1)
    l2, l1 = np.sum(diff**2, 1), np.sum(np.abs(diff), 1)
    expected_active = int(np.sum(np.var(code, axis=0) > 0.01))
    key = jax.random.key(0)
    results = [evaluate_model(model, params, x, key, batch_size=b) for b in (13, 5, 1000)]
    for res in results:
        np.testing.assert_allclose(res["recon_l2"], l2.mean(), rtol=2e-5)
        np.testing.assert_allclose(res["recon_l1"], l1.mean(), rtol=2e-5)
        np.testing.assert_allclose(res["mse_per_pixel"], l2.mean() / PIXELS, rtol=2e-5)
        np.testing.assert_allclose(res["recon"], l2.mean(), rtol=2e-5)  # its loss: l2
        assert res["active_units"] == expected_active
    # Padding never leaks into the figures: identical results whatever the batch size.
    for res in results[1:]:
        for name in ("recon_l2", "recon_l1", "mse_per_pixel"):
            np.testing.assert_allclose(res[name], results[0][name], rtol=1e-6)
    # A DAE is evaluated on clean inputs, exactly like the AE with the same parameters.
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    dae = models.get("dae")(**fields, noise="masking", noise_level=0.5)
    np.testing.assert_allclose(
        evaluate_model(dae, params, x, key, batch_size=13)["recon_l2"], l2.mean(), rtol=2e-5
    )


# --------------------------------------------------------------------------------------------
# What the evaluation functions take
# --------------------------------------------------------------------------------------------


def test_a_dataset_a_batch_dict_and_an_array_give_the_same_figures():
    from jaxvae import data as data_lib

    model = _model()
    params = _random_params(model, seed=8)
    train, test, val = _images(6, seed=8), _images(5, seed=9), _images(4, seed=10)
    labels = lambda x: np.zeros(len(x), np.int32)  # noqa: E731
    ds = data_lib.Dataset(
        "tiny", train, labels(train), test, labels(test),
        validation_images=val, validation_labels=labels(val),
    )  # fmt: skip
    key = jax.random.key(1)
    for fn, kwargs in ((evaluate_model, {}), (evaluate_iwae, {"k": 4})):
        expected = fn(model, params, test, key, **kwargs)
        assert fn(model, params, ds, key, **kwargs) == expected
        assert fn(model, params, {"image": test, "label": labels(test)}, key, **kwargs) == expected
        assert fn(model, params, jax.numpy.asarray(test), key, **kwargs) == expected
        on_val = fn(model, params, ds, key, split="validation", **kwargs)
        assert on_val == fn(model, params, val, key, **kwargs) and on_val != expected
        with pytest.raises(ValueError, match="split='valid'"):
            fn(model, params, ds, key, split="valid", **kwargs)
        with pytest.raises(ValueError, match="data is a list"):
            fn(model, params, [test], key, **kwargs)
        with pytest.raises(ValueError, match="needs an 'image' entry"):
            fn(model, params, {"x": test}, key, **kwargs)


def test_iwae_reports_its_progress_after_each_batch():
    model = _model()
    params = _random_params(model, seed=9)
    calls = []
    evaluate_iwae(
        model, params, _images(7), jax.random.key(0), k=3, batch_size=4,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert calls == [(4, 7), (7, 7)]
