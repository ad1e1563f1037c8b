"""The conv VAE with a discretized logistic mixture decoder (Salimans et al. 2017; 5 components
per pixel and channel, channels independent) on 8-bit Fashion-MNIST (``data.binarize="none"``:
the 256 grey levels are the data). summary.json reports bits per dimension beside nats
(``test_bpd_nelbo``, and ``test_bpd_nll`` with ``eval.iwae_k``).

The same config trains on CIFAR-10 (32x32x3) prepared as a TFDS dataset:
``--config.data.name=cifar10 --config.data.tfds_data_dir=DIR`` (the conv stack divides 32 too).

Budget: 10 epochs (4,690 steps), Adam 1e-3, batch 128.
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.architecture = "conv"
    config.model.channels = (32, 64)
    config.model.latent_dim = 16
    config.model.likelihood = "logistic_mixture"
    config.model.num_mixtures = 5
    config.data.binarize = "none"
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.train.epochs = 10
    return config
