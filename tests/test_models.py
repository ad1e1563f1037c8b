"""Tests for jaxvae.models (the vae, ae and dae families): shapes, decoder distributions, parameter
counts, convolution formulations and validation."""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import convs, likelihoods, models
from jaxvae.models import capabilities as caps
from jaxvae.models import num_params

SMALL = {
    "mlp": dict(architecture="mlp", image_shape=(12, 8, 3), hidden=(10, 7), latent_dim=5),
    "conv": dict(architecture="conv", image_shape=(12, 8, 3), channels=(4, 6), latent_dim=5),
}


def make_model(kind="vae", *, likelihood=None, gaussian_std=0.1, **kwargs):
    """The family ``kind`` with ``kwargs``; ``likelihood`` by name (default: the family's)."""
    if likelihood is not None:
        shape = kwargs.get("image_shape", (28, 28, 1))
        kwargs["likelihood"] = likelihoods.make(
            likelihood, image_shape=shape, gaussian_std=gaussian_std
        )
    return models.get(kind)(**kwargs)


def _shapes(model):
    """The parameters' shapes (and the model state's), without allocating them."""
    return jax.eval_shape(model.init, jax.random.key(0))


def _batch(x):
    return {"image": x, "label": jnp.zeros((x.shape[0],), jnp.int32)}


def _raw(model, params, z):
    """The decoder network's raw output at ``z``."""
    return model.decoder_net().apply({"params": params["decoder"]}, z)


def _random_params(model, seed):
    """Parameters of ``model``'s structure drawn with numpy (biases non-zero too)."""
    rng = np.random.default_rng(seed)
    shapes, _ = _shapes(model)

    def draw(leaf):
        scale = 1.0 / np.sqrt(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
        return jnp.asarray(scale * rng.normal(size=leaf.shape), jnp.float32)

    return jax.tree_util.tree_map(draw, shapes)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("kind", ["vae", "ae", "dae"])
def test_output_shapes(architecture, kind):
    model = make_model(kind, **SMALL[architecture])
    params, state = _shapes(model)
    x = jax.ShapeDtypeStruct((3, 12, 8, 3), jnp.float32)
    batch = {"image": x, "label": jax.ShapeDtypeStruct((3,), jnp.int32)}
    a = jax.eval_shape(model.encode, params, state, batch)
    out = jax.eval_shape(lambda p, s, z: model.decode(p, s, z).mean(), params, state, a)
    raw = jax.eval_shape(functools.partial(_raw, model), params, a)
    assert a.shape == (3, 5) and a.dtype == jnp.float32
    assert out.shape == raw.shape == (3, 12, 8, 3)
    assert set(params) == {"encoder", "decoder"} and state == {}
    if kind == "vae":
        mean, log_var = jax.eval_shape(model.q_params, params, batch)
        assert mean.shape == log_var.shape == (3, 5)
    else:
        assert not caps.has(model, caps.ImportanceWeighted) and not hasattr(model, "posterior")


def test_decode_outputs_logits_or_means():
    rng = np.random.default_rng(0)
    z = jnp.asarray(3 * rng.normal(size=(4, 5)), jnp.float32)
    for kind, likelihood, squashed in [
        ("vae", "bernoulli", False),
        ("vae", "gaussian", True),
        ("ae", None, True),
    ]:
        model = make_model(kind, likelihood=likelihood, **SMALL["mlp"])
        params = _random_params(model, seed=0)
        raw = np.asarray(_raw(model, params, z), np.float64)
        dist = model.decode(params, {}, z)
        # A Bernoulli decoder's distribution holds the logits; a Gaussian one its mean.
        out = np.asarray(dist.loc if squashed else dist.logits, np.float64)
        expected = 1 / (1 + np.exp(-raw)) if squashed else raw
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(dist.mean(), 1 / (1 + np.exp(-raw)), rtol=1e-5)
    assert np.abs(raw).max() > 1  # the logits are not squashed into [0, 1]


def test_gaussian_learned_scale_parameter():
    model = make_model(likelihood="gaussian_learned", gaussian_std=0.2, **SMALL["mlp"])
    assert set(_shapes(model)[0]) == {"encoder", "decoder", "likelihood"}
    params = {"likelihood": model.likelihood.init(jax.random.key(0))}
    assert params["likelihood"]["log_scale"].shape == (12, 8, 3)
    np.testing.assert_allclose(params["likelihood"]["log_scale"], math.log(0.2), rtol=1e-6)
    params |= _random_params(model, seed=0) | {"likelihood": params["likelihood"]}
    z = jnp.zeros((2, 5))
    np.testing.assert_allclose(model.decode(params, {}, z).log_scale, math.log(0.2), rtol=1e-6)
    fixed = make_model(likelihood="gaussian", gaussian_std=0.2, **SMALL["mlp"])
    assert "likelihood" not in _shapes(fixed)[0]
    fixed_params = _random_params(fixed, seed=0)
    log_scale = np.broadcast_to(fixed.decode(fixed_params, {}, z).log_scale, (12, 8, 3))
    np.testing.assert_allclose(log_scale, np.full((12, 8, 3), math.log(0.2)), 1e-6)


# --------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def _conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def _count(model):
    return num_params(_shapes(model)[0])


def test_mlp_vae_parameter_count_matches_pytorch_example():
    # PyTorch's examples/vae: fc1 784->400, fc21/fc22 400->20 (here one 400->40 layer), fc3 20->400,
    # fc4 400->784.
    expected = _dense(784, 400) + _dense(400, 2 * 20) + _dense(20, 400) + _dense(400, 784)
    assert expected == 652_824
    assert _count(make_model(architecture="mlp", hidden=(400,), latent_dim=20)) == expected


def test_conv_vae_parameter_count_matches_pytorch_reference():
    # benchmarks/torch_vae.py ConvVAE: conv 1->32, conv 32->64 (3x3, stride 2: 28->14->7),
    # dense 64*7*7 -> 2*16, dense 16 -> 64*7*7, convT 64->32, convT 32->1 (3x3), all with biases.
    expected = (
        _conv(3, 1, 32)
        + _conv(3, 32, 64)
        + _dense(64 * 7 * 7, 2 * 16)
        + _dense(16, 64 * 7 * 7)
        + _conv(3, 64, 32)
        + _conv(3, 32, 1)
    )
    model = make_model(architecture="conv", channels=(32, 64), latent_dim=16)
    assert _count(model) == expected
    shapes, _ = _shapes(model)
    leaf_shapes = sorted(tuple(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))
    expected_shapes = [(3, 3, 1, 32), (3, 3, 32, 64), (3136, 32), (16, 3136), (3, 3, 64, 32)]
    expected_shapes += [(3, 3, 32, 1), (32,), (64,), (32,), (3136,), (32,), (1,)]
    assert leaf_shapes == sorted(expected_shapes)


def test_parameter_counts_of_ae_and_learned_scale():
    base = dict(architecture="mlp", hidden=(400,), latent_dim=20)
    # An AE's encoder outputs the code only (400 -> 20).
    ae = _dense(784, 400) + _dense(400, 20) + _dense(20, 400) + _dense(400, 784)
    assert _count(make_model("ae", **base)) == ae
    assert _count(make_model("dae", **base)) == ae
    learned = make_model(likelihood="gaussian_learned", **base)
    assert _count(learned) == 652_824 + 784  # one log-scale per pixel


# --------------------------------------------------------------------------------------------
# Convolution formulations
# --------------------------------------------------------------------------------------------


def _assert_trees_close(a, b, rtol=1e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(np.abs(y).max(), 1e-30))


def _flax_reference(params, x, channels, image_shape):
    """The conv encoder and decoder written with ``flax.linen``'s own 'SAME' ``Conv`` and
    ``ConvTranspose`` (the layers whose parameters and semantics jaxvae's convolutions share)."""
    enc, dec = params["encoder"], params["decoder"]
    h = x
    for i, c in enumerate(channels):
        conv = nn.Conv(c, (3, 3), strides=(2, 2), padding="SAME")
        h = jax.nn.relu(conv.apply({"params": enc[f"Conv_{i}"]}, h))
    out = h.reshape(h.shape[0], -1) @ enc["Dense_0"]["kernel"] + enc["Dense_0"]["bias"]
    mean = out[:, : out.shape[1] // 2]
    factor = 2 ** len(channels)
    h = jax.nn.relu(mean @ dec["Dense_0"]["kernel"] + dec["Dense_0"]["bias"])
    h = h.reshape(h.shape[0], image_shape[0] // factor, image_shape[1] // factor, channels[-1])
    widths = list(channels[-2::-1]) + [image_shape[2]]
    for i, c in enumerate(widths):
        conv_t = nn.ConvTranspose(c, (3, 3), strides=(2, 2), padding="SAME")
        h = conv_t.apply({"params": dec[f"ConvTranspose_{i}"]}, h)
        if i < len(widths) - 1:
            h = jax.nn.relu(h)
    return out, h


@pytest.mark.parametrize(
    "image_shape,channels",
    [((28, 28, 1), (32, 64)), ((8, 16, 2), (3, 4, 5))],
)
def test_conv_impls_agree_on_outputs_and_gradients(image_shape, channels):
    assert {"fast", "lax"} <= set(convs.IMPLS)
    model = make_model(
        architecture="conv", image_shape=image_shape, channels=channels, latent_dim=4
    )
    by_impl = {impl: dataclasses.replace(model, conv_impl=impl) for impl in ("fast", "lax")}
    params = _random_params(by_impl["fast"], seed=1)
    lax_shapes, _ = _shapes(by_impl["lax"])
    assert jax.tree_util.tree_structure(lax_shapes) == jax.tree_util.tree_structure(params)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(size=(3, *image_shape)), jnp.float32)
    key = jax.random.key(2)

    results = {}
    for impl, model in by_impl.items():

        @jax.jit
        def run(params, x, model=model):
            mean, log_var = model.q_params(params, _batch(x))
            out = _raw(model, params, mean)
            loss = lambda p: model.loss(p, {}, _batch(x), key, kl_weight=1.0)[0]
            grads = jax.grad(loss)(params)
            return mean, log_var, out, grads

        results[impl] = run(params, x)
    mean, _, out, grads = results["lax"]
    assert out.shape == (3, *image_shape)
    assert float(jnp.std(out)) > 0 and float(jnp.std(mean)) > 0
    # Every parameter receives a non-zero gradient.
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads))
    _assert_trees_close(results["fast"], results["lax"])
    # Both match flax.linen's Conv / ConvTranspose with 'SAME' padding.
    ref_out, ref_decoded = jax.jit(_flax_reference, static_argnums=(2, 3))(
        params, x, channels, image_shape
    )
    for mean, log_var, out, _ in results.values():
        _assert_trees_close((jnp.concatenate([mean, log_var], 1), out), (ref_out, ref_decoded))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_images_of_a_wrong_shape_are_rejected_with_their_shape():
    model = make_model(**SMALL["mlp"])
    params, state = _shapes(model)
    for shape in [(2, 12, 8, 1), (2, 8, 12, 3), (12, 8, 3), (2, 12, 8, 3, 1)]:
        with pytest.raises(ValueError, match=re.escape(str(shape))) as info:
            model.encode(params, state, _batch(jnp.zeros(shape)))
        assert "[N, 12, 8, 3]" in str(info.value)
    with pytest.raises(ValueError, match=re.escape("(2, 4)")):
        model.decode(params, state, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=re.escape("(5,)")):
        model.decode(params, state, jnp.zeros((5,)))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kind="gan"), "kind"),
        (dict(kind="VAE"), "kind"),
        (dict(architecture="resnet"), "architecture"),
        (dict(likelihood="poisson"), "likelihood"),
        (dict(conv_impl="cudnn"), "conv_impl"),
        (dict(latent_dim=0), "latent_dim"),
        (dict(latent_dim=-2), "latent_dim"),
        (dict(architecture="conv", image_shape=(30, 30, 1), channels=(32, 64)), "divisible by 4"),
        (dict(architecture="conv", image_shape=(28, 28, 1), channels=(8, 8, 8)), "divisible by 8"),
        (dict(architecture="conv", image_shape=(32, 28, 1), channels=(8, 8, 8)), "divisible by 8"),
        (dict(image_shape=(28, 28)), "image_shape"),
        (dict(image_shape=(28, 0, 1)), "image_shape"),
        (dict(hidden=(400, 0)), "hidden"),
        (dict(channels=()), "channels"),
        (dict(likelihood="gaussian", gaussian_std=0.0), "gaussian_std"),
        (dict(activation="gelu"), "activation"),
        (dict(layer="conv"), "layer"),
        (dict(free_bits=-0.5), "free_bits"),
        (dict(kind="ae", ae_loss="l3"), "ae_loss"),
        (dict(kind="dae", noise="blur"), "noise"),
        (dict(kind="dae", noise="masking", noise_level=1.5), r"Noise level 1.5 .* \[0, 1\]"),
    ],
)
def test_family_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_model(**kwargs)


def test_a_likelihood_for_other_images_is_refused():
    lik = likelihoods.make("bernoulli", image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match=re.escape("(28, 28, 1) does not fit")):
        models.get("vae")(architecture="mlp", image_shape=(12, 8, 3), likelihood=lik)


def test_families_accept_valid_options():
    # An MLP has no divisibility constraint; a conv model needs 2**len(channels) | H, W.
    assert make_model(architecture="mlp", image_shape=(30, 30, 1)).image_shape == (30, 30, 1)
    assert make_model(
        architecture="conv", image_shape=[32, 24, 3], channels=(8, 8, 8)
    ).image_shape == (
        32,
        24,
        3,
    )
    one_layer = make_model(architecture="conv", image_shape=(28, 28, 1), channels=(16,))
    assert one_layer.channels == (16,)
    # Sequences are stored as tuples (the models are hashable, static arguments of jit).
    model = make_model("dae", architecture="mlp", hidden=[5, 3], image_shape=(4, 4, 1))
    assert model.hidden == (5, 3) and hash(model) == hash(dataclasses.replace(model))
