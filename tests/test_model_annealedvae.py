"""The AnnealedVAE family against an independent numpy computation of its capacity schedule and
loss at traced steps; its gradient against the VAE's where the sign of KL - C is fixed; a shrunk
run of its config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import models
from jaxvae.models import annealedvae

IMAGE = (4, 4, 1)


def _model(**kw):
    kw = dict(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=3) | kw
    return models.get("annealedvae")(**kw)


def _vae():
    return models.get("vae")(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=3)


def _batch(n, seed=3):
    images = (np.random.default_rng(seed).random((n, *IMAGE)) > 0.5).astype(np.float32)
    return {"image": jnp.asarray(images), "label": jnp.zeros((n,), jnp.int32)}


def test_capacity_grows_linearly_then_holds():
    steps = np.array([0, 1, 37, 250, 999, 1000, 1001, 5000], np.int32)
    got = jax.jit(jax.vmap(lambda s: annealedvae.capacity(s, 25.0, 1000)))(jnp.asarray(steps))
    want = np.minimum(25.0, 25.0 * steps.astype(np.float64) / 1000)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def test_loss_matches_numpy_at_traced_steps():
    model = _model(gamma=50.0, c_max=4.0, iteration_threshold=100)
    params, state = model.init(jax.random.key(0))
    batch, key = _batch(10), jax.random.key(1)
    _, vae_terms, _ = _vae().loss(params, state, batch, key)
    recon, kl = float(vae_terms["recon"]), float(vae_terms["kl"])
    loss_at = jax.jit(lambda s, w: model.loss(params, state, batch, key, kl_weight=w, step=s))
    signs = set()
    for step in (0, 10, 60, 100, 400):
        c = min(4.0, 4.0 * step / 100)
        for weight in (1.0, 0.5):
            loss, terms, new_state = loss_at(jnp.int32(step), jnp.float32(weight))
            assert new_state == {}
            np.testing.assert_allclose(float(terms["capacity"]), c, rtol=1e-6)
            want = recon + weight * 50.0 * abs(kl - c)
            np.testing.assert_allclose(float(loss), want, rtol=1e-5)
            np.testing.assert_allclose(float(terms["kl"]), kl, rtol=1e-6)
            np.testing.assert_allclose(float(terms["elbo"]), -(recon + kl), rtol=1e-6)
        signs.add(np.sign(kl - c))
    assert signs == {-1.0, 1.0}, (kl, signs)  # both branches of |KL - C| are exercised


def test_gradient_is_the_vae_gradient_with_the_sign_of_kl_minus_c():
    """With C = 0 the loss is recon + gamma KL (a beta-VAE with beta = gamma); with C above the
    KL it is recon - gamma KL + const: the gradients are the VAE's with kl_weight = +-gamma."""
    params, state = _model().init(jax.random.key(2))
    batch, key = _batch(8), jax.random.key(3)
    for c_max, weight in ((0.0, 20.0), (1e6, -20.0)):
        model = _model(gamma=20.0, c_max=c_max, iteration_threshold=1)
        got = jax.grad(lambda p, m=model: m.loss(p, state, batch, key, step=5)[0])(params)
        want = jax.grad(lambda p, w=weight: _vae().loss(p, state, batch, key, kl_weight=w)[0])(
            params
        )
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="gamma"):
        _model(gamma=-1.0)
    with pytest.raises(ValueError, match="iteration_threshold"):
        _model(iteration_threshold=0)
    with pytest.raises(ValueError, match="free_bits"):
        _model(free_bits=0.5)
