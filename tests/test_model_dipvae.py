"""The DIP-VAE-I and -II families against an independent float64 numpy computation of the batch
covariances and the penalty (values and gradients); their losses against the VAE's; shrunk runs
of their configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import models
from jaxvae.models import dipvae

IMAGE = (4, 4, 1)
D = 4


def _model(kind, **kw):
    kw = dict(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=D) | kw
    return models.get(kind)(**kw)


def _batch(n, seed=3):
    images = (np.random.default_rng(seed).random((n, *IMAGE)) > 0.5).astype(np.float32)
    return {"image": jnp.asarray(images), "label": jnp.zeros((n,), jnp.int32)}


def _np_cov(mean, log_var, kind):
    cov = np.cov(mean, rowvar=False, bias=True)
    if kind == "dipvae_ii":
        cov = cov + np.diag(np.mean(np.exp(log_var), axis=0))
    return cov


def _np_penalty(cov, lambda_od, lambda_d):
    total = 0.0
    for k in range(cov.shape[0]):
        for j in range(cov.shape[1]):
            if k == j:
                total += lambda_d * (cov[k, k] - 1.0) ** 2
            else:
                total += lambda_od * cov[k, j] ** 2
    return total


def _fixed(m=9, seed=0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(m, D)) @ rng.normal(size=(D, D))  # correlated dimensions
    return mean, rng.uniform(-2.0, 0.5, size=(m, D))


def test_covariances_and_penalty_match_numpy():
    mean, log_var = _fixed()
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    np.testing.assert_allclose(
        np.asarray(dipvae.covariance_of_means(f32(mean))),
        _np_cov(mean, log_var, "dipvae_i"),
        rtol=1e-4,
        atol=1e-5,
    )
    agg = _np_cov(mean, log_var, "dipvae_ii")
    np.testing.assert_allclose(
        np.asarray(dipvae.aggregate_covariance(f32(mean), f32(log_var))), agg, rtol=1e-4, atol=1e-5
    )
    got = dipvae.dip_penalty(f32(agg), 3.0, 0.5)
    np.testing.assert_allclose(float(got), _np_penalty(agg, 3.0, 0.5), rtol=1e-5)
    # The identity costs nothing; each weight acts on its own entries.
    assert float(dipvae.dip_penalty(jnp.eye(D), 3.0, 0.5)) == 0.0
    np.testing.assert_allclose(
        float(dipvae.dip_penalty(f32(agg), 0.0, 1.0)), np.sum((np.diag(agg) - 1) ** 2), rtol=1e-5
    )


@pytest.mark.parametrize("kind", ["dipvae_i", "dipvae_ii"])
def test_penalty_gradient_matches_numpy_finite_differences(kind):
    mean, log_var = _fixed(m=7, seed=1)
    model = _model(kind, lambda_od=2.0)

    def penalty(mean, log_var):
        cov = model.covariance(mean, log_var)
        return dipvae.dip_penalty(cov, model.lambda_od, model.lambda_d)

    g_mean, g_log_var = jax.grad(penalty, argnums=(0, 1))(
        jnp.asarray(mean, jnp.float32), jnp.asarray(log_var, jnp.float32)
    )
    lam_d = {"dipvae_i": 20.0, "dipvae_ii": 2.0}[kind]
    f = lambda m, lv: _np_penalty(_np_cov(m, lv, kind), 2.0, lam_d)
    h = 1e-6
    for arr, grad in ((mean, g_mean), (log_var, g_log_var)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            up, down = arr.copy(), arr.copy()
            up[idx] += h
            down[idx] -= h
            if arr is mean:
                num[idx] = (f(up, log_var) - f(down, log_var)) / (2 * h)
            else:
                num[idx] = (f(mean, up) - f(mean, down)) / (2 * h)
        np.testing.assert_allclose(np.asarray(grad), num, rtol=2e-3, atol=2e-3)
    if kind == "dipvae_i":  # the means' covariance does not see the variances
        assert not np.any(np.asarray(g_log_var))
    else:
        assert np.any(np.abs(np.asarray(g_log_var)) > 1e-3)


@pytest.mark.parametrize(("kind", "factor"), [("dipvae_i", 10.0), ("dipvae_ii", 1.0)])
def test_loss_is_the_vae_loss_plus_the_penalty(kind, factor):
    model = _model(kind, lambda_od=1.5)
    assert model.lambda_d == 1.5 * factor  # disentanglement_lib's lambda_d per variant
    vae = models.get("vae")(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=D)
    params, state = model.init(jax.random.key(0))
    batch, key = _batch(12), jax.random.key(1)
    loss, terms, new_state = model.loss(params, state, batch, key, kl_weight=0.3)
    assert new_state == {}
    vae_loss, vae_terms, _ = vae.loss(params, state, batch, key, kl_weight=0.3)
    mean, log_var = (np.asarray(a, np.float64) for a in model.q_params(params, batch))
    want = _np_penalty(_np_cov(mean, log_var, kind), 1.5, 1.5 * factor)
    assert want > 1e-2
    np.testing.assert_allclose(float(terms["dip"]), want, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(vae_loss) + want, rtol=1e-5)
    for name in ("recon", "kl", "elbo"):
        np.testing.assert_allclose(float(terms[name]), float(vae_terms[name]), rtol=1e-6)
    ev = model.eval_terms(params, state, batch, key)
    ref = vae.eval_terms(params, state, batch, key)
    for name in ("nelbo", "recon", "kl", "posterior_mean", "kl_dims"):
        np.testing.assert_array_equal(np.asarray(ev[name]), np.asarray(ref[name]), err_msg=name)
    np.testing.assert_allclose(np.asarray(ev["dip"]), np.full(12, want), rtol=1e-4)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="lambda_od"):
        _model("dipvae_i", lambda_od=-1.0)
    with pytest.raises(ValueError, match="lambda_d_factor"):
        _model("dipvae_ii", lambda_d_factor="x")
