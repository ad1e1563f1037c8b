"""A conditional conv VAE on Fashion-MNIST: the one-hot class label enters the encoder (after the
convolutions) and the decoder (beside z); the conv backbone of ``default.py`` (3x3 stride-2 convs of
32 and 64 channels, 16 latents, Bernoulli decoder). Adam 1e-3, batch 128.

Its test NELBO and NLL bound ``-log p(x | y)``, the likelihood given the true label, which is not
comparable with an unconditional model's ``-log p(x)``. ``samples.png`` has a row per class.

Budget: 10 epochs (4,690 steps), as ``default.py``.
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.kind = "cvae"
    config.model.architecture = "conv"
    config.model.channels = (32, 64)
    config.model.latent_dim = 16
    config.model.likelihood = "bernoulli"
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.train.epochs = 10
    return config
