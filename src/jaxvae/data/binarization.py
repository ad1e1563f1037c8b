"""The binarization protocols of :func:`jaxvae.data.load_dataset` and the record of how its
splits were made (:func:`protocol_of_splits`, a run's ``Dataset.protocol``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxvae.corruptions import binarize_images
from jaxvae.data.base import Dataset, to_unit_float

# Seed of the one-off binarization of the test and validation sets under binarize="dynamic". A
# constant, not the run's seed: runs with different seeds are evaluated on the same binary images.
EVAL_BINARIZATION_SEED = 0


def static_binarize(dataset: Dataset, seed: int) -> Dataset:
    """Binarizes a dataset once, deterministically for ``seed``.

    The train, test and validation splits use the independent streams
    ``np.random.default_rng(seed).spawn(3)``, in that order, so an example's binarization does
    not depend on how many examples of the other splits were kept (nor, for train and test, of
    its own: the uniforms are drawn in order).

    Args:
      dataset: The dataset to binarize (images in ``[0, 1]``).
      seed: Seed of ``np.random.default_rng``.

    Returns:
      A new :class:`Dataset` whose images are exactly 0.0 or 1.0.
    """
    train_rng, test_rng, validation_rng = np.random.default_rng(seed).spawn(3)
    return dataclasses.replace(
        dataset,
        train_images=binarize_images(to_unit_float(dataset.train_images), train_rng),
        test_images=binarize_images(dataset.test_images, test_rng),
        validation_images=binarize_images(dataset.validation_images, validation_rng),
    )


def binarize_for_evaluation(dataset: Dataset, seed: int = EVAL_BINARIZATION_SEED) -> Dataset:
    """Binarizes the test and validation splits once, leaving the training split continuous.

    The protocol of dynamic binarization: training resamples every batch, while the test and
    validation sets are each one fixed binary sample, ``x_bin = (u < x)`` with
    ``u = rng.random(x.shape, dtype=np.float32)`` and ``rng`` the first (test) or second
    (validation) of ``np.random.default_rng(seed).spawn(2)``, the same for every run of a study.

    Args:
      dataset: The dataset (images in ``[0, 1]``).
      seed: Seed of ``np.random.default_rng``; keep the default, :data:`EVAL_BINARIZATION_SEED`,
        to evaluate on the same images as every other run.

    Returns:
      A new :class:`Dataset` whose test and validation images are exactly 0.0 or 1.0.
    """
    test_rng, validation_rng = np.random.default_rng(seed).spawn(2)
    return dataclasses.replace(
        dataset,
        test_images=binarize_images(dataset.test_images, test_rng),
        validation_images=binarize_images(dataset.validation_images, validation_rng),
    )


def protocol_of_splits(
    dataset: Dataset, binarize: str, seed: int, validation_size: int
) -> dict[str, Any]:
    def once(seed: int, streams: int, stream: int) -> str:
        return (
            f"binarized once: pixel = u < x, u = np.random.default_rng({seed}).spawn({streams})"
            f"[{stream}].random(images.shape, dtype=np.float32)"
        )

    continuous = "continuous pixels in [0, 1]"
    if binarize == "static":
        binarization_seed = int(seed)
        train, test, validation = (once(seed, 3, i) for i in range(3))
    elif binarize == "dynamic":
        binarization_seed = EVAL_BINARIZATION_SEED
        train = f"{continuous}; every training batch resampled as Bernoulli(x) (dynamic_binarize)"
        test, validation = (once(EVAL_BINARIZATION_SEED, 2, i) for i in range(2))
    else:
        binarization_seed, train, test, validation = None, continuous, continuous, continuous
    if validation_size:
        held_out = f"the last {validation_size} examples of the training split, before limit_train"
        train = f"the training split less its last {validation_size} examples; {train}"
        validation = f"{held_out}; {validation}"
    else:
        validation = "none"
    return {
        "binarize": binarize,
        "binarization_seed": binarization_seed,
        "train": train,
        "validation": validation,
        "test": test,
        "validation_size": int(validation_size),
        "num_train": int(dataset.train_images.shape[0]),
        "num_validation": int(dataset.validation_images.shape[0]),
        "num_test": int(dataset.test_images.shape[0]),
    }
