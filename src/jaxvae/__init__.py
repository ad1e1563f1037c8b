"""jaxvae: autoencoders and variational autoencoders in JAX/Flax.

The public API: :func:`train` (what ``jaxvae train`` does) and :func:`load_run`; :func:`build`
(everything a run needs from a config); model families (:mod:`jaxvae.models`, chosen by name),
decoder likelihoods (:mod:`jaxvae.likelihoods`), the objective, data loading, the train step and
engine, and evaluation. The distributions, corruptions and the rest are in their modules
(:mod:`jaxvae.distributions`, :mod:`jaxvae.corruptions`, ...).
"""

from jaxvae import likelihoods, models, xla_cpu
from jaxvae.api import Run, load_run, posterior, train
from jaxvae.config import load_config_file
from jaxvae.data import Dataset, load_dataset
from jaxvae.engine import TrainState, init_state, make_engine, make_train_step
from jaxvae.evaluate import evaluate_iwae, evaluate_model
from jaxvae.experiment import Experiment, build
from jaxvae.objectives import ObjectiveSpec, make_loss

__version__ = "0.2.0"

xla_cpu.install()  # the CPU lowering of jax.random's hash (see its docstring)

__all__ = [
    "Dataset",
    "Experiment",
    "ObjectiveSpec",
    "Run",
    "TrainState",
    "build",
    "evaluate_model",
    "evaluate_iwae",
    "init_state",
    "likelihoods",
    "load_config_file",
    "load_dataset",
    "load_run",
    "make_engine",
    "make_loss",
    "make_train_step",
    "models",
    "posterior",
    "train",
]
