"""Datasets for jaxvae: loading, preprocessing and input corruption.

Every loader returns a :class:`Dataset` of images in ``[0, 1]`` laid out as ``[N, H, W, C]`` plus
int32 labels: float32, except a training split of 8-bit pixels, which stays uint8 (its stored
form, a quarter of the memory, in memory and on the devices): pixel ``v`` is ``v / 255``, as
:func:`to_unit_float` (the one such map) converts it, on the host or inside the compiled step.
Sources:

* ``fashion_mnist``: the original IDX files (Debian's ``dataset-fashion-mnist`` package puts them
  in ``/usr/share/datasets/fashion-mnist``), read directly with numpy (``source="idx"``) or through
  a TFDS array_record data source built from those same files (``source="tfds"``).
* ``mnist``, ``binarized_mnist``, ``cifar10``: TFDS datasets prepared (in the array_record
  format) under ``tfds_data_dir``; TFDS downloads and prepares them only with ``download``.
* ``npz``: a user-supplied ``.npz`` file.
* ``folder``: a folder of PNG/JPEG images, class sub-folders giving labels, decoded once into a
  cache (:mod:`jaxvae.data.folder`); ``celeb_a``: TFDS's CelebA, centre crop 148 and resize to
  64 (:mod:`jaxvae.data.tfds_celeb_a`).
* ``dsprites_procedural``: dSprites rendered here with numpy on the original's factor grid
  (:mod:`jaxvae.data.dsprites`); ``dsprites``, ``shapes3d``: TFDS datasets, prepared as above
  (:mod:`jaxvae.data.tfds_ground_truth`). These carry ground-truth factors (``*_factors``).

Every source registers itself under its name in the module that loads it
(:func:`jaxvae.data.base.register`): a new source is one module calling ``register``.

One module per concern:

* :mod:`jaxvae.data.base`: the :class:`Dataset` type and what every loader shares;
* :mod:`jaxvae.data.dataset`: :func:`load_dataset` (the dispatch by name, binarization and the
  evaluation protocol it records in :attr:`Dataset.protocol`, the validation split) and
  :func:`load_from_config`;
* :mod:`jaxvae.data.idx`: Fashion-MNIST's IDX files;
* :mod:`jaxvae.data.tfds`: prepared TFDS data sources;
* :mod:`jaxvae.data.tfds_fashion_mnist`: the TFDS builder that prepares Fashion-MNIST offline
  (imported only when used, since it imports ``tensorflow_datasets``);
* :mod:`jaxvae.data.npz`: user ``.npz`` files;
* :mod:`jaxvae.data.synthetic`: :func:`synthetic_dataset`, a deterministic dataset for tests;
* :mod:`jaxvae.data.ground_truth`: the :class:`GroundTruthData` protocol the disentanglement
  metrics sample from, and :class:`ArrayGroundTruthData` (images in memory with a factors table);
* :mod:`jaxvae.data.dsprites`: the procedural dSprites (:func:`render_dsprites`,
  :class:`ProceduralDSprites`);
* :mod:`jaxvae.data.tfds_ground_truth`: TFDS's ``dsprites`` and ``shapes3d``.

The per-batch corruptions used by the training loop (:func:`dynamic_binarize`,
:func:`add_noise`) live in :mod:`jaxvae.corruptions` and are re-exported here.
"""

from jaxvae.corruptions import add_noise, dynamic_binarize
from jaxvae.data.base import (
    SOURCES_BY_NAME,
    Dataset,
    SourceRequest,
    source_request,
    to_unit_float,
)
from jaxvae.data.binarization import EVAL_BINARIZATION_SEED
from jaxvae.data.dataset import (
    DATASETS,
    GROUND_TRUTH_DATASETS,
    load_dataset,
    load_from_config,
    split_validation,
)
from jaxvae.data.dsprites import ProceduralDSprites
from jaxvae.data.dsprites import render as render_dsprites
from jaxvae.data.ground_truth import (
    ArrayGroundTruthData,
    GroundTruthData,
    distinct_combinations,
    factors_to_index,
    index_to_factors,
    split_indices,
)
from jaxvae.data.idx import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_ENV, parse_idx
from jaxvae.data.synthetic import synthetic_dataset
from jaxvae.data.tfds import prepared_builder
from jaxvae.data.tfds_ground_truth import ground_truth_from_tfds

__all__ = [
    "SOURCES_BY_NAME",
    "SourceRequest",
    "source_request",
    "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR",
    "EVAL_BINARIZATION_SEED",
    "FASHION_MNIST_ENV",
    "GROUND_TRUTH_DATASETS",
    "ArrayGroundTruthData",
    "Dataset",
    "GroundTruthData",
    "ProceduralDSprites",
    "add_noise",
    "dynamic_binarize",
    "distinct_combinations",
    "factors_to_index",
    "ground_truth_from_tfds",
    "index_to_factors",
    "load_dataset",
    "load_from_config",
    "parse_idx",
    "prepared_builder",
    "render_dsprites",
    "split_indices",
    "split_validation",
    "synthetic_dataset",
    "to_unit_float",
]
