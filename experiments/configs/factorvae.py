"""FactorVAE (Kim and Mnih 2018) on dSprites in the setting of the disentanglement study of
Locatello et al. (2019): gamma = 10 (disentanglement_lib sweeps 10, 20, 30, 40, 50, 100), the
discriminator six dense layers of 1000 units with leaky ReLU trained by its own Adam (learning
rate 1e-4, beta1 0.5, beta2 0.9; ``model.factorvae``).

The shared setting (data, backbone, optimizer, batch, budget) and where jaxvae's backbone differs
from disentanglement_lib's are ``dsprites.py``'s, which this config starts from.
"""

from jaxvae.config import load_config_file


def get_config():
    config = load_config_file("dsprites")
    config.objective.beta = 1.0  # dsprites.py is the beta-VAE; this family has its own terms
    config.model.kind = "factorvae"
    config.model.factorvae.gamma = 10.0
    config.model.factorvae.disc_hidden = (1000,) * 6
    config.model.factorvae.disc_learning_rate = 1e-4
    config.model.factorvae.disc_b1 = 0.5
    config.model.factorvae.disc_b2 = 0.9
    return config
