"""The public posterior q(z|x): a distribution with mean, stddev, sample and log_prob, checked
against scipy, for the families that have one; the others lack the method."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from jaxvae import distributions as dist
from jaxvae import models


def _batch(n=6, seed=0):
    x = jax.random.uniform(jax.random.key(seed), (n, 28, 28, 1))
    return {"image": x, "label": jnp.zeros((n,), jnp.int32)}


def test_vae_posterior_matches_scipy_and_the_encoder():
    model = models.get("vae")(architecture="mlp", hidden=(32,), latent_dim=3)
    params, state = model.init(jax.random.key(0))
    batch = _batch()
    q = model.posterior(params, state, batch)
    mean, std = np.asarray(q.mean()), np.asarray(q.stddev())
    np.testing.assert_allclose(mean, np.asarray(model.encode(params, state, batch)), rtol=1e-6)
    z = np.asarray(q.sample(jax.random.key(1)))
    expected = scipy.stats.norm.logpdf(z, mean, std).sum(-1)
    np.testing.assert_allclose(np.asarray(q.log_prob(z)), expected, rtol=1e-5)


def test_posterior_samples_have_its_moments():
    q = dist.DiagGaussian(jnp.array([[1.0, -2.0]]), jnp.log(jnp.array([[0.25, 4.0]])))
    z = np.asarray(q.sample(jax.random.key(0), 20000))
    assert z.shape == (20000, 1, 2)
    se = np.array([0.5, 2.0]) / np.sqrt(20000)
    assert np.all(np.abs(z.mean(0)[0] - [1.0, -2.0]) < 4 * se)  # within 4 standard errors
    np.testing.assert_allclose(z.std(0)[0], [0.5, 2.0], rtol=0.03)
    lp = np.asarray(q.log_prob(z))
    assert lp.shape == (20000, 1)


def test_families_with_a_gaussian_posterior_have_one_and_the_others_do_not():
    for name in ("vae", "cvae", "btcvae", "vampprior", "hvae"):
        assert hasattr(models.get(name), "posterior"), name
    for name in ("ae", "dae", "vqvae"):  # a code, not a distribution
        assert not hasattr(models.get(name), "posterior"), name
    hvae = models.get("hvae")(
        architecture="mlp", hidden=(16,), latent_dim=3, z2_dim=2, hidden2=(8,)
    )
    params, state = hvae.init(jax.random.key(0))
    q = hvae.posterior(params, state, _batch())
    np.testing.assert_allclose(q.mean(), hvae.encode(params, state, _batch()), rtol=1e-6)


def test_load_run_posterior_of_a_trained_run(tmp_path):
    """``jaxvae.load_run(W).posterior(x)`` equals the family's functional posterior at the saved
    parameters; an autoencoder's run refuses in one line."""
    import os

    import jaxvae
    from jaxvae import config as config_lib
    from tests.conftest import CONFIGS

    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))
    config.train.epochs = 1
    jaxvae.train(config, str(tmp_path / "vae"))
    run = jaxvae.load_run(str(tmp_path / "vae"))
    x = np.asarray(_batch(4)["image"])
    q = run.posterior(x)
    ref = run.model.posterior(run.params, run.state, _batch(4))
    np.testing.assert_allclose(q.mean(), ref.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.stddev(), ref.stddev(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.mean(), run.encode(x), rtol=1e-5, atol=1e-6)
