"""A conv autoencoder (32 latents) with an L2 pixel loss on Fashion-MNIST."""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.kind = "ae"
    config.model.architecture = "conv"
    config.model.latent_dim = 32
    config.model.ae.ae_loss = "l2"
    config.train.epochs = 10
    return config
