"""Python entry points: ``jaxvae.train(config, workdir)`` and ``jaxvae.load_run(workdir)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvae import checkpoint, sharding
from jaxvae import experiment as build_lib
from jaxvae import workdir as workdir_lib
from jaxvae.models import DataInfo, Model, Params


def train(config: ml_collections.ConfigDict, workdir: str, *, mesh=None, stream=None):
    """Trains (or resumes) the run of ``config`` in ``workdir``, what ``jaxvae train`` does;
    returns the run's summary dict.

    ``stream`` receives progress lines (default: ``sys.stderr`` as it is at the call).

    Raises:
      ValueError: a bad config, missing data, images that do not fit the model, an unwritable
        workdir, or a workdir that holds a different run. Nothing in the workdir is changed then.
    """
    from jaxvae import runner

    return runner.train(build_lib.build(config, mesh=mesh), workdir, stream=stream)


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run: its config, model and parameters, and functions bound to them.

    Attributes:
      config: the run's ``ml_collections.ConfigDict``.
      model: the model family instance (pure functions of ``params`` and ``state``).
      params: the parameters of the newest readable checkpoint (host numpy arrays).
      state: the model state (``{}`` for most families).
      step: the step of that checkpoint.
      experiment: what :func:`jaxvae.experiment.build` made of the config (without data).
      encode: ``x -> [N, latent_dim]`` (the posterior mean or the code); ``x`` float32
        ``[N, H, W, C]`` in [0, 1], optional ``labels``.
      decode: ``z -> mean image`` in [0, 1] (optional ``labels``).
    """

    config: ml_collections.ConfigDict
    model: Model
    params: Params
    state: Any
    step: int
    experiment: build_lib.Experiment
    encode: Callable[..., jax.Array]
    decode: Callable[..., jax.Array]


def load_run(workdir: str, *, warn: Callable[[str], None] | None = None) -> Run:
    """Loads the run in ``workdir`` from its newest readable checkpoint.

    Raises:
      ValueError: ``workdir`` does not exist, holds no run, holds a run of another format, or has
        no readable checkpoint.
    """
    config = workdir_lib.read_config(workdir)
    info = DataInfo.from_dict(workdir_lib.read_run_info(workdir))
    mesh = sharding.make_mesh(jax.local_devices()[:1])
    exp = build_lib.build(config, mesh=mesh, info=info, load_data=False)
    restored = checkpoint.restore_newest(
        workdir, exp.abstract_state(), quarantine=False, **({"warn": warn} if warn else {})
    )
    if restored is None:
        raise ValueError(f"workdir {workdir!r} has no checkpoint yet")
    state, step = restored
    params = jax.tree.map(np.asarray, state.params)
    model_state = jax.tree.map(np.asarray, state.model_state)
    model = exp.model
    device = jax.device_put((params, model_state))

    @jax.jit
    def _encode(x, labels):
        return model.encode(*device, {"image": x, "label": labels})

    @jax.jit
    def _decode(z, labels):
        return model.decode(*device, z, labels).mean()

    def labels_for(n, labels):
        return jnp.zeros((n,), jnp.int32) if labels is None else jnp.asarray(labels, jnp.int32)

    def encode(x, labels=None):
        x = jnp.asarray(x, jnp.float32)
        return _encode(x, labels_for(x.shape[0], labels))

    def decode(z, labels=None):
        z = jnp.asarray(z, jnp.float32)
        return _decode(z, labels_for(z.shape[0], labels))

    return Run(config, model, params, model_state, step, exp, encode, decode)
