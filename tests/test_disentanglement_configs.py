"""The disentanglement study's configs (dsprites.py, factorvae.py, dipvae_i.py, dipvae_ii.py,
annealedvae.py) share disentanglement_lib's setting: procedural dSprites, 10 latents, a Bernoulli
decoder, batch 64, Adam 1e-4, about 300k steps; and the beta-VAE one trains (shrunk)."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import config as config_lib
from jaxvae import experiment, models
from jaxvae.data import dsprites
from tests.conftest import CONFIGS

STUDY = {
    "dsprites": "vae",
    "factorvae": "factorvae",
    "dipvae_i": "dipvae_i",
    "dipvae_ii": "dipvae_ii",
    "annealedvae": "annealedvae",
}


@pytest.mark.parametrize("name", sorted(STUDY))
def test_config_has_the_shared_setting(name):
    config = config_lib.load_config_file(os.path.join(CONFIGS, f"{name}.py"))
    config_lib.validate(config)
    assert config.model.kind == STUDY[name]
    assert config.data.name == "dsprites_procedural"
    assert config.model.latent_dim == 10 and config.model.likelihood == "bernoulli"
    assert tuple(config.model.channels) == (32, 32, 64, 64)
    assert tuple(config.model.kernels) == (4, 4, 2, 2)
    assert tuple(config.model.decoder_kernels) == (4, 4, 4, 4)
    assert tuple(config.model.conv_hidden) == (256,)
    assert config.model.weight_init == "glorot_uniform"
    assert config.train.optimizer == "adam" and config.train.learning_rate == 1e-4
    assert config.train.adam_eps == 1e-8 and config.train.lr_schedule == "constant"
    assert config.train.batch_size == 64
    # 300k steps as whole epochs of the procedural training split.
    num_train = dsprites.NUM_EXAMPLES - dsprites.DEFAULT_NUM_TEST
    steps = config.train.epochs * (num_train // 64)
    assert 300_000 <= steps < 300_000 + num_train // 64, steps
    assert dsprites.DEFAULT_NUM_TEST % config.eval.batch_size == 0
    # The model a 64x64x1 dataset gets: the family's defaults are disentanglement_lib's.
    model = config_lib.make_model(config, models.DataInfo(image_shape=(64, 64, 1)))
    assert model.name == STUDY[name]
    if name == "dsprites":
        assert config.objective.beta == 4.0
    else:
        assert config.objective.beta == 1.0
        defaults = config_lib.family_options(models.get(STUDY[name]))
        for key, value in config.model[STUDY[name]].items():
            assert value == defaults[key], key


def test_factorvae_optimizers_follow_disentanglement_lib():
    config = config_lib.load_config_file(os.path.join(CONFIGS, "factorvae.py"))
    model = config_lib.make_model(config, models.DataInfo(image_shape=(64, 64, 1)))
    assert model.gamma == 10.0 and model.disc_hidden == (1000,) * 6
    assert (model.disc_learning_rate, model.disc_b1, model.disc_b2) == (1e-4, 0.5, 0.9)
    exp = experiment.build(config, info=models.DataInfo(image_shape=(64, 64, 1)), load_data=False)
    params = jax.eval_shape(lambda: exp.model.init(jax.random.key(0))[0])
    opt_state = jax.eval_shape(exp.tx.init, params)
    assert set(opt_state.inner_states) == {"model", "discriminator"}
    # The discriminator's weights are drawn as the networks' are (Glorot uniform, as TensorFlow).
    assert model.weight_init == "glorot_uniform"
    disc = model.discriminator().init(jax.random.key(1), jax.numpy.zeros((1, 10)))["params"]
    w = disc["Dense_1"]["kernel"]
    limit = np.sqrt(6.0 / 2000)
    assert np.abs(w).max() <= limit
    np.testing.assert_allclose(np.std(w), limit / np.sqrt(3.0), rtol=0.02)


class _ReferenceEncoder(nn.Module):
    """disentanglement_lib's ``conv_encoder`` written with Flax's own layers (means and log
    variances as one dense layer of 2 x 10)."""

    @nn.compact
    def __call__(self, x):
        for c, k in ((32, 4), (32, 4), (64, 2), (64, 2)):
            x = nn.relu(nn.Conv(c, (k, k), strides=(2, 2), padding="SAME")(x))
        x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
        return nn.Dense(20)(x)


class _ReferenceDecoder(nn.Module):
    """disentanglement_lib's ``deconv_decoder`` written with Flax's own layers."""

    @nn.compact
    def __call__(self, z):
        h = nn.relu(nn.Dense(256)(z))
        h = nn.relu(nn.Dense(1024)(h)).reshape(-1, 4, 4, 64)
        for i, c in enumerate((64, 32, 32, 1)):
            h = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME")(h)
            h = nn.relu(h) if i < 3 else h
        return h


def test_backbone_is_disentanglement_libs_conv_encoder_and_deconv_decoder():
    """The shipped setting's networks: the parameter count disentanglement_lib's architecture has
    (counted here layer by layer) and the outputs of the same layers built from Flax's own
    convolutions, on the same parameters."""
    config = config_lib.load_config_file(os.path.join(CONFIGS, "dsprites.py"))
    model = config_lib.make_model(config, models.DataInfo(image_shape=(64, 64, 1)))
    params, _ = model.init(jax.random.key(0))
    layers = [(4 * 4 * 1, 32), (4 * 4 * 32, 32), (2 * 2 * 32, 64), (2 * 2 * 64, 64)]
    layers += [(1024, 256), (256, 10), (256, 10)]  # dense 256, means, log variances
    layers += [(10, 256), (256, 1024)]  # decoder dense layers
    layers += [(4 * 4 * 64, 64), (4 * 4 * 64, 32), (4 * 4 * 32, 32), (4 * 4 * 32, 1)]
    expected = sum(fan_in * out + out for fan_in, out in layers)
    assert sum(np.size(p) for p in jax.tree_util.tree_leaves(params)) == expected == 690_517
    # Glorot uniform: every weight within sqrt(6 / (fan_in + fan_out)), the spread of U(-a, a).
    kernels = [
        p for path, p in jax.tree_util.tree_leaves_with_path(params) if "kernel" in str(path)
    ]
    for w in kernels:
        fan_in, fan_out = np.prod(w.shape[:-1]), np.prod(w.shape[:-2]) * w.shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(w).max() <= limit
        if w.size > 5000:
            np.testing.assert_allclose(np.std(w), limit / np.sqrt(3.0), rtol=0.05)
    x = (np.random.default_rng(0).random((3, 64, 64, 1)) < 0.2).astype(np.float32)
    z = np.random.default_rng(1).normal(size=(3, 10)).astype(np.float32)
    for ours, reference, p, inputs in (
        (model.encoder_net(20), _ReferenceEncoder(), params["encoder"], x),
        (model.decoder_net(), _ReferenceDecoder(), params["decoder"], z),
    ):
        got = jax.jit(ours.apply)({"params": p}, jnp.asarray(inputs))
        want = jax.jit(reference.apply)({"params": p}, jnp.asarray(inputs))
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize(
    "options, bad",
    [
        ({"kernels": (4, 4)}, "kernels (4, 4) must give one kernel size per conv layer"),
        ({"decoder_kernels": (4, 0, 4, 4)}, "decoder_kernels must be a sequence of positive"),
        ({"conv_hidden": (256, -1)}, "conv_hidden must be a sequence of positive"),
    ],
)
def test_backbone_options_are_checked(options, bad):
    family = models.get("vae")
    with pytest.raises(ValueError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        family(image_shape=(64, 64, 1), channels=(32, 32, 64, 64), **options)
