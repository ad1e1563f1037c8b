"""A denoising conv autoencoder: Gaussian noise (std 0.3) on the input, the clean image as target."""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.kind = "dae"
    config.model.architecture = "conv"
    config.model.latent_dim = 32
    config.objective.ae_loss = "l2"
    config.objective.noise = "gaussian"
    config.objective.noise_level = 0.3
    config.train.epochs = 10
    return config
