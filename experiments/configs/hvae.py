"""The two-stochastic-layer VAE of the IWAE paper (Burda et al. 2016) on dynamically binarized
Fashion-MNIST, trained with the ELBO.

Architecture as in the paper: q(z1|x) 784-200-200-(100, 100), q(z2|z1) 100-100-100-(50, 50),
p(z1|z2) 50-100-100-(100, 100), p(x|z1) 100-200-200-784, tanh, Bernoulli pixels; Adam, lr 1e-3.

Departures from the paper, for speed: batch 100 (the paper: 20); a budget of 100 epochs with a
constant learning rate (the paper: 3280 passes, lr 1e-3 * 10^(-i/7) over 8 stages). The paper's
Adam epsilon of 1e-4 is not set: the config has no key for it, so optax's default 1e-8 applies.
Train it with the IWAE bound instead with ``--config.objective.name=iwae --config.objective.k=5``.
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.data.binarize = "dynamic"
    config.model.kind = "hvae"
    config.model.architecture = "mlp"
    config.model.hidden = (200, 200)
    config.model.latent_dim = 100
    config.model.activation = "tanh"
    config.model.likelihood = "bernoulli"
    config.model.hvae.z2_dim = 50
    config.model.hvae.hidden2 = (100, 100)
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 100
    config.train.epochs = 100
    return config
