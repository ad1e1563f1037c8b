"""A VQ-VAE (van den Oord et al. 2017) with the EMA codebook on Fashion-MNIST.

Encoder: stride-2 3x3 convolutions of 32 and 64 channels, then a 1x1 projection to a 7 x 7 grid of
16-dim vectors, each quantized to the nearest of 512 codes; decoder: a 3x3 convolution, then
transposed convolutions back to 28 x 28; a Bernoulli likelihood for -log p(x | z_q). Commitment
cost 0.25, EMA decay 0.99 and Laplace smoothing 1e-5, as in the paper's appendix. Adam 2e-4 (the
paper's learning rate), batch 128.

The model has no prior over its codes (the paper fits an autoregressive prior afterwards) and no
likelihood bound: there are no samples.png, ELBO or NLL; the test figures are the reconstruction
term, the MSE per pixel and the codebook's usage, and codebook.png shows the 64 most used codes.
``model.latent_dim`` is not used: the latent is the quantized grid, 7 * 7 * 16 = 784 values.

Budget: 10 epochs (4,680 steps); the quick run of the tests and README: ``--config.train.epochs=3``.
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.kind = "vqvae"
    config.model.architecture = "conv"
    config.model.channels = (32, 64)
    config.model.likelihood = "bernoulli"
    config.model.vqvae.codebook_size = 512
    config.model.vqvae.code_dim = 16
    config.model.vqvae.commitment_cost = 0.25
    config.model.vqvae.ema_decay = 0.99
    config.model.vqvae.ema_epsilon = 1e-5
    config.train.optimizer = "adam"
    config.train.learning_rate = 2e-4
    config.train.batch_size = 128
    config.train.epochs = 10
    return config
