"""Tests for jaxvae.objectives (and the vae/ae/dae families' losses) against an independent float64
numpy forward pass."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats
from jax.test_util import check_grads

from jaxvae import config as config_lib
from jaxvae import data as data_lib
from jaxvae import engine, experiment, likelihoods, models, objectives, sharding
from jaxvae.objectives import ObjectiveSpec, kl_schedule, make_loss

IMAGE_SHAPE = (4, 4, 1)
LATENT = 3
BATCH = 6


def _batch(x):
    return {"image": x, "label": jnp.zeros((x.shape[0],), jnp.int32)}


ELBO = ObjectiveSpec()


# Jitted once per (model, objective): much faster than eager dispatch on a busy CPU.
@functools.partial(jax.jit, static_argnames=("model", "objective"))
def loss(model, params, x, key, *, objective=ELBO, step=0):
    """``(loss, terms)`` of ``make_loss(model, objective)`` on the images ``x``."""
    value, (terms, _) = make_loss(model, objective)(params, {}, _batch(x), key, step)
    return value, terms


@functools.partial(jax.jit, static_argnames=("model", "k"))
def iwae_loss(model, params, x, key, *, k):
    value, terms, _ = objectives.iwae_loss(model, params, {}, _batch(x), key, k=k)
    return value, terms


# --------------------------------------------------------------------------------------------
# Helpers: a tiny MLP model with randomised parameters and a numpy re-implementation of it.
# --------------------------------------------------------------------------------------------


def _model_and_params(kind="vae", likelihood="bernoulli", seed=0, **options):
    model = models.get(kind)(
        architecture="mlp",
        image_shape=IMAGE_SHAPE,
        latent_dim=LATENT,
        hidden=(8,),
        likelihood=likelihoods.make(likelihood, image_shape=IMAGE_SHAPE, gaussian_std=0.3),
        **options,
    )
    return model, _random_params(model, seed)


def _random_params(model, seed):
    """Parameters of ``model``'s structure drawn with numpy (no costly eager ``model.init``)."""
    rng = np.random.default_rng(seed)
    shapes, _ = jax.eval_shape(model.init, jax.random.key(0))

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


def _mlp(net, h):
    """Dense layers with ReLU between them, in float64 (``net``: an encoder's or decoder's
    parameters, whose one MLP holds ``Dense_0``, ``Dense_1``, ...)."""
    (layers,) = net.values()
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
    if model.likelihood.name == "bernoulli":
        log_sig = lambda t: -np.logaddexp(0.0, -t)
        return -np.sum(x * log_sig(out) + (1 - x) * log_sig(-out), axis=axes)
    if model.likelihood.name == "gaussian":
        std = np.full(IMAGE_SHAPE, model.likelihood.gaussian_std)
    else:
        std = np.exp(_np(params["likelihood"]["log_scale"]))
    return -np.sum(scipy.stats.norm.logpdf(x, scipy.special.expit(out), std), axis=axes)


def _np_sample(params, x, key):
    """The posterior and the reparameterized sample the loss draws with ``key``."""
    mean, log_var = _np_encode(params, x)
    eps = _np(jax.random.normal(key, mean.shape))
    return mean, log_var, mean + np.exp(0.5 * log_var) * eps


def _np_vae_terms(model, params, x, key):
    """Recomputes recon and the per-dimension KL at the sample the VAE loss draws with ``key``."""
    mean, log_var, z = _np_sample(params, x, key)
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
    value, terms = loss(model, params, x, key)
    recon, kl_dims = _np_vae_terms(model, params, x, key)
    kl = kl_dims.sum(axis=1)
    assert set(terms) == {"loss", "recon", "kl", "elbo", "kl_weight"}
    np.testing.assert_allclose(terms["recon"], recon.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["kl"], kl.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["elbo"], -(recon + kl).mean(), rtol=2e-5)
    np.testing.assert_allclose(value, recon.mean() + kl.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["loss"], value)
    assert float(terms["kl_weight"]) == 1.0


def test_vae_loss_gaussian_learned_uses_the_learned_scale():
    model, params = _model_and_params(likelihood="gaussian_learned")
    x, key = _images(), jax.random.key(1)
    base, _ = loss(model, params, x, key)
    params2 = dict(params, likelihood={"log_scale": params["likelihood"]["log_scale"] + 0.5})
    moved, _ = loss(model, params2, x, key)
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
            value, terms = loss(model, params, x, key, objective=objective, step=step)
            weight = beta * (min(1.0, step / warmup) if warmup else 1.0)
            np.testing.assert_allclose(kl_schedule(objective)(step), weight, rtol=1e-6)
            np.testing.assert_allclose(terms["kl_weight"], weight, rtol=1e-6)
            np.testing.assert_allclose(value, recon.mean() + weight * kl, rtol=2e-5)
            # The reported ELBO is the true one whatever the weight.
            np.testing.assert_allclose(terms["elbo"], -(recon.mean() + kl), rtol=2e-5)
    # make_loss passes the step through to the schedule.
    f = jax.jit(make_loss(model, ObjectiveSpec(beta=2.0, warmup_steps=8)))
    value = f(params, {}, _batch(x), key, 2)[0]
    np.testing.assert_allclose(value, recon.mean() + 0.5 * kl, rtol=2e-5)


def test_vae_loss_free_bits():
    model, params = _model_and_params(seed=4)
    x, key = _images(), jax.random.key(4)
    recon, kl_dims = _np_vae_terms(model, params, x, key)
    batch_kl = kl_dims.mean(axis=0)
    # A threshold between the smallest and largest per-dimension KL, so both branches are used.
    free_bits = float(np.median(batch_kl))
    assert batch_kl.min() < free_bits < batch_kl.max()
    objective = ObjectiveSpec(beta=1.5)
    with_fb = dataclasses.replace(model, free_bits=free_bits)
    value, terms = loss(with_fb, params, x, key, objective=objective)
    expected = recon.mean() + 1.5 * np.sum(np.maximum(free_bits, batch_kl))
    np.testing.assert_allclose(value, expected, rtol=2e-5)
    # Not the same as the plain KL, nor as a per-example clamp.
    assert abs(expected - (recon.mean() + 1.5 * batch_kl.sum())) > 1e-3
    per_example = np.maximum(free_bits, kl_dims).sum(1).mean()
    assert abs(expected - (recon.mean() + 1.5 * per_example)) > 1e-3
    np.testing.assert_allclose(terms["kl"], kl_dims.sum(1).mean(), rtol=2e-5)
    # A threshold below every dimension's KL changes nothing.
    low = dataclasses.replace(model, free_bits=float(batch_kl.min()) / 2)
    np.testing.assert_allclose(
        loss(low, params, x, key, objective=objective)[0],
        recon.mean() + 1.5 * batch_kl.sum(),
        rtol=2e-5,
    )


def _train_step_metrics(model, params, x, key, *, binarize):
    """The metrics of one train step of a run with ``data.binarize=binarize`` (the run builder's
    input transform, then the objective), at step 0 with the run's training key ``key``."""
    config = config_lib.base_config()
    config.data.binarize = binarize
    info = models.DataInfo(image_shape=IMAGE_SHAPE)
    tx = optax.sgd(0.0)
    specs = config_lib.validate(config)
    exp = experiment.Experiment(
        config,
        0,
        specs.train,
        specs.optim,
        specs.eval,
        specs.data,
        None,
        None,
        info,
        model,
        ObjectiveSpec(),
        tx,
        sharding.make_mesh(),
        {},
    )
    state = engine.TrainState(jnp.int32(0), params, {}, tx.init(params), jnp.int32(0))
    _, metrics = jax.jit(exp.train_step())(state, _batch(jnp.asarray(x)), key)
    return metrics


def test_vae_loss_dynamic_binarization():
    model, params = _model_and_params()
    x, key = _images(), jax.random.key(5)
    terms = _train_step_metrics(model, params, x, key, binarize="dynamic")
    # The step splits fold_in(key, step) into the binarization's key and the objective's.
    k_bin, k_loss = jax.random.split(jax.random.fold_in(key, 0))
    x_bin = np.asarray(data_lib.dynamic_binarize(k_bin, jnp.asarray(x)))
    assert set(np.unique(x_bin)) <= {0.0, 1.0}
    recon_bin, kl_dims = _np_vae_terms(model, params, x_bin, k_loss)
    recon_raw, _ = _np_vae_terms(model, params, x, k_loss)
    np.testing.assert_allclose(terms["recon"], recon_bin.mean(), rtol=2e-5)
    assert np.max(np.abs(recon_bin - recon_raw)) > 0.1  # the binarized images were scored
    # Images that are already binary are left as they are.
    binary = (x > 0.5).astype(np.float32)
    np.testing.assert_allclose(
        _train_step_metrics(model, params, binary, key, binarize="dynamic")["loss"],
        _train_step_metrics(model, params, binary, key, binarize="none")["loss"],
        rtol=1e-6,
    )
    # Without the option, continuous pixels are used as they are.
    np.testing.assert_allclose(
        _train_step_metrics(model, params, x, key, binarize="none")["recon"],
        recon_raw.mean(),
        rtol=2e-5,
    )
    # Different keys binarize differently, so the loss varies.
    other = _train_step_metrics(model, params, x, jax.random.key(6), binarize="dynamic")
    assert float(other["recon"]) != float(terms["recon"])


@pytest.mark.parametrize(
    "likelihood,objective,free_bits",
    [
        ("bernoulli", ObjectiveSpec(beta=0.7, warmup_steps=10), 0.05),
        ("gaussian_learned", ObjectiveSpec(), 0.0),
    ],
)
def test_vae_loss_gradients_match_finite_differences(likelihood, objective, free_bits):
    model, params = _model_and_params(likelihood=likelihood, seed=8, free_bits=free_bits)
    x, key = _images(), jax.random.key(8)
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        f = lambda p: loss(model, p, x64, key, objective=objective, step=3)[0]
        assert f(params64).dtype == jnp.float64
        check_grads(
            jax.jit(f), (params64,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6
        )
    assert jnp.zeros(()).dtype == jnp.float32  # x64 did not leak


# --------------------------------------------------------------------------------------------
# IWAE with one sample
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_learned"])
def test_iwae_with_one_sample_is_the_single_sample_elbo(likelihood):
    model, params = _model_and_params(likelihood=likelihood, seed=2)
    x, key = _images(), jax.random.key(11)
    value, terms = iwae_loss(model, params, x, key, k=1)
    # The one sample log_weights draws: eps ~ N(0, I) of shape [N, k=1, D] from the same key.
    mean, log_var = _np_encode(params, x)
    eps = _np(jax.random.normal(key, (BATCH, 1, LATENT)))[:, 0]
    z = mean + np.exp(0.5 * log_var) * eps
    log_px_z = -_np_neg_log_lik(model, params, x, z)
    log_pz = scipy.stats.norm.logpdf(z).sum(axis=1)
    log_qz = scipy.stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)).sum(axis=1)
    elbo = log_px_z + log_pz - log_qz  # log p(x, z) - log q(z | x) at the same z
    np.testing.assert_allclose(value, -elbo.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["iwae_bound"], elbo.mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["ess"], 1.0, rtol=1e-6)  # one sample: all the weight
    # The objective spec "iwae" with k=1 is the same loss.
    f = jax.jit(make_loss(model, ObjectiveSpec(name="iwae", k=1)))
    np.testing.assert_allclose(f(params, {}, _batch(x), key, 0)[0], value, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# AE and DAE losses
# --------------------------------------------------------------------------------------------


def _np_ae_output(params, x):
    code = _mlp(params["encoder"], _np(x).reshape(x.shape[0], -1))
    return scipy.special.expit(_np_decode_raw(params, code))


def _dae(ae, **options):
    """The DAE with ``ae``'s fields and ``options``."""
    fields = {f.name: getattr(ae, f.name) for f in dataclasses.fields(ae)}
    return models.get("dae")(**(fields | options))


@pytest.mark.parametrize("kind_of_loss", ["l2", "l1"])
def test_ae_loss_matches_numpy(kind_of_loss):
    model, params = _model_and_params(kind="ae", ae_loss=kind_of_loss)
    x = _images()
    value, terms = loss(model, params, x, jax.random.key(0))
    diff = _np_ae_output(params, x) - _np(x)
    err = np.abs(diff) if kind_of_loss == "l1" else diff**2
    np.testing.assert_allclose(value, err.sum(axis=(1, 2, 3)).mean(), rtol=2e-5)
    np.testing.assert_allclose(terms["recon"], value)
    np.testing.assert_allclose(terms["loss"], value)


def test_dae_loss_corrupts_the_input_but_not_the_target():
    ae, params = _model_and_params(kind="ae")
    x, key = _images(), jax.random.key(9)
    ae_value, _ = loss(ae, params, x, key)

    # Masking every pixel: the encoder sees zeros, the target is still the clean x.
    masked = _dae(ae, noise="masking", noise_level=1.0)
    dae_value, _ = loss(masked, params, x, key)
    out_zero = _np_ae_output(params, np.zeros_like(x))
    np.testing.assert_allclose(
        dae_value, ((out_zero - _np(x)) ** 2).sum((1, 2, 3)).mean(), rtol=2e-5
    )
    assert abs(float(dae_value) - float(ae_value)) > 1e-3

    # Huge Gaussian noise: matches a clean-target recomputation from the corrupted input.
    noisy_dae = _dae(ae, noise="gaussian", noise_level=100.0, ae_loss="l1")
    dae_value, _ = loss(noisy_dae, params, x, key)
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
        f = lambda p: loss(model, p, x64, jax.random.key(0))[0]
        check_grads(
            jax.jit(f), (params64,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6
        )
