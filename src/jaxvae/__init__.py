"""jaxvae: autoencoders and variational autoencoders in JAX/Flax.

The public API: models as pure functions (:func:`make_model`), objectives (:func:`vae_loss`,
:func:`ae_loss`), distributions, data loading, the train step and engine, evaluation, and
:func:`load_run` for trained runs.
"""

from jaxvae.api import Run, load_run
from jaxvae.corruptions import add_noise, dynamic_binarize
from jaxvae.data import Dataset, load_dataset
from jaxvae.distributions import (
    bernoulli_log_prob,
    diag_gaussian_log_prob,
    gaussian_kl,
    gaussian_log_prob,
    reparameterize,
    standard_normal_log_prob,
)
from jaxvae.evaluate import active_units, evaluate_ae, evaluate_elbo, evaluate_iwae
from jaxvae.models import Model, ModelSpec, make_model, num_params
from jaxvae.objectives import ObjectiveSpec, ae_loss, log_likelihood, vae_loss
from jaxvae.train import TrainState, init_state, make_engine, make_train_step

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "Model",
    "ModelSpec",
    "ObjectiveSpec",
    "Run",
    "TrainState",
    "active_units",
    "add_noise",
    "ae_loss",
    "bernoulli_log_prob",
    "diag_gaussian_log_prob",
    "dynamic_binarize",
    "evaluate_ae",
    "evaluate_elbo",
    "evaluate_iwae",
    "gaussian_kl",
    "gaussian_log_prob",
    "init_state",
    "load_dataset",
    "load_run",
    "log_likelihood",
    "make_engine",
    "make_model",
    "make_train_step",
    "num_params",
    "reparameterize",
    "standard_normal_log_prob",
    "vae_loss",
]
