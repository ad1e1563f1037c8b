"""Tests for jaxvae.objectives against an independent float64 numpy forward pass."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from jax.test_util import check_grads

from jaxvae import data as data_lib
from jaxvae import objectives
from jaxvae.models import ModelSpec, make_model
from jaxvae.objectives import ObjectiveSpec, kl_weight, loss_fn

# Jitted once per (model, objective): much faster than eager dispatch on a busy CPU.
vae_loss = jax.jit(objectives.vae_loss, static_argnames=("model", "objective"))
ae_loss = jax.jit(objectives.ae_loss, static_argnames=("model", "objective"))

IMAGE_SHAPE = (4, 4, 1)
LATENT = 3
BATCH = 6


# --------------------------------------------------------------------------------------------
# Helpers: a tiny MLP model with randomised parameters and a numpy re-implementation of it.
# --------------------------------------------------------------------------------------------


def _model_and_params(kind="vae", likelihood="bernoulli", seed=0):
    spec = ModelSpec(
        kind=kind,
        architecture="mlp",
        image_shape=IMAGE_SHAPE,
        latent_dim=LATENT,
        hidden=(8,),
        likelihood=likelihood,
        gaussian_std=0.3,
    )
    model = make_model(spec)
    return model, _random_params(model, seed)


def _random_params(model, seed):
    """Parameters of ``model``'s structure drawn with numpy (no costly eager ``model.init``)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            scale = 1.5 / np.sqrt(leaf.shape[0])
        elif "log_scale" in name:
            return (np.log(0.3) + 0.2 * rng.normal(size=leaf.shape)).astype(np.float32)
        else:
            scale = 0.3
        return (scale * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _images(seed=0, n=BATCH):
    return np.random.default_rng(100 + seed).uniform(size=(n, *IMAGE_SHAPE)).astype(np.float32)


def _np(a):
    return np.asarray(a, np.float64)


def _mlp(layers, h):
    """Dense layers with ReLU between them, in float64."""
    names = sorted(layers, key=lambda s: int(s.split("_")[1]))
    for i, name in enumerate(names):
        h = h @ _np(layers[name]["kernel"]) + _np(layers[name]["bias"])
        if i < len(names) - 1:
            h = np.maximum(h, 0.0)
    return h


def _np_encode(params, x):
    out = _mlp(params["encoder"], _np(x).reshape(x.shape[0], -1))
    return out[:, :LATENT], out[:, LATENT:]


def _np_decode_raw(params, z):
    return _mlp(params["decoder"], _np(z)).reshape(z.shape[0], *IMAGE_SHAPE)


def _np_neg_log_lik(model, params, x, z):
    out = _np_decode_raw(params, z)
    x = _np(x)
    axes = (1, 2, 3)
    if model.spec.likelihood == "bernoulli":
        log_sig = lambda t: -np.logaddexp(0.0, -t)
        return -np.sum(x * log_sig(out) + (1 - x) * log_sig(-out), axis=axes)
    if model.spec.likelihood == "gaussian":
        std = np.full(IMAGE_SHAPE, model.spec.gaussian_std)
    else:
        std = np.exp(_np(params["scale"]["log_scale"]))
    return -np.sum(scipy.stats.norm.logpdf(x, scipy.special.expit(out), std), axis=axes)


def _np_vae_terms(model, params, x, key):
    """Recomputes recon, per-dimension KL and the sample exactly as vae_loss draws it."""
    _, k_z = jax.random.split(key)
    mean, log_var = _np_encode(params, x)
    eps = _np(jax.random.normal(k_z, mean.shape))
    z = mean + np.exp(0.5 * log_var) * eps
    recon = _np_neg_log_lik(model, params, x, z)
    var = np.exp(log_var)
    kl_dims = -0.5 * log_var + 0.5 * (var + mean**2) - 0.5
    return recon, kl_dims


# --------------------------------------------------------------------------------------------
# VAE loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
def test_vae_loss_terms_match_numpy(likelihood):
    model, params = _model_and_params(likelihood=likelihood)
    x = _images()
    key = jax.random.key(7)
    loss, terms = vae_loss(model, params, x, key)
    recon, kl_dims = _np_vae_terms(model, params, x, key)
    kl = kl_dims.sum(axis=1)
    assert set(terms) == {"loss", "recon", "kl", "elbo"}
    np.testing.assert_allclose(terms["recon"], recon.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["kl"], kl.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["elbo"], -(recon + kl).mean(), rtol=2e-5)
    np.testing.assert_allclose(loss, recon.mean() + kl.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["loss"], loss)


def test_vae_loss_gaussian_learned_uses_the_learned_scale():
    model, params = _model_and_params(likelihood="gaussian_learned")
    x, key = _images(), jax.random.key(1)
    base, _ = vae_loss(model, params, x, key)
    params2 = dict(params, scale={"log_scale": params["scale"]["log_scale"] + 0.5})
    moved, _ = vae_loss(model, params2, x, key)
    recon2, kl_dims = _np_vae_terms(model, params2, x, key)
    np.testing.assert_allclose(moved, recon2.mean() + kl_dims.sum(1).mean(), rtol=2e-5)
    assert abs(float(moved) - float(base)) > 1.0


def test_vae_loss_beta_and_warmup():
    model, params = _model_and_params()
    x, key = _images(), jax.random.key(2)
    recon, kl_dims = _np_vae_terms(model, params, x, key)
    kl = kl_dims.sum(1).mean()
    for beta, warmup, steps in ((2.5, 0, (0, 123)), (0.5, 10, (0, 4, 10, 50))):
        objective = ObjectiveSpec(beta=beta, warmup_steps=warmup)
        for step in steps:
            # The step is traced by jit: one compilation serves every step.
            loss, terms = vae_loss(model, params, x, key, objective=objective, step=step)
            weight = beta * (min(1.0, step / warmup) if warmup else 1.0)
            np.testing.assert_allclose(kl_weight(objective, step), weight, rtol=1e-6)
            np.testing.assert_allclose(loss, recon.mean() + weight * kl, rtol=2e-5)
            # The reported ELBO is the true one whatever the weight.
            np.testing.assert_allclose(terms["elbo"], -(recon.mean() + kl), rtol=2e-5)
    # loss_fn dispatches a VAE to vae_loss with the step passed through.
    f = jax.jit(loss_fn(model, ObjectiveSpec(beta=2.0, warmup_steps=8)))
    np.testing.assert_allclose(f(params, x, key, 2)[0], recon.mean() + 0.5 * kl, rtol=2e-5)


def test_vae_loss_free_bits():
    model, params = _model_and_params(seed=4)
    x, key = _images(), jax.random.key(4)
    recon, kl_dims = _np_vae_terms(model, params, x, key)
    batch_kl = kl_dims.mean(axis=0)
    # A threshold between the smallest and largest per-dimension KL, so both branches are used.
    free_bits = float(np.median(batch_kl))
    assert batch_kl.min() < free_bits < batch_kl.max()
    objective = ObjectiveSpec(beta=1.5, free_bits=free_bits)
    loss, terms = vae_loss(model, params, x, key, objective=objective)
    expected = recon.mean() + 1.5 * np.sum(np.maximum(free_bits, batch_kl))
    np.testing.assert_allclose(loss, expected, rtol=2e-5)
    # Not the same as the plain KL, nor as a per-example clamp.
    assert abs(expected - (recon.mean() + 1.5 * batch_kl.sum())) > 1e-3
    per_example = np.maximum(free_bits, kl_dims).sum(1).mean()
    assert abs(expected - (recon.mean() + 1.5 * per_example)) > 1e-3
    np.testing.assert_allclose(terms["kl"], kl_dims.sum(1).mean(), rtol=2e-5)
    # A threshold below every dimension's KL changes nothing.
    low = ObjectiveSpec(beta=1.5, free_bits=float(batch_kl.min()) / 2)
    np.testing.assert_allclose(
        vae_loss(model, params, x, key, objective=low)[0],
        recon.mean() + 1.5 * batch_kl.sum(),
        rtol=2e-5,
    )


def test_vae_loss_dynamic_binarization():
    model, params = _model_and_params()
    x, key = _images(), jax.random.key(5)
    objective = ObjectiveSpec(dynamic_binarize=True)
    loss, terms = vae_loss(model, params, x, key, objective=objective)
    k_bin, _ = jax.random.split(key)
    x_bin = np.asarray(data_lib.dynamic_binarize(k_bin, jnp.asarray(x)))
    assert set(np.unique(x_bin)) <= {0.0, 1.0}
    recon_bin, kl_dims = _np_vae_terms(model, params, x_bin, key)
    recon_raw, _ = _np_vae_terms(model, params, x, key)
    np.testing.assert_allclose(terms["recon"], recon_bin.mean(), rtol=2e-5)
    assert abs(recon_bin.mean() - recon_raw.mean()) > 1e-2
    # Images that are already binary are left as they are.
    binary = (x > 0.5).astype(np.float32)
    np.testing.assert_allclose(
        vae_loss(model, params, binary, key, objective=objective)[0],
        vae_loss(model, params, binary, key)[0],
        rtol=1e-6,
    )
    # Without the option, continuous pixels are used as they are.
    np.testing.assert_allclose(
        vae_loss(model, params, x, key)[1]["recon"], recon_raw.mean(), rtol=2e-5
    )
    # Different keys binarize differently, so the loss varies.
    other = vae_loss(model, params, x, jax.random.key(6), objective=objective)[1]["recon"]
    assert float(other) != float(terms["recon"])


@pytest.mark.parametrize(
    "likelihood,objective",
    [
        ("bernoulli", ObjectiveSpec(beta=0.7, warmup_steps=10, free_bits=0.05)),
        ("gaussian_learned", ObjectiveSpec()),
    ],
)
def test_vae_loss_gradients_match_finite_differences(likelihood, objective):
    model, params = _model_and_params(likelihood=likelihood, seed=8)
    x, key = _images(), jax.random.key(8)
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        f = lambda p: vae_loss(model, p, x64, key, objective=objective, step=3)[0]
        assert f(params64).dtype == jnp.float64
        check_grads(
            jax.jit(f), (params64,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6
        )
    assert jnp.zeros(()).dtype == jnp.float32  # x64 did not leak


# --------------------------------------------------------------------------------------------
# AE and DAE losses
# --------------------------------------------------------------------------------------------


def _np_ae_output(params, x):
    code = _mlp(params["encoder"], _np(x).reshape(x.shape[0], -1))
    return scipy.special.expit(_np_decode_raw(params, code))


@pytest.mark.parametrize("kind_of_loss", ["l2", "l1"])
def test_ae_loss_matches_numpy(kind_of_loss):
    model, params = _model_and_params(kind="ae")
    x = _images()
    loss, terms = ae_loss(
        model, params, x, jax.random.key(0), objective=ObjectiveSpec(ae_loss=kind_of_loss)
    )
    diff = _np_ae_output(params, x) - _np(x)
    err = np.abs(diff) if kind_of_loss == "l1" else diff**2
    np.testing.assert_allclose(loss, err.sum(axis=(1, 2, 3)).mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["recon"], loss)
    np.testing.assert_allclose(terms["loss"], loss)


def test_dae_loss_corrupts_the_input_but_not_the_target():
    ae, params = _model_and_params(kind="ae")
    dae = make_model(dataclasses.replace(ae.spec, kind="dae"))
    x, key = _images(), jax.random.key(9)
    ae_value, _ = ae_loss(ae, params, x, key)

    # Masking every pixel: the encoder sees zeros, the target is still the clean x.
    masked = ObjectiveSpec(noise="masking", noise_level=1.0)
    dae_value, _ = ae_loss(dae, params, x, key, objective=masked)
    out_zero = _np_ae_output(params, np.zeros_like(x))
    np.testing.assert_allclose(
        dae_value, ((out_zero - _np(x)) ** 2).sum((1, 2, 3)).mean(), rtol=2e-5
    )
    assert abs(float(dae_value) - float(ae_value)) > 1e-3

    # Huge Gaussian noise: matches a clean-target recomputation from the corrupted input.
    noisy_obj = ObjectiveSpec(noise="gaussian", noise_level=100.0, ae_loss="l1")
    dae_value, _ = ae_loss(dae, params, x, key, objective=noisy_obj)
    noisy = np.asarray(data_lib.add_noise(key, jnp.asarray(x), kind="gaussian", level=100.0))
    assert np.mean((noisy == 0) | (noisy == 1)) > 0.9  # clipped to mostly 0/1
    out = _np_ae_output(params, noisy)
    clean_target = np.abs(out - _np(x)).sum((1, 2, 3)).mean()
    noisy_target = np.abs(out - _np(noisy)).sum((1, 2, 3)).mean()
    np.testing.assert_allclose(dae_value, clean_target, rtol=2e-5)
    assert abs(clean_target - noisy_target) > 1e-2


def test_ae_loss_gradients_match_finite_differences():
    model, params = _model_and_params(kind="ae", seed=3)
    x = _images()
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        f = lambda p: ae_loss(model, p, x64, jax.random.key(0))[0]
        check_grads(
            jax.jit(f), (params64,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6
        )
