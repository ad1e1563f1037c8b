"""The conv VAE of the benchmarks: 3x3 stride-2 convs of 32 and 64 channels, dense to 2x16 latents;
decoder dense to 7x7x64, 3x3 stride-2 transposed convs of 32 and 1 channels. Adam 1e-3, batch 128."""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.architecture = "conv"
    config.model.channels = (32, 64)
    config.model.latent_dim = 16
    config.model.likelihood = "bernoulli"
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.train.epochs = 10
    return config
