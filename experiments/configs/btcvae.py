"""A beta-TCVAE (Chen et al. 2018) on Fashion-MNIST: the conv VAE of ``default.py`` (stride-2
convolutions of 32 and 64 channels, 10 latents, a Bernoulli decoder) with the KL split by
minibatch-weighted sampling into MI + TC + dimension-wise KL, weighted alpha=1, beta=6, gamma=1
(the paper's weights; ``model.btcvae``). Adam 1e-3, batch 128 (the MWS estimator's M; larger
batches give better estimates of log q(z)), no KL warm-up.

Test figures: the ELBO with the analytic KL (comparable with a VAE's), the importance-weighted NLL
(``jaxvae eval``) and the MWS estimates of MI, TC and dimension-wise KL within each eval batch of
1000 test images.

Budget: 10 epochs (4,680 steps); a quick run: ``--config.train.epochs=3``.
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.kind = "btcvae"
    config.model.architecture = "conv"
    config.model.channels = (32, 64)
    config.model.latent_dim = 10
    config.model.likelihood = "bernoulli"
    config.model.btcvae.alpha = 1.0
    config.model.btcvae.beta = 6.0
    config.model.btcvae.gamma = 1.0
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.train.epochs = 10
    config.eval.batch_size = 1000
    return config
