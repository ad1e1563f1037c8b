"""Loading a dataset by name: the dispatch to each source and the evaluation protocol.

:func:`load_dataset` picks the loader (:mod:`~jaxvae.data.idx`, :mod:`~jaxvae.data.tfds`,
:mod:`~jaxvae.data.npz`) and then applies what is the same for every source: binarization, and
records how the splits were made in :attr:`Dataset.protocol`. :func:`load_from_config` reads the
arguments from a config's ``data`` section.

Binarization protocols (``binarize=``):

* ``"none"``: every split keeps its continuous pixels in ``[0, 1]``.
* ``"static"``: every split is binarized once, ``x_bin = u < x`` with uniforms ``u`` from
  ``np.random.default_rng(seed).spawn(2)`` (train, test), ``seed`` being the run's seed.
* ``"dynamic"``: the training images stay continuous (the training loop resamples each batch
  with :func:`~jaxvae.corruptions.dynamic_binarize`), and the test images are binarized once with
  the fixed :data:`EVAL_BINARIZATION_SEED`, independent of the run's seed, so that every run of a
  study is evaluated on the same binary test set, the protocol of the papers that report test
  negative ELBO and NLL of dynamically binarized (Fashion-)MNIST. Evaluating on the continuous
  test pixels instead gives numbers that are not comparable with theirs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxvae.corruptions import BINARIZE_MODES, binarize_images
from jaxvae.data.base import Dataset, check_choice
from jaxvae.data.idx import load_fashion_mnist_idx
from jaxvae.data.npz import load_npz
from jaxvae.data.tfds import load_fashion_mnist_tfds, load_tfds_dataset

DATASETS = ("fashion_mnist", "mnist", "binarized_mnist", "cifar10", "npz")
SOURCES = ("auto", "idx", "tfds")

# Seed of the one-off binarization of the test set under binarize="dynamic". A constant, not the
# run's seed: runs with different seeds are evaluated on the same binary images.
EVAL_BINARIZATION_SEED = 0

__all__ = [
    "DATASETS",
    "EVAL_BINARIZATION_SEED",
    "SOURCES",
    "Dataset",
    "binarize_for_evaluation",
    "load_dataset",
    "load_from_config",
    "static_binarize",
]


def load_dataset(
    name: str,
    *,
    data_dir: str = "",
    tfds_data_dir: str = "",
    source: str = "auto",
    binarize: str = "none",
    seed: int = 0,
    limit_train: int = 0,
    limit_test: int = 0,
) -> Dataset:
    """Loads a dataset as float32 images in ``[0, 1]``.

    Args:
      name: One of :data:`DATASETS`.
      data_dir: For ``fashion_mnist``, the directory holding the IDX files (default: the
        ``JAXVAE_FASHION_MNIST_DIR`` environment variable, else
        :data:`~jaxvae.data.DEFAULT_FASHION_MNIST_DIR`). For ``npz``, the path of the ``.npz``
        file. Ignored by the TFDS datasets.
      tfds_data_dir: TFDS data directory for ``mnist``, ``binarized_mnist``, ``cifar10`` and for
        ``fashion_mnist`` with ``source="tfds"`` (default: the ``TFDS_DATA_DIR`` environment
        variable, else ``~/tensorflow_datasets``).
      source: For ``fashion_mnist``: ``"idx"`` reads the IDX files with numpy, ``"tfds"`` goes
        through a TFDS data source prepared from the same files, ``"auto"`` means ``"idx"``.
        Other datasets accept ``"auto"`` and their only source (``"tfds"`` for TFDS datasets).
      binarize: ``"none"``; ``"static"`` samples every pixel once from a Bernoulli with the pixel
        intensity as probability (seeded by ``seed``), giving exact 0/1 values in every split
        (:func:`static_binarize`); ``"dynamic"`` keeps the training images continuous (the
        training loop resamples each batch with :func:`~jaxvae.corruptions.dynamic_binarize`)
        and binarizes the test images once with :data:`EVAL_BINARIZATION_SEED`, whatever
        ``seed`` is (:func:`binarize_for_evaluation`).
      seed: The run's seed: seed of the static binarization; unused otherwise.
      limit_train: If positive, keep only the first ``limit_train`` training examples.
      limit_test: If positive, keep only the first ``limit_test`` test examples.

    Returns:
      The loaded :class:`Dataset`. Its ``protocol`` records how the splits were made, for a
      run's ``summary.json``:

      * ``"binarize"``: the ``binarize`` argument;
      * ``"binarization_seed"``: the seed of the one-off binarization (``seed`` for
        ``"static"``, :data:`EVAL_BINARIZATION_SEED` for ``"dynamic"``), ``None`` for ``"none"``;
      * ``"train"``, ``"test"``: how each split's pixels were made, in words and numpy;
      * ``"num_train"``, ``"num_test"``: the number of examples of each split.

    Raises:
      ValueError: For an unknown name, source or binarization, a negative limit, or when the data
        is missing, not prepared or malformed.
    """
    check_choice("name", name, DATASETS)
    check_choice("source", source, SOURCES)
    check_choice("binarize", binarize, BINARIZE_MODES)
    for arg, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if int(value) != value or value < 0:
            raise ValueError(f"{arg}={value!r}; expected an integer >= 0 (0 keeps everything).")
    limit_train, limit_test = int(limit_train), int(limit_test)

    if name == "fashion_mnist":
        if source == "tfds":
            dataset = load_fashion_mnist_tfds(data_dir, tfds_data_dir, limit_train, limit_test)
        else:
            dataset = load_fashion_mnist_idx(data_dir, limit_train, limit_test)
    elif name == "npz":
        if source not in ("auto",):
            raise ValueError(f"source={source!r} for the npz dataset; expected 'auto'.")
        dataset = load_npz(data_dir, limit_train, limit_test)
    else:
        if source == "idx":
            raise ValueError(
                f"source='idx' for dataset {name!r}; IDX files are only read for fashion_mnist. "
                "Expected 'auto' or 'tfds'."
            )
        dataset = load_tfds_dataset(name, tfds_data_dir, limit_train, limit_test)

    if binarize == "static":
        dataset = static_binarize(dataset, seed)
    elif binarize == "dynamic":
        dataset = binarize_for_evaluation(dataset)
    return dataclasses.replace(dataset, protocol=_protocol(dataset, binarize, seed))


def load_from_config(cfg: Any, seed: int = 0) -> Dataset:
    """Loads the dataset described by the ``data`` section of a config.

    Args:
      cfg: An ``ml_collections.ConfigDict`` (or mapping) with the field ``name`` and optionally
        ``data_dir``, ``tfds_data_dir``, ``source``, ``binarize``, ``limit_train`` and
        ``limit_test`` (see :func:`load_dataset`). Other fields are ignored.
      seed: The experiment's global seed, used for static binarization.

    Returns:
      The loaded :class:`Dataset`.

    Raises:
      ValueError: If ``name`` is missing, or as :func:`load_dataset`.
    """
    name = cfg.get("name", None)
    if not name:
        raise ValueError(
            f"Data config has no dataset name (got {name!r}); expected one of {DATASETS}."
        )
    return load_dataset(
        str(name),
        data_dir=str(cfg.get("data_dir", "") or ""),
        tfds_data_dir=str(cfg.get("tfds_data_dir", "") or ""),
        source=str(cfg.get("source", "auto") or "auto"),
        binarize=str(cfg.get("binarize", "none") or "none"),
        seed=int(seed),
        limit_train=int(cfg.get("limit_train", 0) or 0),
        limit_test=int(cfg.get("limit_test", 0) or 0),
    )


def static_binarize(dataset: Dataset, seed: int) -> Dataset:
    """Binarizes a dataset once, deterministically for ``seed``.

    The train and test splits use independent streams spawned from
    ``np.random.default_rng(seed)``, so an example's binarization does not depend on how many
    examples of either split were kept.

    Args:
      dataset: The dataset to binarize (images in ``[0, 1]``).
      seed: Seed of ``np.random.default_rng``.

    Returns:
      A new :class:`Dataset` whose images are exactly 0.0 or 1.0.
    """
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    return dataclasses.replace(
        dataset,
        train_images=binarize_images(dataset.train_images, train_rng),
        test_images=binarize_images(dataset.test_images, test_rng),
    )


def binarize_for_evaluation(dataset: Dataset, seed: int = EVAL_BINARIZATION_SEED) -> Dataset:
    """Binarizes the test split once for evaluation, leaving the training split continuous.

    The protocol of dynamic binarization: training resamples every batch, while the test set is
    one fixed binary sample, ``x_bin = (u < x)`` with
    ``u = np.random.default_rng(seed).spawn(2)[0].random(x.shape, dtype=np.float32)`` (see
    :func:`~jaxvae.corruptions.binarize_images`), the same for every run of a study.

    Args:
      dataset: The dataset (images in ``[0, 1]``).
      seed: Seed of ``np.random.default_rng``; keep the default, :data:`EVAL_BINARIZATION_SEED`,
        to evaluate on the same images as every other run.

    Returns:
      A new :class:`Dataset` whose test images are exactly 0.0 or 1.0.
    """
    test_rng, _ = np.random.default_rng(seed).spawn(2)
    return dataclasses.replace(dataset, test_images=binarize_images(dataset.test_images, test_rng))


def _protocol(dataset: Dataset, binarize: str, seed: int) -> dict[str, Any]:
    def once(seed: int, stream: int) -> str:
        return (
            f"binarized once: pixel = u < x, u = np.random.default_rng({seed}).spawn(2)"
            f"[{stream}].random(images.shape, dtype=np.float32)"
        )

    continuous = "continuous pixels in [0, 1]"
    if binarize == "static":
        binarization_seed, train, test = int(seed), once(seed, 0), once(seed, 1)
    elif binarize == "dynamic":
        binarization_seed = EVAL_BINARIZATION_SEED
        train = f"{continuous}; every training batch resampled as Bernoulli(x) (dynamic_binarize)"
        test = once(EVAL_BINARIZATION_SEED, 0)
    else:
        binarization_seed, train, test = None, continuous, continuous
    return {
        "binarize": binarize,
        "binarization_seed": binarization_seed,
        "train": train,
        "test": test,
        "num_train": int(dataset.train_images.shape[0]),
        "num_test": int(dataset.test_images.shape[0]),
    }
