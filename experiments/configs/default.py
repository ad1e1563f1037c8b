"""Default run: a conv VAE (16 latents, Bernoulli decoder) on Fashion-MNIST, 10 epochs."""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.architecture = "conv"
    config.model.channels = (32, 64)
    config.model.latent_dim = 16
    config.train.epochs = 10
    return config
