"""jaxvae: autoencoders and variational autoencoders in JAX/Flax.

The public API: :func:`train` (what ``jaxvae train`` does) and :func:`load_run`; :func:`build`
(everything a run needs from a config); model families (:mod:`jaxvae.models`, chosen by name),
decoder likelihoods (:mod:`jaxvae.likelihoods`), objectives, distributions, data loading, the
train step and engine, and evaluation.
"""

from jaxvae import likelihoods, models, xla_cpu
from jaxvae.api import Run, load_run, posterior, train
from jaxvae.config import base_config, load_config_file
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
from jaxvae.engine import TrainState, init_state, make_engine, make_train_step
from jaxvae.evaluate import active_units, as_data, evaluate_iwae, evaluate_model
from jaxvae.experiment import Experiment, build, run_keys
from jaxvae.models import DataInfo, Model, num_params
from jaxvae.objectives import ObjectiveSpec, iwae_loss, kl_schedule, make_loss

__version__ = "0.2.0"

xla_cpu.install()  # the CPU lowering of jax.random's hash (see its docstring)

__all__ = [
    "DataInfo",
    "Dataset",
    "Experiment",
    "Model",
    "ObjectiveSpec",
    "Run",
    "TrainState",
    "active_units",
    "add_noise",
    "as_data",
    "base_config",
    "bernoulli_log_prob",
    "build",
    "diag_gaussian_log_prob",
    "dynamic_binarize",
    "evaluate_model",
    "evaluate_iwae",
    "gaussian_kl",
    "gaussian_log_prob",
    "init_state",
    "iwae_loss",
    "kl_schedule",
    "likelihoods",
    "load_config_file",
    "load_dataset",
    "load_run",
    "make_engine",
    "make_loss",
    "make_train_step",
    "models",
    "num_params",
    "posterior",
    "reparameterize",
    "run_keys",
    "standard_normal_log_prob",
    "train",
]
