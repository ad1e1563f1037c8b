"""The disentanglement study's configs (dsprites.py, factorvae.py, dipvae_i.py, dipvae_ii.py,
annealedvae.py) share disentanglement_lib's setting: procedural dSprites, 10 latents, a Bernoulli
decoder, batch 64, Adam 1e-4, about 300k steps; and the beta-VAE one trains (shrunk)."""

import os

import jax
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
