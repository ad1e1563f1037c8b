"""The models and protocol of Norouzi et al. 2020's Fashion-MNIST table (Exemplar VAE, NeurIPS),
Gaussian-prior row; ``--config.model.kind=vampprior`` gives the VampPrior row's model (the study
``exemplar_fmnist`` runs all three rows).

Protocol (the paper's code): the 60k training images split 50k train / 10k validation (the last
10k); dynamic binarization for training, the validation and test sets binarized once; two gated
dense layers of 300 units, 40 latents, every Gaussian head's log-variance clipped to [-6, 2]
(the reference code's hardtanh), Bernoulli decoder; batch 100, Adam lr 5e-4; KL warm-up over
100 epochs; up to 2000 epochs with early stopping on the validation negative ELBO (patience 50),
the best epoch evaluated; test NLL by the IWAE bound with 5000 importance samples on the 10k test
images. ``jaxvae bench --config exemplar`` times its training step (docs/benchmarks.md).
"""

from jaxvae.config import load_config_file

STEPS_PER_EPOCH = 500  # 50k images / batch 100


def get_config():
    config = load_config_file("vampprior")
    config.model.kind = "vae"
    config.model.architecture = "mlp"
    config.model.layer = "gated"
    config.model.hidden = (300, 300)
    config.model.latent_dim = 40
    config.model.log_var_range = (-6.0, 2.0)  # the reference code's hardtanh on every log-variance
    config.data.binarize = "dynamic"
    config.data.validation_size = 10_000
    config.train.batch_size = 100
    config.train.learning_rate = 5e-4
    config.train.epochs = 2000
    config.train.early_stopping_patience = 50
    config.train.progress = False
    config.objective.warmup_steps = 100 * STEPS_PER_EPOCH
    config.eval.iwae_k = 5000
    config.eval.iwae_num_examples = 10_000
    config.train.eval_every_epochs = 10  # test figures; the validation set is evaluated every epoch
    return config
