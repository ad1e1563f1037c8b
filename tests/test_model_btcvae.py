"""The beta-TCVAE family against an independent float64 numpy/scipy computation of the
minibatch-weighted-sampling estimates of MI, TC and the dimension-wise KL; the decomposition
identity; its loss at alpha = beta = gamma = 1."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from jaxvae import config as config_lib
from jaxvae import distributions as dist
from jaxvae import models
from jaxvae.models import btcvae
from tests.conftest import CONFIGS

IMAGE = (4, 4, 1)


def _model(**kw):
    kw = dict(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=3, num_train=500) | kw
    return models.get("btcvae")(**kw)


def _fixed(m=7, d=3, seed=0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(m, d))
    log_var = rng.uniform(-2.0, 0.5, size=(m, d))
    z = mean + np.exp(0.5 * log_var) * rng.normal(size=(m, d))
    return z, mean, log_var


def _mws_numpy(z, mean, log_var, n):
    """MI, TC, DWKL per example by the MWS formulas, with scipy's normal density in float64."""
    m = len(z)
    # pairs[i, j, d] = log q(z_id | x_j)
    pairs = stats.norm.logpdf(z[:, None, :], mean[None], np.exp(0.5 * log_var)[None])
    log_qz_x = np.sum(stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)), axis=-1)
    log_qz = special.logsumexp(pairs.sum(-1), axis=1) - math.log(n * m)
    log_prod = np.sum(special.logsumexp(pairs, axis=1) - math.log(n * m), axis=-1)
    log_pz = np.sum(stats.norm.logpdf(z), axis=-1)
    return {
        "mi": log_qz_x - log_qz,
        "tc": log_qz - log_prod,
        "dwkl": log_prod - log_pz,
        "kl_mc": log_qz_x - log_pz,
    }


def _images(n, seed=3):
    return (np.random.default_rng(seed).random((n, *IMAGE)) > 0.5).astype(np.float32)


def test_mws_estimates_match_numpy():
    z, mean, log_var = _fixed()
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    got = btcvae.decomposition(btcvae.mws_log_densities(f32(z), f32(mean), f32(log_var), 500))
    want = _mws_numpy(z, mean, log_var, 500)
    for name in ("mi", "tc", "dwkl"):
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-5, atol=1e-4)
    # The estimates are not trivial: TC differs from 0 and the three terms from each other.
    assert np.min(np.abs(want["tc"])) > 1e-2
    # N enters as -log(N M): a larger dataset raises MI and lowers DWKL by D*log(N'/N) - log(N'/N).
    other = _mws_numpy(z, mean, log_var, 5000)
    np.testing.assert_allclose(other["mi"] - want["mi"], math.log(10), rtol=1e-9)
    np.testing.assert_allclose(other["tc"] - want["tc"], (3 - 1) * math.log(10), rtol=1e-9)


def test_decomposition_sums_to_the_monte_carlo_kl():
    z, mean, log_var = _fixed(m=16, d=5, seed=1)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    dens = btcvae.mws_log_densities(f32(z), f32(mean), f32(log_var), 60_000)
    parts = btcvae.decomposition(dens)
    total = parts["mi"] + parts["tc"] + parts["dwkl"]
    np.testing.assert_allclose(
        np.asarray(total), np.asarray(dens["log_qz_x"] - dens["log_pz"]), rtol=1e-6, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(total), _mws_numpy(z, mean, log_var, 60_000)["kl_mc"], rtol=1e-5, atol=1e-4
    )


def test_loss_with_unit_weights_is_recon_plus_the_mc_kl():
    model = _model(alpha=1.0, beta=1.0, gamma=1.0)
    params, state = model.init(jax.random.key(0))
    batch = {"image": jnp.asarray(_images(9)), "label": jnp.zeros((9,), jnp.int32)}
    key = jax.random.key(5)
    loss, terms, new_state = model.loss(params, state, batch, key, kl_weight=1.0)
    assert new_state == {}
    mean, log_var = model.q_params(params, batch)
    z = dist.reparameterize(key, mean, log_var)
    recon = -model.decode(params, state, z).log_prob(batch["image"])
    kl_mc = dist.diag_gaussian_log_prob(z, mean, log_var) - dist.standard_normal_log_prob(z)
    np.testing.assert_allclose(float(loss), float(jnp.mean(recon + kl_mc)), rtol=1e-6)
    # The terms: the analytic KL, and MI + TC + DWKL = the MC KL.
    np.testing.assert_allclose(
        float(terms["kl"]), float(jnp.mean(jnp.sum(dist.gaussian_kl(mean, log_var), -1))), rtol=1e-6
    )
    np.testing.assert_allclose(
        float(terms["mi"] + terms["tc"] + terms["dwkl"]),
        float(jnp.mean(kl_mc)),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        float(terms["elbo"]), -float(terms["recon"] + terms["kl"]), rtol=1e-6
    )


def test_loss_weights_each_term_and_the_schedule_scales_all():
    model = _model(alpha=0.5, beta=6.0, gamma=2.0)
    params, state = model.init(jax.random.key(1))
    batch = {"image": jnp.asarray(_images(8)), "label": jnp.zeros((8,), jnp.int32)}
    key = jax.random.key(2)
    loss, t, _ = model.loss(params, state, batch, key, kl_weight=0.3)
    penalty = 0.5 * t["mi"] + 6.0 * t["tc"] + 2.0 * t["dwkl"]
    np.testing.assert_allclose(float(loss), float(t["recon"] + 0.3 * penalty), rtol=1e-6)
    # The estimates in the terms are those of the MWS formulas at the loss's z.
    mean, log_var = model.q_params(params, batch)
    z = dist.reparameterize(key, mean, log_var)
    want = _mws_numpy(*(np.asarray(a, np.float64) for a in (z, mean, log_var)), 500)
    for name in ("mi", "tc", "dwkl"):
        np.testing.assert_allclose(float(t[name]), np.mean(want[name]), rtol=1e-4, atol=1e-4)


def test_eval_terms_are_the_vae_figures_plus_the_decomposition():
    model = _model()
    params, state = model.init(jax.random.key(3))
    batch = {"image": jnp.asarray(_images(10)), "label": jnp.zeros((10,), jnp.int32)}
    key = jax.random.key(4)
    ev = model.eval_terms(params, state, batch, key)
    vae = models.get("vae")(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=3)
    ref = vae.eval_terms(params, state, batch, key)
    for name in ("nelbo", "recon", "kl", "posterior_mean", "kl_dims"):
        np.testing.assert_array_equal(np.asarray(ev[name]), np.asarray(ref[name]), err_msg=name)
    mean, log_var = model.q_params(params, batch)
    z = dist.reparameterize(key, mean, log_var)
    want = _mws_numpy(*(np.asarray(a, np.float64) for a in (z, mean, log_var)), 500)
    for name in ("mi", "tc", "dwkl"):
        assert ev[name].shape == (10,)
        np.testing.assert_allclose(np.asarray(ev[name]), want[name], rtol=1e-4, atol=1e-4)
    # Same log-weights as the VAE: the NLL compares directly.
    lw = model.log_weights(params, state, batch, key, 3)
    np.testing.assert_array_equal(
        np.asarray(lw), np.asarray(vae.log_weights(params, state, batch, key, 3))
    )


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="beta"):
        _model(beta=-1.0)
    with pytest.raises(ValueError, match="free_bits"):
        _model(free_bits=0.5)
    config = config_lib.load_config_file(os.path.join(CONFIGS, "btcvae.py"))
    config_lib.apply_overrides(config, ["model.btcvae.free_bits=0.5"])
    with pytest.raises(ValueError, match="free_bits"):
        config_lib.validate(config)
