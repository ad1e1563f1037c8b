"""The binarization protocols of :func:`jaxvae.data.load_dataset` and the record of how its
splits were made (:func:`protocol_of_splits`, a run's ``Dataset.protocol``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxvae.corruptions import binarize_images
from jaxvae.data.base import SPLITS, Dataset, to_unit_float

# Seed of the one-off binarization of the test and validation sets under binarize="dynamic". A
# constant, not the run's seed: runs with different seeds are evaluated on the same binary images.
EVAL_BINARIZATION_SEED = 0


# The splits each binarization protocol binarizes once, in the order of their rng streams.
ONCE = {"static": ("train", "test", "validation"), "dynamic": ("test", "validation")}


def binarize_once(dataset: Dataset, binarize: str, seed: int) -> Dataset:
    """Binarizes the splits ``ONCE[binarize]`` of a dataset once (none for ``"none"``).

    Split ``ONCE[binarize][i]`` becomes ``x_bin = (u < x)`` with
    ``u = rng.random(x.shape, dtype=np.float32)`` and ``rng`` the ``i``-th of
    ``np.random.default_rng(s).spawn(len(ONCE[binarize]))``: ``s`` is ``seed`` for ``"static"``
    (every split) and :data:`EVAL_BINARIZATION_SEED` for ``"dynamic"`` (test and validation, the
    same for every run of a study; training resamples every batch). An example's binarization
    does not depend on how many examples of the other splits were kept (nor, the uniforms being
    drawn in order, of its own split).

    Args:
      dataset: The dataset (images in ``[0, 1]``).
      binarize: ``"none"``, ``"static"`` or ``"dynamic"``.
      seed: The run's seed (``"static"`` only).

    Returns:
      A new :class:`Dataset` whose binarized splits are exactly 0.0 or 1.0.
    """
    splits = ONCE.get(binarize, ())
    rngs = np.random.default_rng(_seed(binarize, seed)).spawn(len(splits))
    return dataclasses.replace(
        dataset,
        **{
            f"{split}_images": binarize_images(
                to_unit_float(getattr(dataset, f"{split}_images")), rng
            )
            for split, rng in zip(splits, rngs, strict=True)
        },
    )


def _seed(binarize: str, seed: int) -> int | None:
    return {"static": int(seed), "dynamic": EVAL_BINARIZATION_SEED}.get(binarize)


def protocol_of_splits(
    dataset: Dataset, binarize: str, seed: int, validation_size: int
) -> dict[str, Any]:
    continuous = "continuous pixels in [0, 1]"
    words = dict.fromkeys(SPLITS, continuous)
    if binarize == "dynamic":
        words["train"] += "; every training batch resampled as Bernoulli(x) (dynamic_binarize)"
    splits = ONCE.get(binarize, ())
    for i, split in enumerate(splits):
        words[split] = (
            f"binarized once: pixel = u < x, u = np.random.default_rng({_seed(binarize, seed)})"
            f".spawn({len(splits)})[{i}].random(images.shape, dtype=np.float32)"
        )
    if validation_size:
        held_out = f"the last {validation_size} examples of the training split, before limit_train"
        words["train"] = (
            f"the training split less its last {validation_size} examples; {words['train']}"
        )
        words["validation"] = f"{held_out}; {words['validation']}"
    else:
        words["validation"] = "none"
    return {
        "binarize": binarize,
        "binarization_seed": _seed(binarize, seed),
        **words,
        "validation_size": int(validation_size),
        **{f"num_{split}": int(getattr(dataset, f"{split}_images").shape[0]) for split in SPLITS},
    }
