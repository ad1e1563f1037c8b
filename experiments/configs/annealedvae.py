"""AnnealedVAE (Burgess et al. 2018) on dSprites in the setting of the disentanglement study of
Locatello et al. (2019): gamma = 1000 and a capacity growing from 0 to c_max = 25 nats over the
first 100,000 steps (disentanglement_lib sweeps c_max over 5, 10, 25, 50, 75, 100;
``model.annealedvae``). The capacity counts training steps, so a run with a smaller budget keeps
it growing for 100,000 steps unless ``model.annealedvae.iteration_threshold`` is lowered too.

The shared setting (data, backbone, optimizer, batch, budget) and where jaxvae's backbone differs
from disentanglement_lib's are ``dsprites.py``'s, which this config starts from.
"""

from jaxvae.config import load_config_file


def get_config():
    config = load_config_file("dsprites")
    config.objective.beta = 1.0  # dsprites.py is the beta-VAE; this family has its own terms
    config.model.kind = "annealedvae"
    config.model.annealedvae.gamma = 1000.0
    config.model.annealedvae.c_max = 25.0
    config.model.annealedvae.iteration_threshold = 100_000
    return config
