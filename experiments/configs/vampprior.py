"""The VampPrior paper's MLP VAE (Tomczak and Welling 2018) on dynamically binarized Fashion-MNIST.

Encoder and decoder: two gated dense layers of 300 units (``h = (W x + b) * sigmoid(V x + c)``),
40 latents, a Bernoulli decoder; the prior is the mixture of the posteriors at K=500 learned
pseudo-inputs (``model.vampprior``). Adam 5e-4, batch 100 and a linear KL warm-up, as in the paper.

Budget: the paper trains for up to 2000 epochs with early stopping and warms the KL up over 100
epochs; this config trains 100 epochs (60,000 steps) with the KL weight rising over the first 25
(15,000 steps). A quick run: ``--config.train.epochs=5 --config.objective.warmup_steps=1200``.
The paper's test figure is the importance-sampled NLL with 5000 samples (``jaxvae eval``).
"""

from jaxvae.config import base_config

STEPS_PER_EPOCH = 600  # 60,000 training images / batch 100


def get_config():
    config = base_config()
    config.model.kind = "vampprior"
    config.model.architecture = "mlp"
    config.model.layer = "gated"
    config.model.hidden = (300, 300)
    config.model.latent_dim = 40
    config.model.likelihood = "bernoulli"
    config.model.vampprior.num_pseudo = 500
    config.data.binarize = "dynamic"
    config.train.optimizer = "adam"
    config.train.learning_rate = 5e-4
    config.train.batch_size = 100
    config.train.epochs = 100
    config.objective.warmup_steps = 25 * STEPS_PER_EPOCH
    return config
