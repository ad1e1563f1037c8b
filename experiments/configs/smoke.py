"""A tiny run for tests: a small MLP VAE on the first 512 Fashion-MNIST images, 2 epochs."""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.architecture = "mlp"
    config.model.hidden = (64,)
    config.model.latent_dim = 2
    config.data.limit_train = 512
    config.data.limit_test = 256
    config.train.batch_size = 64
    config.train.epochs = 2
    config.train.progress = False
    config.eval.batch_size = 128
    config.eval.num_pictures = 16
    return config
