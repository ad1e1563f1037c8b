"""Tests for jaxvae.distributions against scipy and float64 numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from jaxvae import distributions as dist

# --------------------------------------------------------------------------------------------
# gaussian_kl
# --------------------------------------------------------------------------------------------

KL_CASES = [(0.0, 0.0), (1.3, 0.0), (-0.7, 1.2), (0.4, -2.5), (2.0, -0.3), (-1.5, 2.0)]


def _kl_quad(mean: float, log_var: float) -> float:
    """KL(q || p) by numerical integration of q(z) (log q(z) - log p(z))."""
    std = np.exp(0.5 * log_var)
    q = scipy.stats.norm(mean, std)
    p = scipy.stats.norm(0.0, 1.0)
    integrand = lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z))
    value, _ = scipy.integrate.quad(integrand, mean - 30 * std, mean + 30 * std, limit=200)
    return value


def test_gaussian_kl_matches_numerical_integration():
    means = np.array([m for m, _ in KL_CASES], np.float32)
    log_vars = np.array([v for _, v in KL_CASES], np.float32)
    kl = np.asarray(dist.gaussian_kl(means, log_vars))
    expected = np.array(
        [_kl_quad(float(m), float(v)) for m, v in zip(means, log_vars, strict=True)]
    )
    assert kl.shape == means.shape  # per dimension, not summed
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)


def test_gaussian_kl_matches_float64_closed_form_elementwise():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 7)) * 2
    log_var = rng.normal(size=(5, 7))
    kl = np.asarray(dist.gaussian_kl(mean.astype(np.float32), log_var.astype(np.float32)))
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2.
    s = np.exp(0.5 * log_var)
    expected = -np.log(s) + 0.5 * (s**2 + mean**2) - 0.5
    assert kl.shape == (5, 7)
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)
    assert np.all(kl >= 0)
    assert float(dist.gaussian_kl(0.0, 0.0)) == 0.0


# --------------------------------------------------------------------------------------------
# bernoulli_log_prob
# --------------------------------------------------------------------------------------------


def test_bernoulli_log_prob_binary_matches_scipy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 3, 5, 2)).astype(np.float32) * 3
    x = (rng.uniform(size=logits.shape) < 0.5).astype(np.float32)
    lp = np.asarray(dist.bernoulli_log_prob(x, logits))
    p = scipy.special.expit(logits.astype(np.float64))
    expected = scipy.stats.bernoulli.logpmf(x.astype(int), p).sum(axis=(1, 2, 3))
    assert lp.shape == (4,)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_bernoulli_log_prob_continuous_matches_float64_formula():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 10)) * 4
    x = rng.uniform(size=logits.shape)
    lp = np.asarray(dist.bernoulli_log_prob(x.astype(np.float32), logits.astype(np.float32)))
    sig = scipy.special.expit(logits)
    expected = np.sum(x * np.log(sig) + (1 - x) * np.log(1 - sig), axis=1)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_bernoulli_log_prob_batch_dims_2():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    x = rng.uniform(size=logits.shape).astype(np.float32)
    lp = np.asarray(dist.bernoulli_log_prob(x, logits, batch_dims=2))
    log_sig = lambda t: -np.logaddexp(0.0, -t.astype(np.float64))
    expected = np.sum(x * log_sig(logits) + (1 - x) * log_sig(-logits), axis=(2, 3))
    assert lp.shape == (2, 3)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_bernoulli_log_prob_stable_for_large_logits():
    logits = np.array([[100.0, -100.0, 100.0, -100.0, 95.0, -120.0, 88.0, -88.0]], np.float32)
    for x in (
        np.array([[1, 0, 0, 1, 1, 0, 0.3, 0.7]], np.float32),
        np.array([[0.5, 0.5, 0.2, 0.9, 0.0, 1.0, 1.0, 0.0]], np.float32),
    ):
        lp = np.asarray(dist.bernoulli_log_prob(x, logits))
        l64, x64 = logits.astype(np.float64), x.astype(np.float64)
        # log sigmoid(l) = -log(1 + exp(-l)), evaluated stably in float64.
        expected = np.sum(x64 * -np.logaddexp(0, -l64) + (1 - x64) * -np.logaddexp(0, l64))
        assert np.all(np.isfinite(lp))
        np.testing.assert_allclose(lp, [expected], rtol=1e-6)
        grad = jax.grad(lambda lg, x=x: jnp.sum(dist.bernoulli_log_prob(x, lg)))(logits)
        assert np.all(np.isfinite(np.asarray(grad)))
        # d/dl [x log sig(l) + (1 - x) log sig(-l)] = x - sigmoid(l).
        np.testing.assert_allclose(grad, x64 - scipy.special.expit(l64), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Gaussian densities
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_scale_shape", [(), (1,), (3,), (5, 4, 3), (2, 5, 4, 3), (1, 5, 1, 1)])
def test_gaussian_log_prob_matches_scipy_with_broadcast_scale(log_scale_shape):
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(2, 5, 4, 3)).astype(np.float32)
    mean = rng.uniform(size=(2, 5, 4, 3)).astype(np.float32)
    log_scale = (rng.normal(size=log_scale_shape) * 0.5 - 1.0).astype(np.float32)
    lp = np.asarray(dist.gaussian_log_prob(x, mean, log_scale))
    scale = np.broadcast_to(np.exp(log_scale.astype(np.float64)), x.shape)
    expected = scipy.stats.norm.logpdf(x, mean, scale).sum(axis=(1, 2, 3))
    assert lp.shape == (2,)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_gaussian_log_prob_broadcast_mean_and_batch_dims_2():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4, 6)).astype(np.float32)
    mean = rng.normal(size=(3, 1, 6)).astype(np.float32)
    log_scale = rng.normal(size=(6,)).astype(np.float32) * 0.3
    lp = np.asarray(dist.gaussian_log_prob(x, mean, log_scale, batch_dims=2))
    expected = scipy.stats.norm.logpdf(x, mean, np.exp(log_scale.astype(np.float64))).sum(-1)
    assert lp.shape == (3, 4)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_diag_gaussian_log_prob_matches_multivariate_normal():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(5, 4)).astype(np.float32)
    mean = rng.normal(size=(5, 4)).astype(np.float32)
    log_var = rng.normal(size=(5, 4)).astype(np.float32)
    lp = np.asarray(dist.diag_gaussian_log_prob(z, mean, log_var))
    expected = [
        scipy.stats.multivariate_normal(mean[i], np.diag(np.exp(log_var[i].astype(float)))).logpdf(
            z[i]
        )
        for i in range(5)
    ]
    assert lp.shape == (5,)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_diag_gaussian_log_prob_batch_dims_2_broadcasts_like_iwae():
    rng = np.random.default_rng(7)
    b, k, d = 3, 6, 4
    z = rng.normal(size=(b, k, d)).astype(np.float32)
    mean = rng.normal(size=(b, d)).astype(np.float32)
    log_var = rng.normal(size=(b, d)).astype(np.float32)
    lp = np.asarray(dist.diag_gaussian_log_prob(z, mean[:, None], log_var[:, None], batch_dims=2))
    expected = np.array(
        [
            scipy.stats.multivariate_normal(
                mean[i], np.diag(np.exp(log_var[i].astype(float)))
            ).logpdf(z[i])
            for i in range(b)
        ]
    )
    assert lp.shape == (b, k)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_standard_normal_log_prob_matches_scipy():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(4, 5, 3)).astype(np.float32) * 2
    mvn = scipy.stats.multivariate_normal(np.zeros(3), np.eye(3))
    lp1 = np.asarray(dist.standard_normal_log_prob(z))
    lp2 = np.asarray(dist.standard_normal_log_prob(z, batch_dims=2))
    assert lp1.shape == (4,) and lp2.shape == (4, 5)
    np.testing.assert_allclose(lp2, mvn.logpdf(z), rtol=1e-5)
    np.testing.assert_allclose(lp1, mvn.logpdf(z).sum(axis=1), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# reparameterize
# --------------------------------------------------------------------------------------------


def test_reparameterize_sample_moments():
    n = 40_000
    mean = np.array([0.0, 2.0, -1.5], np.float32)
    log_var = np.array([0.0, -2.0, 1.0], np.float32)
    z = dist.reparameterize(
        jax.random.key(0), np.broadcast_to(mean, (n, 3)), np.broadcast_to(log_var, (n, 3))
    )
    assert z.shape == (n, 3) and z.dtype == jnp.float32
    z = np.asarray(z, np.float64)
    var = np.exp(log_var.astype(np.float64))
    # 5-sigma bounds: se(mean) = sd / sqrt(n); se(var) ~= var * sqrt(2 / (n - 1)).
    assert np.all(np.abs(z.mean(0) - mean) < 5 * np.sqrt(var / n))
    assert np.all(np.abs(z.var(0, ddof=1) - var) < 5 * var * np.sqrt(2 / (n - 1)))
    # Normality check of the standardised samples (not just two moments).
    standardised = (z - mean) / np.sqrt(var)
    for d in range(3):
        assert scipy.stats.kstest(standardised[:, d], "norm").pvalue > 1e-4


def test_reparameterize_keys_and_dtype():
    mean, log_var = jnp.zeros((100, 2)), jnp.zeros((100, 2))
    a = dist.reparameterize(jax.random.key(1), mean, log_var)
    b = dist.reparameterize(jax.random.key(1), mean, log_var)
    c = dist.reparameterize(jax.random.key(2), mean, log_var)
    assert a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_reparameterize_gradients_flow_to_mean_and_log_var():
    n = 40_000
    key = jax.random.key(3)

    def sample(m, lv):
        return dist.reparameterize(key, jnp.full((n,), m), jnp.full((n,), lv))

    m, lv = 0.7, -0.4
    # E[z] = m: d/dm = 1 exactly, d/dlv = 0.5 * mean(sd * eps) ~= 0.
    g_m, g_lv = jax.grad(lambda a, b: jnp.mean(sample(a, b)), argnums=(0, 1))(m, lv)
    sd = np.exp(0.5 * lv)
    np.testing.assert_allclose(g_m, 1.0, rtol=1e-5)
    assert abs(float(g_lv)) < 5 * 0.5 * sd / np.sqrt(n)
    # E[z^2] = m^2 + exp(lv): d/dm = 2m, d/dlv = exp(lv). The pathwise estimates are averages of
    # 2z (sd 2 * sd) and z * sd * eps (variance m^2 sd^2 + 2 sd^4).
    g_m, g_lv = jax.grad(lambda a, b: jnp.mean(sample(a, b) ** 2), argnums=(0, 1))(m, lv)
    assert abs(float(g_m) - 2 * m) < 5 * 2 * sd / np.sqrt(n)
    assert abs(float(g_lv) - sd**2) < 5 * np.sqrt(m**2 * sd**2 + 2 * sd**4) / np.sqrt(n)
    # Per-element: dz/dlog_var = 0.5 * (z - mean).
    m_arr, lv_arr = jnp.array([0.3, -1.0]), jnp.array([0.2, -0.8])
    z = dist.reparameterize(key, m_arr, lv_arr)
    jac = jax.jacobian(lambda b: dist.reparameterize(key, m_arr, b))(lv_arr)
    np.testing.assert_allclose(np.diag(jac), 0.5 * (z - m_arr), rtol=1e-5)


def test_softplus_matches_float64_and_its_gradient_is_the_sigmoid():
    x = np.concatenate([np.linspace(-100, 100, 2001), [0.0, -1e-8, 1e-8, 88.0, -88.0]])
    x32 = jnp.asarray(x, jnp.float32)
    expected = np.logaddexp(0.0, np.asarray(x32, np.float64))
    np.testing.assert_allclose(np.asarray(dist.softplus(x32)), expected, rtol=2e-7, atol=2e-7)
    grad = jax.vmap(jax.grad(dist.softplus))(x32)
    np.testing.assert_allclose(
        np.asarray(grad), scipy.special.expit(np.asarray(x32, np.float64)), atol=2e-7
    )


def test_pairwise_log_prob_is_the_broadcast_one_and_its_gradient_the_numpy_formula():
    """The value equals diag_gaussian_log_prob of the broadcast difference bit for bit; the
    hand-written gradient equals the derivative computed in float64 numpy."""
    k = jax.random.split(jax.random.key(3), 4)
    z = jax.random.normal(k[0], (9, 6))
    mean = jax.random.normal(k[1], (13, 6))
    log_var = 0.7 * jax.random.normal(k[2], (13, 6))
    w = jax.random.normal(k[3], (9, 13))
    got = dist.pairwise_diag_gaussian_log_prob(z, mean, log_var)
    want = dist.diag_gaussian_log_prob(z[:, None, :], mean, log_var, batch_dims=2)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    grads = jax.grad(
        lambda *a: jnp.sum(w * dist.pairwise_diag_gaussian_log_prob(*a)), argnums=(0, 1, 2)
    )(z, mean, log_var)
    z_, m_, lv_, w_ = (np.asarray(a, np.float64) for a in (z, mean, log_var, w))
    diff = z_[:, None, :] - m_[None]  # [N, K, D]
    p = np.exp(-lv_)[None]
    want_dz = np.einsum("nk,nkd->nd", w_, -diff * p)
    want_dm = np.einsum("nk,nkd->kd", w_, diff * p)
    want_dlv = np.einsum("nk,nkd->kd", w_, -0.5 * (1.0 - diff**2 * p))
    for g, ref in zip(grads, (want_dz, want_dm, want_dlv), strict=True):
        np.testing.assert_allclose(np.asarray(g), ref, rtol=2e-5, atol=2e-5)
