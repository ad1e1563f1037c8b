"""Decoder likelihoods against independent float64 numpy/scipy computations: the discretized
logistic mixture's bin probabilities (logistic CDF differences, the two edge bins take the tails),
its normalisation over the 256 levels, mean and samples; Bernoulli and Gaussian pixels."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from jaxvae import likelihoods, models
from jaxvae import summary as summary_lib


def _mixture_params(shape, k, seed, log_scale=(-4.0, -1.0)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(*shape, k))
    loc = rng.uniform(-0.95, 0.95, size=(*shape, k))
    log_s = rng.uniform(*log_scale, size=(*shape, k))
    return logits, loc, log_s


def _np_log_prob(v, logits, loc, log_s):
    """float64 ``log sum_k pi_k P_k(v)`` per pixel for 8-bit values ``v``, with ``P_k(0) =
    F((-1 + 1/255 - mu)/s)``, ``P_k(255) = 1 - F((1 - 1/255 - mu)/s)``, and otherwise
    ``F((y + 1/255 - mu)/s) - F((y - 1/255 - mu)/s)``, ``y = 2 v / 255 - 1``, ``F`` the logistic
    CDF (scipy.stats.logistic)."""
    y = (2.0 * np.asarray(v, np.float64) / 255.0 - 1.0)[..., None]
    s = np.exp(log_s)
    upper = stats.logistic.logcdf(y + 1 / 255, loc, s)
    lower_sf = stats.logistic.logsf(y - 1 / 255, loc, s)
    # log(F(b) - F(a)) = log F(b) + log(1 - exp(log F(a) - log F(b))), in float64.
    with np.errstate(divide="ignore"):  # -inf only in the edge bins, which do not use it
        log_mid = upper + np.log1p(-np.exp(stats.logistic.logcdf(y - 1 / 255, loc, s) - upper))
    vv = np.asarray(v)[..., None]
    log_bin = np.where(vv == 0, upper, np.where(vv == 255, lower_sf, log_mid))
    log_pi = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    return special.logsumexp(log_pi + log_bin, axis=-1)


def _dist(logits, loc, log_s):
    f = lambda a: jnp.asarray(a, jnp.float32)
    return likelihoods.DiscretizedLogisticMixture(f(logits), f(loc), f(log_s))


def test_logistic_mixture_log_prob_matches_numpy():
    shape, k = (4, 5, 6, 3), 5  # [N, H, W, C], channels independent
    logits, loc, log_s = _mixture_params(shape, k, seed=0)
    v = np.random.default_rng(1).integers(0, 256, size=shape)
    v[:, 0, 0, 0], v[:, 0, 1, 1] = 0, 255  # both edge bins in every image
    got = np.asarray(_dist(logits, loc, log_s).log_prob(jnp.asarray(v / 255.0, jnp.float32)))
    want = np.sum(_np_log_prob(v, logits, loc, log_s).reshape(shape[0], -1), axis=-1)
    assert got.shape == (shape[0],)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-3)


@pytest.mark.parametrize("v", [0, 1, 127, 254, 255])
def test_logistic_edge_and_inner_bins_per_pixel(v):
    """One component, one pixel: the bin's float64 probability, and the edges take the tails
    (the component sits near the bin, so the exact CDF-difference branch applies)."""
    y, s = 2 * v / 255 - 1, math.exp(-2.0)
    mu = 0.8 * y
    loc, log_s = np.full((1, 1, 1, 1, 1), mu), np.full((1, 1, 1, 1, 1), -2.0)
    logits = np.zeros_like(loc)
    got = float(_dist(logits, loc, log_s).log_prob(jnp.full((1, 1, 1, 1), v / 255.0))[0])
    cdf = lambda t: 1 / (1 + math.exp(-(t - mu) / s))
    p = {0: cdf(y + 1 / 255), 255: 1 - cdf(y - 1 / 255)}.get(v, cdf(y + 1 / 255) - cdf(y - 1 / 255))
    np.testing.assert_allclose(got, math.log(p), rtol=1e-5, atol=1e-5)


def test_logistic_far_tail_bins_use_the_density_approximation():
    """Where F(b) - F(a) underflows float32 (< 1e-5), the log density times the bin width is
    used; it is within 1e-3 nats of the float64 bin probability for a scale of 0.05."""
    loc, log_s = np.full((1, 1, 1, 4, 1), -0.6), np.full((1, 1, 1, 4, 1), math.log(0.05))
    v = np.array([[[[200, 220, 240, 250]]]])
    logits = np.zeros_like(loc)
    got = np.asarray(_dist(logits, loc, log_s).log_prob(jnp.asarray(v / 255.0, jnp.float32)))
    per_pixel = _np_log_prob(v, logits, loc, log_s)
    assert np.all(np.exp(per_pixel) < 1e-5)  # the approximation's branch
    np.testing.assert_allclose(got, per_pixel.sum(), rtol=1e-4)


@pytest.mark.parametrize("log_scale", [(-7.0, -6.0), (-4.0, -1.0), (-1.0, 0.5)])
def test_logistic_probabilities_over_256_values_sum_to_one(log_scale):
    logits, loc, log_s = _mixture_params((1, 1, 1, 1), 3, seed=4, log_scale=log_scale)
    loc[..., 0] = -1.0  # mass on the edge bins too
    d = _dist(*(np.repeat(a, 256, axis=0) for a in (logits, loc, log_s)))
    values = jnp.arange(256, dtype=jnp.float32).reshape(256, 1, 1, 1) / 255.0
    log_p = np.asarray(d.log_prob(values), np.float64)
    np.testing.assert_allclose(special.logsumexp(log_p), 0.0, atol=2e-5)


def test_logistic_mean_and_samples():
    shape, k = (2, 3, 3, 2), 4
    logits, loc, log_s = _mixture_params(shape, k, seed=5, log_scale=(-5.0, -3.0))
    d = _dist(logits, loc, log_s)
    mean = np.asarray(d.mean())
    assert mean.shape == shape and mean.min() >= 0 and mean.max() <= 1
    # The mean of the discretized mixture in [0, 1] (its components lie well inside).
    v = np.arange(256)
    probs = np.exp(_np_log_prob(v.reshape(256, 1, 1, 1, 1), logits, loc, log_s))  # [256, ...]
    np.testing.assert_allclose(mean, np.tensordot(v / 255, probs, axes=1), atol=2e-3)
    x = np.asarray(d.sample(jax.random.key(0)))
    assert x.shape == shape and x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)  # on the 8-bit grid


def test_logistic_samples_follow_the_bin_probabilities():
    """20,000 draws of one pixel: the frequency of each level matches exp(log_prob) (chi-square)."""
    logits = np.array([0.0, 0.5, -0.5]).reshape(1, 1, 1, 1, 3)
    loc = np.array([-0.9, 0.1, 0.8]).reshape(1, 1, 1, 1, 3)
    log_s = np.array([-2.0, -3.0, -2.5]).reshape(1, 1, 1, 1, 3)
    n = 20_000
    d = _dist(*(np.repeat(a, n, axis=0) for a in (logits, loc, log_s)))
    v = np.round(np.asarray(d.sample(jax.random.key(1))).ravel() * 255).astype(int)
    p = np.exp(_np_log_prob(np.arange(256).reshape(256, 1, 1, 1), logits[0], loc[0], log_s[0]))
    p = p.ravel()
    # Pool the levels into 16 groups of 16 so that every expected count is large.
    observed = np.bincount(v // 16, minlength=16)
    expected = n * p.reshape(16, 16).sum(axis=1)
    keep = expected > 20
    chi2 = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


def test_logistic_likelihood_unpacks_the_decoder_output():
    """3K values per channel: mixture logits, locations (tanh), log scales (floored at -7)."""
    lik = likelihoods.make("logistic_mixture", image_shape=(2, 2, 3), num_mixtures=4)
    assert lik.output_shape == (2, 2, 3 * 12) and lik.discrete_8bit
    raw = np.random.default_rng(6).normal(size=(2, 2, 2, 36)) * 2
    parts = raw.reshape(2, 2, 2, 3, 3, 4)
    v = np.random.default_rng(7).integers(0, 256, size=(2, 2, 2, 3))
    got = np.asarray(lik.distribution(jnp.asarray(raw, jnp.float32), {}).log_prob(v / 255.0))
    loc, log_s = np.tanh(parts[..., 1, :]), np.maximum(parts[..., 2, :], -7.0)
    want = _np_log_prob(v, parts[..., 0, :], loc, log_s).reshape(2, -1).sum(-1)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-3)


def test_bernoulli_log_prob_matches_scipy():
    lik = likelihoods.make("bernoulli", image_shape=(3, 4, 1))
    rng = np.random.default_rng(8)
    raw = rng.normal(size=(5, 3, 4, 1)) * 3
    d = lik.distribution(jnp.asarray(raw, jnp.float32), {})
    x = (rng.random((5, 3, 4, 1)) > 0.5).astype(np.float64)
    want = stats.bernoulli.logpmf(x, special.expit(raw)).reshape(5, -1).sum(-1)
    np.testing.assert_allclose(np.asarray(d.log_prob(jnp.asarray(x, jnp.float32))), want, rtol=1e-5)
    # Continuous targets in [0, 1]: x log p + (1 - x) log(1 - p).
    x = rng.random((5, 3, 4, 1))
    want = (x * special.log_expit(raw) + (1 - x) * special.log_expit(-raw)).reshape(5, -1).sum(-1)
    np.testing.assert_allclose(np.asarray(d.log_prob(jnp.asarray(x, jnp.float32))), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(d.mean()), special.expit(raw), rtol=1e-5)


@pytest.mark.parametrize("name", ["gaussian", "gaussian_learned"])
def test_gaussian_log_prob_matches_scipy(name):
    lik = likelihoods.make(name, image_shape=(3, 4, 1), gaussian_std=0.2)
    params = lik.init(jax.random.key(0))
    rng = np.random.default_rng(9)
    std = np.full((3, 4, 1), 0.2)
    if name == "gaussian_learned":
        std = rng.uniform(0.05, 0.5, size=(3, 4, 1))
        params = {"log_scale": jnp.asarray(np.log(std), jnp.float32)}
    raw = rng.normal(size=(5, 3, 4, 1))
    x = rng.random((5, 3, 4, 1))
    d = lik.distribution(jnp.asarray(raw, jnp.float32), params)
    want = stats.norm.logpdf(x, special.expit(raw), std).reshape(5, -1).sum(-1)
    np.testing.assert_allclose(np.asarray(d.log_prob(jnp.asarray(x, jnp.float32))), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(d.mean()), special.expit(raw), rtol=1e-5)


def test_bits_per_dim_only_for_8bit_likelihoods():
    np.testing.assert_allclose(
        likelihoods.bits_per_dim(1000.0, (28, 28, 1)), 1000.0 / (784 * math.log(2))
    )
    figures = {"test_nelbo": 1500.0, "test_nll": 1400.0}
    vae = models.get("vae")
    logistic = vae(
        image_shape=(28, 28, 1),
        likelihood=likelihoods.make("logistic_mixture", image_shape=(28, 28, 1)),
    )
    bits = summary_lib.nats_in_bits(logistic, figures)
    np.testing.assert_allclose(bits["test_bpd_nelbo"], 1500.0 / (784 * math.log(2)))
    np.testing.assert_allclose(bits["test_bpd_nll"], 1400.0 / (784 * math.log(2)))
    assert summary_lib.nats_in_bits(vae(image_shape=(28, 28, 1)), figures) == {}
