"""Python entry points: ``jaxvae.train(config, workdir)`` and ``jaxvae.load_run(workdir)``."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import checkpoint as checkpoint_lib
from jaxvae import experiment as build_lib
from jaxvae import layout, sharding
from jaxvae import workdir as workdir_lib
from jaxvae.data.base import to_unit_float
from jaxvae.models import DataInfo, Model, Params
from jaxvae.models import capabilities as caps


def train(config: Any, workdir: str, *, mesh=None, stream=None):
    """Trains (or resumes) the run of ``config`` in ``workdir``, what ``jaxvae train`` does;
    returns the run's summary dict.

    ``stream`` receives progress lines (default: ``sys.stderr`` as it is at the call).

    Raises:
      ValueError: a bad config, missing data, images that do not fit the model, an unwritable
        workdir, or a workdir that holds a different run. Nothing in the workdir is changed then.
    """
    from jaxvae import runner

    stream = sys.stderr if stream is None else stream
    finished = workdir_lib.finished_summary(workdir, config)  # left alone: nothing is rewritten
    if finished is not None:
        print(f"{workdir}: already finished ({finished.get('steps')} steps)", file=stream)
        return finished
    return runner.train(build_lib.build(config, mesh=mesh), workdir, stream=stream)


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run: its config, model and parameters, and functions bound to them.

    Attributes:
      config: the run's ``ml_collections.ConfigDict``.
      model: the model family instance (pure functions of ``params`` and ``state``).
      params: the parameters of the checkpoint loaded (host numpy arrays).
      state: the model state (``{}`` for most families).
      step: the step of that checkpoint.
      experiment: what :func:`jaxvae.experiment.build` made of the config (without data).
      encode: ``x -> [N, latent_dim]`` (the posterior mean or the code); ``x`` float
        ``[N, H, W, C]`` in [0, 1] (or uint8, read as ``x / 255``), optional ``labels``.
      decode: ``z -> mean image`` in [0, 1] (optional ``labels``).
      checkpoint: which state was loaded: ``"best"`` (the best validation epoch's, kept under
        early stopping) or ``"newest"``.
    """

    config: Any
    model: Model
    params: Params
    state: Any
    step: int
    experiment: build_lib.Experiment
    encode: Callable[..., jax.Array]
    decode: Callable[..., jax.Array]
    checkpoint: str = "newest"

    def posterior(self, x, labels=None):
        """:func:`posterior` at this run's parameters."""
        return posterior(self.model, self.params, self.state, x, labels)


def posterior(model: Model, params, state, x, labels=None):
    """``q(z | x)`` of each image ``x`` (float32 ``[N, H, W, C]`` in [0, 1]; ``labels`` for a
    conditional family): a distribution with ``mean``, ``stddev``, ``sample`` and ``log_prob``.
    Raises ``ValueError`` for a family without one (an autoencoder's code is deterministic)."""
    caps.require(model, caps.Posterior, "posterior(x)")
    x = to_unit_float(jnp.asarray(x))
    labels = jnp.zeros(x.shape[:1], jnp.int32) if labels is None else jnp.asarray(labels)
    return _posterior(model, params, state, {"image": x, "label": labels.astype(jnp.int32)})


@functools.partial(jax.jit, static_argnums=0)
def _posterior(model, params, state, batch):
    return model.posterior(params, state, batch)


CHECKPOINTS = ("best", "newest")


def which_checkpoint(workdir: str, checkpoint: str | None = None) -> str:
    """The checkpoint of ``workdir`` to use: ``checkpoint`` if given, else ``"best"`` when the run
    kept a best state (early stopping; ``summary.json``'s figures are that state's), else
    ``"newest"``.

    Raises:
      ValueError: ``checkpoint`` is not one of :data:`CHECKPOINTS`, or is ``"best"`` for a run
        that kept no best state.
    """
    has_best = bool(checkpoint_lib.steps(workdir, layout.BEST))
    if checkpoint is None:
        return "best" if has_best else "newest"
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint={checkpoint!r}; expected one of {CHECKPOINTS}")
    if checkpoint == "best" and not has_best:
        raise ValueError(
            f"workdir {workdir!r} has no best checkpoint ({layout.BEST}/ is kept only with "
            "early stopping); use the newest"
        )
    return checkpoint


def load_run(
    workdir: str, *, checkpoint: str | None = None, warn: Callable[[str], None] | None = None
) -> Run:
    """Loads the run in ``workdir`` from one of its checkpoints.

    Args:
      checkpoint: ``"best"`` (the best validation epoch's state, kept under early stopping: the
        state ``summary.json`` reports), ``"newest"`` (the newest readable checkpoint), or
        ``None``: the best when the run has one, else the newest (:func:`which_checkpoint`).
      warn: called with a message for each checkpoint that cannot be read.

    Raises:
      ValueError: ``workdir`` does not exist, holds no run, holds a run of another format, or has
        no readable checkpoint (of the kind asked for).
    """
    config = workdir_lib.read_config(workdir)
    info = DataInfo.from_dict(workdir_lib.read_run_info(workdir))
    which = which_checkpoint(workdir, checkpoint)
    mesh = sharding.make_mesh(jax.local_devices()[:1])
    exp = build_lib.build(config, mesh=mesh, info=info, load_data=False)
    options = {"name": layout.BEST if which == "best" else layout.CHECKPOINTS, "quarantine": False}
    options |= {"warn": warn} if warn else {}
    restored = checkpoint_lib.restore_newest(workdir, exp.abstract_state(), **options)
    if restored is None:
        raise ValueError(f"workdir {workdir!r} has no checkpoint yet")
    state, step = restored
    params, model_state = jax.tree.map(np.asarray, (state.params, state.model_state))
    model = exp.model
    device = jax.device_put((params, model_state))

    _encode = jax.jit(lambda x, labels: model.encode(*device, {"image": x, "label": labels}))
    _decode = jax.jit(lambda z, labels: model.decode(*device, z, labels).mean())

    def labels_for(n, labels):
        return jnp.zeros((n,), jnp.int32) if labels is None else jnp.asarray(labels, jnp.int32)

    def encode(x, labels=None):
        x = to_unit_float(jnp.asarray(x))
        return _encode(x, labels_for(x.shape[0], labels))

    def decode(z, labels=None):
        z = jnp.asarray(z, jnp.float32)
        return _decode(z, labels_for(z.shape[0], labels))

    return Run(config, model, params, model_state, step, exp, encode, decode, which)
