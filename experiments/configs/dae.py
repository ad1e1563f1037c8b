"""A denoising conv autoencoder: Gaussian noise (std 0.3) on the input, the clean image as target."""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.kind = "dae"
    config.model.architecture = "conv"
    config.model.latent_dim = 32
    config.model.dae.ae_loss = "l2"
    config.model.dae.noise = "gaussian"
    config.model.dae.noise_level = 0.3
    config.train.epochs = 10
    return config
