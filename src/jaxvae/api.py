"""Loading a finished (or running) run back into Python: ``jaxvae.load_run(workdir)``."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvae import checkpoint, sharding
from jaxvae import config as config_lib
from jaxvae import train as train_lib
from jaxvae import workdir as workdir_lib
from jaxvae.models import Model, ModelSpec, Params, make_model

RUN_INFO = "run.json"


def write_run_info(workdir: str, image_shape: tuple[int, ...], dataset: str) -> None:
    """Records what the config alone does not say: the shape of the images the model was built for."""
    workdir_lib.write_json(
        os.path.join(workdir, RUN_INFO), {"image_shape": list(image_shape), "dataset": dataset}
    )


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run: its config, model and parameters, and functions bound to them.

    Attributes:
      config: the run's ``ml_collections.ConfigDict``.
      spec: the :class:`~jaxvae.models.ModelSpec`.
      model: the :class:`~jaxvae.models.Model` (pure functions of ``params``).
      params: the parameters of the newest readable checkpoint (host numpy arrays).
      step: the step of that checkpoint.
      encode: ``x -> (mean, log_var)`` (``(code, None)`` for an AE); ``x`` float32 ``[N, H, W, C]``
        in [0, 1].
      decode: ``z -> logits`` (Bernoulli decoder) or the mean image (Gaussian decoder, AE).
    """

    config: ml_collections.ConfigDict
    spec: ModelSpec
    model: Model
    params: Params
    step: int
    encode: Callable[[Any], tuple[jax.Array, jax.Array | None]]
    decode: Callable[[Any], jax.Array]


def load_run(workdir: str, *, warn: Callable[[str], None] | None = None) -> Run:
    """Loads the run in ``workdir`` from its newest readable checkpoint.

    Raises:
      ValueError: ``workdir`` does not exist, holds no run, or has no readable checkpoint.
    """
    config = workdir_lib.read_config(workdir)
    info_path = os.path.join(workdir, RUN_INFO)
    if not os.path.exists(info_path):
        raise ValueError(f"workdir {workdir!r} holds no run ({RUN_INFO} is missing)")
    with open(info_path) as f:
        info = json.load(f)
    spec = config_lib.model_spec(config, tuple(info["image_shape"]))
    model = make_model(spec)
    tx = train_lib.make_optimizer(config.train)
    mesh = sharding.make_mesh(jax.local_devices()[:1])
    abstract = train_lib.abstract_state(model, tx, mesh)
    restored = checkpoint.restore_newest(
        workdir, abstract, quarantine=False, **({"warn": warn} if warn else {})
    )
    if restored is None:
        raise ValueError(f"workdir {workdir!r} has no checkpoint yet")
    state, step = restored
    params = jax.tree.map(np.asarray, state.params)
    device_params = jax.device_put(params)

    @jax.jit
    def _encode(x):
        return model.encode(device_params, x)

    @jax.jit
    def _decode(z):
        return model.decode(device_params, z)

    def encode(x):
        return _encode(jnp.asarray(x, jnp.float32))

    def decode(z):
        return _decode(jnp.asarray(z, jnp.float32))

    return Run(config, spec, model, params, step, encode, decode)
