"""``jaxvae encode``: the latent codes of a run's images, written as an ``.npz``.

For each image of a split (in the split's order), the file holds

* ``mean`` ``[N, D]``: the posterior mean of ``q(z | x)`` for a family with a posterior
  (:meth:`posterior`, a :class:`~jaxvae.distributions.DiagGaussian`), else the family's code
  (:meth:`encode`: an autoencoder's code, a VQ-VAE's quantized grid, flattened);
* ``stddev`` ``[N, D]``: the posterior standard deviations, for a family with a posterior only;
* ``label`` ``[N]``: the dataset's labels;
* ``factors`` ``[N, F]`` and ``factor_names`` ``[F]``: the ground-truth factors, for data that has
  them (dSprites, Shapes3D);
* ``step``: the step of the checkpoint encoded.

The images are those the run is evaluated on: the one data preparation of
:func:`jaxvae.data.load_from_config` (limits, validation split, binarization of the test and
validation images), encoded in batches of ``eval.batch_size`` by one compiled function. Nothing
is random: the same run and checkpoint give the same file.
"""

from __future__ import annotations

import dataclasses
import functools
import io as bytes_io
from typing import Any

import jax
import numpy as np

from jaxvae import api, evaluate, io
from jaxvae import data as data_lib
from jaxvae.models import Model
from jaxvae.models import capabilities as caps

SPLITS = ("test", "train", "validation")


@functools.partial(jax.jit, static_argnums=0)
def _codes(model: Model, params, state, batch) -> dict[str, jax.Array]:
    if caps.has(model, caps.Posterior):
        q = model.posterior(params, state, batch)
        return {"mean": q.mean(), "stddev": q.stddev()}
    return {"mean": model.encode(params, state, batch)}


def encode_images(run: api.Run, images, labels, *, batch_size: int) -> dict[str, np.ndarray]:
    """``mean`` (and ``stddev`` for a family with a posterior) of each image, ``[N, D]``.

    The images go through in batches of ``batch_size``, the last one padded with zeros, so that
    one compiled function serves every batch.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    data = evaluate.as_data(images, labels)  # uint8 images stay so; each batch becomes v / 255
    run.model.check_images(data["image"])
    params, state = jax.device_put((run.params, run.state))
    fn = lambda batch, _, p, s: _codes(run.model, p, s, batch)
    return evaluate.run_batched(fn, data, batch_size, run.experiment.mesh, params, state)


def encode_split(run: api.Run, split: str = "test") -> dict[str, np.ndarray]:
    """What ``jaxvae encode`` writes (see the module docstring) for ``split`` of ``run``'s data.

    Raises:
      ValueError: ``split`` is not one of :data:`SPLITS`, the split is empty (a run without a
        validation set), or the data cannot be loaded.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; expected one of {SPLITS}")
    exp = run.experiment
    dataset = data_lib.load_from_config(exp.data, exp.seed, test_only=split == "test")
    data = dataclasses.replace(exp, dataset=dataset).split(split)
    if data["image"].shape[0] == 0:
        size = exp.data.validation_size
        raise ValueError(f"the {split} split of the run is empty (data.validation_size is {size})")
    out = encode_images(run, data["image"], data["label"], batch_size=int(exp.eval.batch_size))
    out["label"] = np.asarray(data["label"], np.int32)
    if "factors" in data:
        out["factors"] = np.asarray(data["factors"], np.int32)
        out["factor_names"] = np.asarray(dataset.factor_names, str)
    out["step"] = np.asarray(run.step, np.int64)
    return out


def write_npz(path: str, arrays: dict[str, Any]) -> None:
    """Writes ``arrays`` as an uncompressed ``.npz`` at ``path``, atomically."""
    buffer = bytes_io.BytesIO()
    np.savez(buffer, **arrays)
    io.write_atomic(path, buffer.getvalue())
