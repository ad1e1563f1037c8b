"""The one-stochastic-layer IWAE of Burda et al. (2016) on dynamically binarized Fashion-MNIST:
784-200-200-(50, 50) tanh encoder, 50-200-200-784 tanh Bernoulli decoder, trained on the k-sample
importance-weighted bound (k=5) with the standard gradient estimator; Adam, lr 1e-3.

For the doubly reparameterized gradient (DReG, Tucker et al. 2019) of the same bound, add
``--config.objective.estimator=dreg``; ``--config.objective.k=50`` is the paper's other setting.

Departures from the paper, for speed: batch 100 (the paper: 20); a budget of 100 epochs with a
constant learning rate (the paper: 3280 passes with a decaying one); optax's default Adam epsilon
1e-8 (the paper: 1e-4; the config has no key for it).
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.data.binarize = "dynamic"
    config.model.kind = "vae"
    config.model.architecture = "mlp"
    config.model.hidden = (200, 200)
    config.model.latent_dim = 50
    config.model.activation = "tanh"
    config.model.likelihood = "bernoulli"
    config.objective.name = "iwae"
    config.objective.k = 5
    config.objective.estimator = "standard"
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 100
    config.train.epochs = 100
    return config
