"""The pytorch/examples VAE protocol: 784-400-20 ReLU MLP, Bernoulli decoder on continuous pixels,
Adam 1e-3, batch 128, 10 epochs (the last partial batch of each epoch is dropped)."""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.architecture = "mlp"
    config.model.hidden = (400,)
    config.model.latent_dim = 20
    config.model.likelihood = "bernoulli"
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.train.epochs = 10
    return config
