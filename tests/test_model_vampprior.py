"""The VampPrior family against an independent float64 numpy/scipy computation of its mixture prior,
its importance log-weights and its Monte Carlo KL."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from jaxvae import config as config_lib
from jaxvae import models
from tests.conftest import CONFIGS

IMAGE = (4, 4, 1)


def _model(latent_dim=3, num_pseudo=5, **kw):
    kw = dict(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=latent_dim) | kw
    return models.get("vampprior")(num_pseudo=num_pseudo, **kw)


def _params(model, seed=0):
    """Parameters with pseudo-inputs spread over [-0.5, 1.5], so the clip to [0, 1] matters."""
    params, state = model.init(jax.random.key(seed))
    raw = jax.random.uniform(
        jax.random.key(seed + 1), (model.num_pseudo, *model.image_shape), minval=-0.5, maxval=1.5
    )
    return params | {"prior": {"pseudo_inputs": raw}}, state


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _mlp(p, h, activation=lambda a: np.maximum(a, 0.0)):
    """numpy float64 of networks.MLP: dense + ReLU hidden layers, then a dense output."""
    layers = sorted(p["MLP_0"], key=lambda n: int(n.split("_")[1]))
    for name in layers[:-1]:
        h = activation(h @ p["MLP_0"][name]["kernel"] + p["MLP_0"][name]["bias"])
    last = p["MLP_0"][layers[-1]]
    return h @ last["kernel"] + last["bias"]


def _encode(params, x):
    out = _mlp(params["encoder"], np.asarray(x, np.float64).reshape(len(x), -1))
    d = out.shape[-1] // 2
    return out[:, :d], out[:, d:]


def _log_normal(z, mean, log_var):
    return np.sum(stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)), axis=-1)


def _log_prior(params, z):
    """``log (1/K) sum_k q(z | clip(u_k, 0, 1))``, the encoder in float64."""
    u = np.clip(params["prior"]["pseudo_inputs"], 0.0, 1.0)
    m, lv = _encode(params, u)  # [K, D]
    comps = _log_normal(z[..., None, :], m, lv)  # [..., K]
    return special.logsumexp(comps, axis=-1) - math.log(len(m))


def _images(n, seed=3):
    return (np.random.default_rng(seed).random((n, *IMAGE)) > 0.5).astype(np.float32)


def test_log_prior_matches_numpy_mixture():
    model = _model()
    params, _ = _params(model)
    z = np.random.default_rng(0).normal(size=(6, 7, model.latent_dim)).astype(np.float32)
    got = model.log_prior(params, jnp.asarray(z))
    assert got.shape == (6, 7)
    want = _log_prior(_np(params), z.astype(np.float64))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)
    # Not the standard-normal prior of the plain VAE.
    assert np.max(np.abs(want - _log_normal(z, 0.0, 0.0))) > 0.1


def test_prior_is_a_proper_density():
    """For one latent, the trapezoid integral of exp(log p(z)) over a wide grid is 1."""
    model = _model(latent_dim=1, num_pseudo=7)
    params, _ = _params(model, seed=2)
    grid = np.linspace(-25.0, 25.0, 20001, dtype=np.float32)
    density = np.exp(np.asarray(model.log_prior(params, jnp.asarray(grid[:, None])), np.float64))
    assert density[0] < 1e-12 and density[-1] < 1e-12
    np.testing.assert_allclose(np.trapezoid(density, grid.astype(np.float64)), 1.0, atol=1e-4)


def test_log_weights_match_numpy():
    model = _model()
    params, state = _params(model)
    x, s, key = _images(5), 4, jax.random.key(7)
    batch = {"image": jnp.asarray(x), "label": jnp.zeros((5,), jnp.int32)}
    got = np.asarray(model.log_weights(params, state, batch, key, s))
    p = _np(params)
    mean, log_var = _encode(p, x)
    # The VAE's sampling convention: z_s = mean + exp(log_var / 2) * eps, eps ~ normal(key, [N, S, D]).
    eps = np.asarray(jax.random.normal(key, (5, s, model.latent_dim)), np.float64)
    z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps
    logits = _mlp(p["decoder"], z.reshape(5 * s, -1)).reshape(5, s, -1)
    flat_x = np.repeat(x.reshape(5, 1, -1), s, axis=1)
    log_lik = np.sum(stats.bernoulli.logpmf(flat_x, special.expit(logits)), axis=-1)
    want = log_lik + _log_prior(p, z) - _log_normal(z, mean[:, None], log_var[:, None])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_mc_kl_is_log_q_minus_log_p_at_the_sampled_z():
    model = _model()
    params, _ = _params(model)
    x, key = _images(6), jax.random.key(11)
    batch = {"image": jnp.asarray(x), "label": jnp.zeros((6,), jnp.int32)}
    parts = model.elbo_parts(params, batch, key)
    assert parts["kl_dims"] is None
    p = _np(params)
    mean, log_var = _encode(p, x)
    eps = np.asarray(jax.random.normal(key, mean.shape), np.float64)
    z = mean + np.exp(0.5 * log_var) * eps
    want = _log_normal(z, mean, log_var) - _log_prior(p, z)
    np.testing.assert_allclose(np.asarray(parts["kl"]), want, rtol=1e-5, atol=1e-4)
    # kl() itself at a given z.
    kl, dims = model.kl(params, parts["mean"], parts["log_var"], jnp.asarray(z, jnp.float32))
    assert dims is None
    np.testing.assert_allclose(np.asarray(kl), want, rtol=1e-5, atol=1e-4)
    terms = model.eval_terms(params, {}, batch, key)
    assert "kl_dims" not in terms
    np.testing.assert_allclose(np.asarray(terms["kl"]), want, rtol=1e-5, atol=1e-4)


def test_pseudo_inputs_get_the_hardtanh_gradient():
    """The loss trains the pseudo-inputs inside (0, 1) and not those clipped at 0 or 1."""
    model = _model()
    params, state = _params(model)
    batch = {"image": jnp.asarray(_images(8)), "label": jnp.zeros((8,), jnp.int32)}
    grads = jax.grad(lambda p: model.loss(p, state, batch, jax.random.key(0), kl_weight=1.0)[0])(
        params
    )
    g = np.asarray(grads["prior"]["pseudo_inputs"])
    raw = np.asarray(params["prior"]["pseudo_inputs"])
    inside = (raw > 0) & (raw < 1)
    assert np.all(g[~inside] == 0)
    assert np.mean(np.abs(g[inside]) > 0) > 0.9


def test_init_follows_the_reference_protocol():
    model = _model(num_pseudo=500)
    params, _ = model.init(jax.random.key(0))
    raw = np.asarray(params["prior"]["pseudo_inputs"])
    assert raw.shape == (500, *IMAGE)
    assert abs(raw.mean() - 0.05) < 1e-3 and abs(raw.std() - 0.01) < 1e-3


def test_samples_come_from_the_pseudo_input_posteriors():
    """With near-zero posterior variance at every pseudo-input, prior draws sit on the K means."""
    model = _model(num_pseudo=3)
    params, _ = _params(model)
    enc = params["encoder"]["MLP_0"]["Dense_1"]
    d = model.latent_dim
    enc = enc | {"bias": enc["bias"].at[d:].set(-30.0), "kernel": enc["kernel"].at[:, d:].set(0.0)}
    params = params | {"encoder": {"MLP_0": params["encoder"]["MLP_0"] | {"Dense_1": enc}}}
    z = np.asarray(model.sample_latents(params, {}, jax.random.key(0), 200))
    means = np.asarray(model.components(params)[0])
    dist = np.min(np.linalg.norm(z[:, None] - means[None], axis=-1), axis=1)
    assert np.max(dist) < 1e-4
    counts = np.bincount(np.argmin(np.linalg.norm(z[:, None] - means[None], axis=-1), 1), None, 3)
    assert np.all(counts > 30)


def test_free_bits_and_dreg_are_refused():
    with pytest.raises(ValueError, match="free_bits"):
        _model(free_bits=0.5)
    with pytest.raises(ValueError, match="num_pseudo"):
        _model(num_pseudo=0)
    config = config_lib.load_config_file(os.path.join(CONFIGS, "vampprior.py"))
    config.model.vampprior.free_bits = 0.5
    with pytest.raises(ValueError, match="free_bits"):
        config_lib.validate(config)
    config = config_lib.load_config_file(os.path.join(CONFIGS, "vampprior.py"))
    config_lib.apply_overrides(
        config,
        [
            "objective.name=iwae",
            "objective.k=4",
            "objective.estimator=dreg",
            "objective.warmup_steps=0",
        ],
    )
    with pytest.raises(ValueError, match="dreg"):
        config_lib.validate(config)


def test_log_var_range_clips_every_gaussian_head_like_a_hardtanh():
    """``log_var_range=(lo, hi)`` clips the encoder's log-variance (so the prior's components at
    the pseudo-inputs too) to [lo, hi], with the hardtanh's gradient: none outside the range."""
    model = _model(log_var_range=(-0.05, 0.05))
    params, state = _params(model)
    x = _images(6)
    raw_mean, raw_lv = _encode(_np(params), x)
    assert np.mean(raw_lv < -0.05) > 0.1 and np.mean(raw_lv > 0.05) > 0.1  # the clip matters
    mean, lv = model.q_params(params, {"image": jnp.asarray(x)})
    np.testing.assert_allclose(np.asarray(mean), raw_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(lv), np.clip(raw_lv, -0.05, 0.05), rtol=1e-5, atol=1e-6)
    u = np.clip(np.asarray(params["prior"]["pseudo_inputs"], np.float64), 0.0, 1.0)
    _, comp_lv = model.components(params)
    np.testing.assert_allclose(
        np.asarray(comp_lv), np.clip(_encode(_np(params), u)[1], -0.05, 0.05), rtol=1e-5, atol=1e-6
    )
    # d(sum of clipped log-variances)/d(output bias) = the number of images inside the range
    d = model.latent_dim
    last = sorted(params["encoder"]["MLP_0"], key=lambda n: int(n.split("_")[1]))[-1]
    g = jax.grad(lambda p: jnp.sum(model.q_params(p, {"image": jnp.asarray(x)})[1]))(params)
    inside = ((raw_lv > -0.05) & (raw_lv < 0.05)).sum(axis=0)
    np.testing.assert_allclose(np.asarray(g["encoder"]["MLP_0"][last]["bias"][d:]), inside)


@pytest.mark.parametrize(
    "kind, value, message",
    [
        ("vampprior", (2.0, -6.0), "lo < hi"),
        ("vampprior", (1.0,), "lo < hi"),
        ("vampprior", ("a", "b"), "log_var_range"),
        ("ae", (-6.0, 2.0), "no Gaussian log-variance heads"),
    ],
)
def test_log_var_range_refused(kind, value, message):
    kw = dict(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=3)
    with pytest.raises(ValueError, match=message):
        models.get(kind)(log_var_range=value, **kw)
