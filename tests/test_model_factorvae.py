"""The FactorVAE family against an independent float64 numpy computation of its discriminator, its
TC estimate, its discriminator loss and that loss's gradient; its loss against the VAE's; the
train step's wiring of the discriminator group (its own loss, its own Adam); a shrunk config run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae import config as config_lib
from jaxvae import distributions as dist
from jaxvae import engine, experiment, models
from jaxvae.models import factorvae
from jaxvae.objectives import ObjectiveSpec

IMAGE = (4, 4, 1)
D = 3


def _model(**kw):
    kw = dict(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=D) | kw
    return models.get("factorvae")(**(dict(disc_hidden=(16, 16, 16)) | kw))


def _batch(n, seed=3):
    images = (np.random.default_rng(seed).random((n, *IMAGE)) > 0.5).astype(np.float32)
    return {"image": jnp.asarray(images), "label": jnp.zeros((n,), jnp.int32)}


def _np_logits(disc_params, z):
    """The discriminator in float64 numpy: dense layers with leaky ReLU (slope 0.2), then 2."""
    layers = sorted(disc_params, key=lambda name: int(name.split("_")[1]))
    h = np.asarray(z, np.float64)
    for i, name in enumerate(layers):
        h = h @ np.asarray(disc_params[name]["kernel"], np.float64) + np.asarray(
            disc_params[name]["bias"], np.float64
        )
        if i < len(layers) - 1:
            h = np.where(h > 0, h, 0.2 * h)
    return h


def _np_softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_disc_loss(joint, permuted):
    p_j = np.clip(_np_softmax(joint), 1e-6, 1 - 1e-6)
    p_p = np.clip(_np_softmax(permuted), 1e-6, 1 - 1e-6)
    return -0.5 * np.mean(np.log(p_j[:, 0])) - 0.5 * np.mean(np.log(p_p[:, 1]))


def test_discriminator_tc_and_its_loss_match_numpy():
    model = _model()
    params, _ = model.init(jax.random.key(0))
    assert len(params["discriminator"]) == 4  # three hidden layers and the logits
    z = np.random.default_rng(1).normal(size=(11, D)) * 2.0
    logits = model.logits(params, jnp.asarray(z, jnp.float32))
    want = _np_logits(params["discriminator"], z)
    assert logits.shape == (11, 2)
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(factorvae.tc_estimate(logits)), want[:, 0] - want[:, 1], rtol=1e-4, atol=1e-5
    )
    # The loss, on logits large enough that the clipping of the probabilities acts on some.
    rng = np.random.default_rng(2)
    joint, permuted = rng.normal(size=(9, 2)) * 20.0, rng.normal(size=(9, 2)) * 20.0
    got = factorvae.discriminator_loss(jnp.asarray(joint), jnp.asarray(permuted))
    assert np.any(np.abs(joint[:, 0] - joint[:, 1]) > np.log(1e6))  # the clip is exercised
    np.testing.assert_allclose(float(got), _np_disc_loss(joint, permuted), rtol=1e-5)


def test_discriminator_loss_gradient_is_the_cross_entropy_gradient():
    """Where no probability is clipped, d loss / d logits = (softmax - onehot(class)) / (2 M)."""
    rng = np.random.default_rng(4)
    joint, permuted = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    g_joint, g_perm = jax.grad(factorvae.discriminator_loss, argnums=(0, 1))(
        jnp.asarray(joint, jnp.float32), jnp.asarray(permuted, jnp.float32)
    )
    np.testing.assert_allclose(
        np.asarray(g_joint), (_np_softmax(joint) - [1.0, 0.0]) / 12, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(g_perm), (_np_softmax(permuted) - [0.0, 1.0]) / 12, rtol=1e-4, atol=1e-6
    )


def test_permute_dims_permutes_each_dimension_independently():
    z = np.arange(64 * 10, dtype=np.float32).reshape(64, 10)  # every entry distinct
    out = np.asarray(factorvae.permute_dims(jax.random.key(0), jnp.asarray(z)))
    orders = []
    for d in range(10):
        np.testing.assert_array_equal(np.sort(out[:, d]), z[:, d])  # a permutation of column d
        orders.append(tuple(np.argsort(np.argsort(out[:, d]))))
    assert len(set(orders)) == 10  # each dimension its own permutation
    assert not np.array_equal(out, z)
    again = factorvae.permute_dims(jax.random.key(0), jnp.asarray(z))
    np.testing.assert_array_equal(np.asarray(again), out)  # a function of the key


def test_loss_is_the_vae_loss_plus_gamma_tc_at_the_same_z():
    model = _model(gamma=7.0)
    vae = models.get("vae")(image_shape=IMAGE, architecture="mlp", hidden=(8,), latent_dim=D)
    params, state = model.init(jax.random.key(5))
    batch, key = _batch(10), jax.random.key(6)
    loss, terms, new_state = model.loss(params, state, batch, key, kl_weight=0.4)
    assert new_state == {}
    vae_loss, vae_terms, _ = vae.loss(params, state, batch, key, kl_weight=0.4)
    mean, log_var = model.q_params(params, batch)
    z = np.asarray(dist.reparameterize(key, mean, log_var), np.float64)
    want_logits = _np_logits(params["discriminator"], z)
    tc = np.mean(want_logits[:, 0] - want_logits[:, 1])
    assert abs(tc) > 1e-3  # a random discriminator: the estimate is not trivially 0
    np.testing.assert_allclose(float(terms["tc"]), tc, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(loss), float(vae_loss) + 7.0 * tc, rtol=1e-5, atol=1e-5)
    for name in ("recon", "kl", "elbo"):
        np.testing.assert_allclose(float(terms[name]), float(vae_terms[name]), rtol=1e-6)
    # The main loss leaves the discriminator alone; its own loss leaves the VAE alone.
    grads = jax.grad(lambda p: model.loss(p, state, batch, key)[0])(params)
    assert all(not np.any(g) for g in jax.tree.leaves(grads["discriminator"]))
    assert any(np.any(g) for g in jax.tree.leaves(grads["encoder"]))
    d_grads = jax.grad(lambda p: model.disc_loss(p, state, batch, key)[0])(params)
    for group in ("encoder", "decoder"):
        assert all(not np.any(g) for g in jax.tree.leaves(d_grads[group])), group
    assert any(np.any(g) for g in jax.tree.leaves(d_grads["discriminator"]))


def test_disc_loss_matches_numpy_at_its_samples_and_permutation():
    model = _model()
    params, state = model.init(jax.random.key(7))
    batch, key = _batch(12), jax.random.key(8)
    loss, terms = model.disc_loss(params, state, batch, key)
    k_z, k_perm = jax.random.split(key)
    mean, log_var = model.q_params(params, batch)
    z = dist.reparameterize(k_z, mean, log_var)
    zp = factorvae.permute_dims(k_perm, z)
    joint = _np_logits(params["discriminator"], np.asarray(z))
    permuted = _np_logits(params["discriminator"], np.asarray(zp))
    np.testing.assert_allclose(float(loss), _np_disc_loss(joint, permuted), rtol=1e-5)
    right = np.concatenate([joint[:, 0] > joint[:, 1], permuted[:, 1] >= permuted[:, 0]])
    np.testing.assert_allclose(float(terms["disc_accuracy"]), np.mean(right), rtol=1e-6)


def test_train_step_trains_the_discriminator_by_its_own_loss_and_adam():
    """One step of the engine's train step with the experiment's transform: Adam's first update
    is ``-lr * g / (|g| + eps)``, so each group moves by its own learning rate, in the direction of
    its own loss's gradient."""
    config = config_lib.base_config()
    config_lib.apply_overrides(
        config,
        [
            "model.kind=factorvae",
            "model.architecture=mlp",
            "model.hidden=8",
            f"model.latent_dim={D}",
            "model.factorvae.disc_hidden=16,16,16",
            "model.factorvae.disc_learning_rate=3e-4",
            "train.learning_rate=0.002",
        ],
    )
    info = models.DataInfo(image_shape=IMAGE, num_train=64)
    exp = experiment.build(config, info=info, load_data=False)
    model, tx = exp.model, exp.tx
    assert model == _model(disc_learning_rate=3e-4, num_train=64, conv_impl=model.conv_impl)
    state0 = engine.init_state(model, tx, jax.random.key(9))
    step = engine.make_train_step(model, ObjectiveSpec(), tx)
    batch, key = _batch(16), jax.random.key(10)
    state1, metrics = jax.jit(step)(state0, batch, key)
    assert float(metrics["skipped"]) == 0
    for name in ("loss", "tc", "disc_loss", "disc_accuracy"):
        assert np.isfinite(float(metrics[name])), name
    # The keys the step documents: fold_in(key, step) split into preprocess and loss keys; the
    # group loss draws from fold_in(k_loss, 1).
    _, k_loss = jax.random.split(jax.random.fold_in(key, 0))
    g_disc = jax.grad(lambda p: model.disc_loss(p, {}, batch, jax.random.fold_in(k_loss, 1))[0])(
        state0.params
    )["discriminator"]
    g_main = jax.grad(lambda p: model.loss(p, {}, batch, k_loss)[0])(state0.params)
    for group, lr, grads in (
        ("discriminator", 3e-4, g_disc),
        ("encoder", 0.002, g_main["encoder"]),
        ("decoder", 0.002, g_main["decoder"]),
    ):
        moved = jax.tree.map(
            lambda a, b: np.asarray(b) - np.asarray(a), state0.params, state1.params
        )
        for delta, g in zip(jax.tree.leaves(moved[group]), jax.tree.leaves(grads), strict=True):
            g = np.asarray(g, np.float64)
            big = np.abs(g) > 1e-5  # where eps = 1e-8 does not matter
            assert big.any(), group
            np.testing.assert_allclose(delta[big], -lr * np.sign(g[big]), rtol=1e-2, err_msg=group)


def test_bad_options_are_refused():
    for bad in (dict(gamma=-1.0), dict(disc_b1=1.0), dict(disc_learning_rate=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            _model(**bad)
    with pytest.raises(ValueError, match="disc_hidden"):
        _model(disc_hidden=(16, 0))


def test_group_optimizer_is_adam_with_the_options():
    model = _model(disc_learning_rate=1e-3, disc_b1=0.5, disc_b2=0.9)
    tx = model.group_optimizers()["discriminator"]
    g = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    ref = optax.adam(1e-3, b1=0.5, b2=0.9, eps=1e-8)
    s, r = tx.init(g), ref.init(g)
    for _ in range(3):
        u, s = tx.update(g, s)
        v, r = ref.update(g, r)
        np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(v["w"]), rtol=1e-6)
        g = {"w": g["w"] * 0.7 + 0.1}
