"""The two-stochastic-layer VAE (family ``hvae``) against an independent float64 numpy computation
of ``q(z1|x) q(z2|z1)`` and ``p(z2) p(z1|z2) p(x|z1)``; shapes, configuration and refusals."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import config as config_lib
from jaxvae import models, objectives

IMAGE_SHAPE = (4, 4, 1)
D1, D2 = 3, 2
LOG_2PI = np.log(2.0 * np.pi)
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "configs")


def _tiny_hvae(seed=0):
    """x 16 -> 8 -> (3, 3) z1 -> 5 -> (2, 2) z2; p: z2 2 -> 5 -> (3, 3) z1 -> 8 -> 16; tanh, with
    numpy parameters whose biases are not zero."""
    model = models.get("hvae")(
        architecture="mlp",
        hidden=(8,),
        latent_dim=D1,
        z2_dim=D2,
        hidden2=(5,),
        activation="tanh",
        image_shape=IMAGE_SHAPE,
    )
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: model.init(k)[0], jax.random.key(0))

    def draw(path, leaf):
        scale = 1.5 / np.sqrt(leaf.shape[0]) if "kernel" in jax.tree_util.keystr(path) else 0.3
        return jnp.asarray(scale * rng.normal(size=leaf.shape), jnp.float32)

    return model, jax.tree_util.tree_map_with_path(draw, shapes)


def _batch(n, seed=1):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(n, *IMAGE_SHAPE)) < 0.4).astype(np.float32)
    return {"image": jnp.asarray(x), "label": jnp.zeros((n,), jnp.int32)}


# ---- the independent reference (numpy float64, or jax.numpy for its gradient) -----------------


def _mlp(xp, p, h):
    """A flax MLP's Dense_0 .. Dense_{L-1}, tanh between layers."""
    layers = sorted(p, key=lambda name: int(name.split("_")[1]))
    for i, name in enumerate(layers):
        h = h @ p[name]["kernel"] + p[name]["bias"]
        if i < len(layers) - 1:
            h = xp.tanh(h)
    return h


def _log_normal(xp, z, mean, log_var):
    return xp.sum(-0.5 * (LOG_2PI + log_var + (z - mean) ** 2 / xp.exp(log_var)), axis=-1)


def _reference(xp, params, x, eps1, eps2, q_params=None):
    """The five log-densities ``[N, S]`` at ``z1 = mu1 + s1 eps1``, ``z2 = mu2(z1) + s2(z1) eps2``.

    ``q_params`` (default ``params``) are the parameters the two q densities are evaluated with;
    the samples always come from ``params``."""
    q_params = params if q_params is None else q_params
    n = x.shape[0]
    xf = x.reshape(n, -1)
    split = lambda h: (h[..., : h.shape[-1] // 2], h[..., h.shape[-1] // 2 :])
    mean1, log_var1 = split(_mlp(xp, params["encoder"]["MLP_0"], xf))
    z1 = mean1[:, None] + xp.exp(0.5 * log_var1)[:, None] * eps1
    mean2, log_var2 = split(_mlp(xp, params["encoder2"], z1))
    z2 = mean2 + xp.exp(0.5 * log_var2) * eps2
    qm1, qv1 = split(_mlp(xp, q_params["encoder"]["MLP_0"], xf))
    qm2, qv2 = split(_mlp(xp, q_params["encoder2"], z1))
    pm1, pv1 = split(_mlp(xp, params["prior1"], z2))
    logits = _mlp(xp, params["decoder"]["MLP_0"], z1)
    xb = xf[:, None, :]
    return {
        "log_px": xp.sum(xb * logits - xp.logaddexp(0.0, logits), axis=-1),
        "log_pz1": _log_normal(xp, z1, pm1, pv1),
        "log_pz2": _log_normal(xp, z2, 0.0, 0.0),
        "log_qz1": _log_normal(xp, z1, qm1[:, None], qv1[:, None]),
        "log_qz2": _log_normal(xp, z2, qm2, qv2),
    }


def _log_w(t):
    return t["log_px"] + t["log_pz1"] + t["log_pz2"] - t["log_qz1"] - t["log_qz2"]


def _eps(key, n, s):
    """The standard normal draws of the family's sampling: ``split(key)`` -> z1's, z2's."""
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (n, s, D1)), jax.random.normal(k2, (n, s, D2))


def _np(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def _assert_trees_close(got, want, *, rtol, atol_scale):
    """Leaf by leaf, ``atol`` = ``atol_scale`` times the leaf's largest ``|want|``."""

    def check(a, b):
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a), b, rtol=rtol, atol=atol_scale * np.abs(b).max())

    jax.tree_util.tree_map(check, got, want)


def _max_abs_diff(a, b):
    return max(
        jax.tree_util.tree_leaves(
            jax.tree_util.tree_map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a, b)
        )
    )


# ---- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_q_grad", [False, True])
def test_log_weights_match_numpy(stop_q_grad):
    """log_weights = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1)."""
    model, params = _tiny_hvae()
    batch, key = _batch(3), jax.random.key(7)
    got = model.log_weights(params, {}, batch, key, 5, stop_q_grad=stop_q_grad)
    assert got.shape == (3, 5)
    eps1, eps2 = _eps(key, 3, 5)
    x = np.asarray(batch["image"], np.float64)
    want = _log_w(_reference(np, _np(params), x, *_np((eps1, eps2))))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-4)


def test_elbo_terms_match_numpy():
    """eval_terms and the loss's terms: recon = -log p(x|z1), kl_z1 = log q(z1|x) - log p(z1|z2),
    kl_z2 = log q(z2|z1) - log p(z2), kl = kl_z1 + kl_z2, nelbo = recon + kl, one sample; loss =
    mean recon + kl_weight * mean kl; posterior_mean = the mean of q(z1|x)."""
    model, params = _tiny_hvae()
    batch, key = _batch(4), jax.random.key(3)
    t = _reference(np, _np(params), np.asarray(batch["image"], np.float64), *_np(_eps(key, 4, 1)))
    t = {k: v[:, 0] for k, v in t.items()}
    want = {
        "recon": -t["log_px"],
        "kl_z1": t["log_qz1"] - t["log_pz1"],
        "kl_z2": t["log_qz2"] - t["log_pz2"],
    }
    want["kl"] = want["kl_z1"] + want["kl_z2"]
    want["nelbo"] = want["recon"] + want["kl"]
    got = model.eval_terms(params, {}, batch, key)
    for name, value in want.items():
        np.testing.assert_allclose(np.asarray(got[name], np.float64), value, rtol=1e-5, atol=1e-4)
    mean1 = _mlp(np, _np(params)["encoder"]["MLP_0"], np.asarray(batch["image"]).reshape(4, -1))
    np.testing.assert_allclose(got["posterior_mean"], mean1[:, :D1], rtol=1e-5, atol=1e-5)

    loss, terms, state = model.loss(params, {}, batch, key, kl_weight=0.3)
    assert state == {}
    np.testing.assert_allclose(
        float(loss), np.mean(want["recon"]) + 0.3 * np.mean(want["kl"]), rtol=1e-5
    )
    np.testing.assert_allclose(float(terms["elbo"]), -np.mean(want["nelbo"]), rtol=1e-5)
    for name in ("recon", "kl", "kl_z1", "kl_z2"):
        np.testing.assert_allclose(float(terms[name]), np.mean(want[name]), rtol=1e-5, atol=1e-4)


def test_iwae_k1_equals_the_elbo():
    """The k=1 IWAE loss (either estimator) is the negative one-sample ELBO at the same key."""
    model, params = _tiny_hvae()
    batch, key = _batch(5), jax.random.key(9)
    elbo_loss, terms, _ = model.loss(params, {}, batch, key, kl_weight=1.0)
    nelbo = np.mean(np.asarray(model.eval_terms(params, {}, batch, key)["nelbo"]))
    for estimator in objectives.ESTIMATORS:
        loss, _, _ = objectives.iwae_loss(model, params, {}, batch, key, k=1, estimator=estimator)
        np.testing.assert_allclose(float(loss), float(elbo_loss), rtol=1e-6)
        np.testing.assert_allclose(float(loss), nelbo, rtol=1e-6)
        np.testing.assert_allclose(float(loss), -float(terms["elbo"]), rtol=1e-6)


# ---- gradients ----------------------------------------------------------------------------------


def test_stop_q_grad_gradient_is_the_path_derivative():
    """With stop_q_grad the gradient of sum log w is that of the reference whose two q densities
    use frozen parameters while z1, z2 (and q(z2|z1)'s input z1) move with the parameters; without
    it, that of the reference with live q densities. The two differ for both q networks."""
    model, params = _tiny_hvae()
    batch, key = _batch(3), jax.random.key(4)
    x = batch["image"]
    eps = _eps(key, 3, 4)
    frozen = jax.tree_util.tree_map(jnp.asarray, params)

    def model_grad(stop):
        f = lambda p: jnp.sum(model.log_weights(p, {}, batch, key, 4, stop_q_grad=stop))
        return jax.jit(jax.grad(f))(params)

    ref_path = jax.jit(
        jax.grad(lambda p: jnp.sum(_log_w(_reference(jnp, p, x, *eps, q_params=frozen))))
    )
    ref_full = jax.jit(jax.grad(lambda p: jnp.sum(_log_w(_reference(jnp, p, x, *eps)))))
    g_path, g_full = model_grad(True), model_grad(False)
    _assert_trees_close(g_path, ref_path(params), rtol=2e-4, atol_scale=2e-4)
    _assert_trees_close(g_full, ref_full(params), rtol=2e-4, atol_scale=2e-4)
    for group in model.inference_keys:
        assert _max_abs_diff(g_path[group], g_full[group]) > 1e-2, group
    for group in ("prior1", "decoder"):  # the generative gradients do not change
        _assert_trees_close(g_path[group], g_full[group], rtol=1e-5, atol_scale=1e-6)


def test_dreg_on_hvae_has_the_standard_value_and_generative_gradient():
    """DReG over both layers: the loss value is the standard one; the gradients of p(z1|z2) and
    p(x|z1) are the standard ones draw for draw; those of both q networks differ (and are finite)."""
    model, params = _tiny_hvae()
    batch, key = _batch(3), jax.random.key(8)

    def value_and_grad(estimator):
        f = lambda p: objectives.iwae_loss(model, p, {}, batch, key, k=6, estimator=estimator)[0]
        return jax.jit(jax.value_and_grad(f))(params)

    (v_std, g_std), (v_dreg, g_dreg) = value_and_grad("standard"), value_and_grad("dreg")
    np.testing.assert_allclose(float(v_dreg), float(v_std), rtol=1e-6)
    for group in ("prior1", "decoder"):
        _assert_trees_close(g_dreg[group], g_std[group], rtol=1e-4, atol_scale=1e-5)
    for group in model.inference_keys:
        assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(g_dreg[group]))
        assert _max_abs_diff(g_dreg[group], g_std[group]) > 1e-3, group


# ---- shapes, configuration, refusals ------------------------------------------------------------


def test_shapes():
    model, params = _tiny_hvae()
    assert set(params) == {"encoder", "encoder2", "prior1", "decoder"}
    assert params["encoder2"]["Dense_0"]["kernel"].shape == (D1, 5)
    assert params["encoder2"]["Dense_1"]["kernel"].shape == (5, 2 * D2)
    assert params["prior1"]["Dense_0"]["kernel"].shape == (D2, 5)
    assert params["prior1"]["Dense_1"]["kernel"].shape == (5, 2 * D1)
    assert params["decoder"]["MLP_0"]["Dense_0"]["kernel"].shape == (D1, 8)
    batch, key = _batch(6), jax.random.key(0)
    shape = lambda f, *args: jax.eval_shape(f, *args)  # traced, not compiled
    terms = shape(lambda p: model.eval_terms(p, {}, batch, key), params)
    for name in ("nelbo", "recon", "kl", "kl_z1", "kl_z2"):
        assert terms[name].shape == (6,), name
    assert terms["posterior_mean"].shape == (6, D1)
    assert shape(lambda p: model.encode(p, {}, batch), params).shape == (6, D1)
    assert shape(lambda p: model.log_weights(p, {}, batch, key, 11), params).shape == (6, 11)
    decoded = shape(lambda p: model.decode(p, {}, jnp.zeros((2, D1))).mean(), params)
    assert decoded.shape == (2, *IMAGE_SHAPE)
    assert shape(lambda p: model.sample_latents(p, {}, key, 7), params).shape == (7, D1)
    assert shape(lambda p: model.reconstruct(p, {}, batch), params).shape == (6, *IMAGE_SHAPE)
    samples = jax.jit(lambda p: model.samples(p, {}, key, 9, batch))(params)
    assert samples.shape == (9, *IMAGE_SHAPE)
    assert bool(jnp.all((samples >= 0) & (samples <= 1)))
    with pytest.raises(ValueError, match="latents of shape"):
        model.decode(params, {}, jnp.zeros((2, D2)))


def test_conv_architecture_is_refused():
    with pytest.raises(ValueError, match=r"hvae.*'conv'"):
        models.get("hvae")(architecture="conv", image_shape=(28, 28, 1))
    config = config_lib.base_config()
    config.model.kind = "hvae"  # architecture stays the default "conv"
    with pytest.raises(ValueError, match="conv"):
        config_lib.validate(config)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="z2_dim"):
        models.get("hvae")(architecture="mlp", z2_dim=0)
    with pytest.raises(ValueError, match="hidden2"):
        models.get("hvae")(architecture="mlp", hidden2=(100, -1))
    config = config_lib.load_config_file(os.path.join(CONFIGS, "hvae.py"))
    with pytest.raises(ValueError, match="free_bits"):  # the hvae has no such option
        config_lib.apply_overrides(config, ["model.hvae.free_bits=0.5"])


def test_hvae_config_is_the_iwae_papers_architecture():
    """experiments/configs/hvae.py: 784-200-200-(100,100), 100-100-100-(50,50), 50-100-100-(100,100),
    100-200-200-784, tanh, Bernoulli, dynamic binarization, Adam 1e-3, batch 100; the options
    round-trip through config JSON."""
    config = config_lib.load_config_file(os.path.join(CONFIGS, "hvae.py"))
    config_lib.validate(config)
    config = config_lib.from_json(config_lib.to_json(config))
    model = config_lib.make_model(config, models.DataInfo((28, 28, 1)), backend="cpu")
    assert isinstance(model, models.get("hvae"))
    assert (model.activation, model.likelihood.name) == ("tanh", "bernoulli")
    assert (model.z2_dim, model.hidden2) == (50, (100, 100))
    assert config.data.binarize == "dynamic"
    assert (config.train.optimizer, config.train.learning_rate) == ("adam", 1e-3)
    assert config.train.batch_size == 100
    shapes = jax.eval_shape(lambda k: model.init(k)[0], jax.random.key(0))
    kernels = lambda p: [p[f"Dense_{i}"]["kernel"].shape for i in range(len(p))]
    assert kernels(shapes["encoder"]["MLP_0"]) == [(784, 200), (200, 200), (200, 200)]
    assert kernels(shapes["encoder2"]) == [(100, 100), (100, 100), (100, 100)]
    assert kernels(shapes["prior1"]) == [(50, 100), (100, 100), (100, 200)]
    assert kernels(shapes["decoder"]["MLP_0"]) == [(100, 200), (200, 200), (200, 784)]


def test_log_var_range_clips_all_three_gaussian_heads():
    """``log_var_range`` bounds q(z1|x), q(z2|z1) and p(z1|z2) alike: each head's log-variance is
    the unbounded model's, clipped; the means are untouched."""
    model, params = _tiny_hvae()
    clipped = dataclasses.replace(model, log_var_range=(-0.2, 0.2))
    x = jnp.asarray(np.random.default_rng(1).random((5, *IMAGE_SHAPE)), jnp.float32)
    z1 = jnp.asarray(np.random.default_rng(2).normal(size=(5, D1)), jnp.float32)
    z2 = jnp.asarray(np.random.default_rng(3).normal(size=(5, D2)), jnp.float32)
    heads = [
        lambda m: m.q_z1(params, x),
        lambda m: m.q_z2(params["encoder2"], z1),
        lambda m: m.p_z1(params, z2),
    ]
    for head in heads:
        (mean, lv), (cmean, clv) = head(model), head(clipped)
        assert np.mean(np.abs(np.asarray(lv)) > 0.2) > 0.1  # the clip matters
        np.testing.assert_array_equal(np.asarray(cmean), np.asarray(mean))
        np.testing.assert_array_equal(np.asarray(clv), np.clip(np.asarray(lv), -0.2, 0.2))
