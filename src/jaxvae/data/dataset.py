"""Loading a dataset by name: the dispatch to each source and the evaluation protocol.

:func:`load_dataset` asks the source registered under the dataset's name
(:func:`~jaxvae.data.base.register`: :mod:`~jaxvae.data.idx`, :mod:`~jaxvae.data.tfds`,
:mod:`~jaxvae.data.npz`, ...) for the data, then applies what is the same for every source, in
this order:

1. the validation split: the last ``validation_size`` examples of the full training split
   (:func:`split_validation`; the VampPrior and Exemplar-VAE protocol: Fashion-MNIST's or MNIST's
   60k training images become 50k train and the last 10k validation);
2. ``limit_train``: the first ``limit_train`` of the remaining training examples (and
   ``limit_test``: the first ``limit_test`` test examples), so a limit never changes the
   validation set and the two never overlap;
3. binarization (below);

and records how the splits were made in :attr:`Dataset.protocol`. :func:`load_from_config` reads
the arguments from a config's ``data`` section.

Binarization protocols (``binarize=``), each ``x_bin = u < x`` for uniforms
``u = rng.random(images.shape, dtype=np.float32)`` drawn per split
(:func:`~jaxvae.corruptions.binarize_images`, :func:`~jaxvae.data.binarization.binarize_once`):

* ``"none"``: every split keeps its continuous pixels in ``[0, 1]``.
* ``"static"``: every split is binarized once, with the streams
  ``np.random.default_rng(seed).spawn(3)`` (train, test, validation), ``seed`` being the run's
  seed.
* ``"dynamic"``: the training images stay continuous (the training loop resamples each batch
  with :func:`~jaxvae.corruptions.dynamic_binarize`), and the test and validation images are
  binarized once with the streams ``np.random.default_rng(EVAL_BINARIZATION_SEED).spawn(2)``
  (test, validation), independent of the run's seed, so that every run of a study is evaluated
  on the same binary images. That is the protocol of the papers that report the test negative
  ELBO and NLL of dynamically binarized (Fashion-)MNIST; the continuous test pixels would give
  figures not comparable with theirs.

The uniforms are drawn in file order, so the first ``n`` examples of a split are binarized the
same whatever the limits; the validation images' depend only on ``validation_size``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# the sources register themselves (jaxvae.data.base.register) when their modules are imported
from jaxvae.data import dsprites, folder, idx, npz, tfds_celeb_a, tfds_ground_truth  # noqa: F401
from jaxvae.data.base import (
    SOURCES_BY_NAME,
    Dataset,
    SourceRequest,
    check_choice,
    source_request,
    spec_field,
    to_unit_float,
)
from jaxvae.data.binarization import binarize_once, protocol_of_splits
from jaxvae.specs import BINARIZE

DATASETS = tuple(sorted(SOURCES_BY_NAME))
# Datasets with ground-truth factors; their loaders make the train/validation/test splits.
GROUND_TRUTH_DATASETS = tuple(name for name, source in SOURCES_BY_NAME.items() if source.split)


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
    validation_size: int = 0,
    lazy_train: bool = False,
    test_only: bool = False,
    options: SourceRequest | None = None,
) -> Dataset:
    """Loads a dataset as images in ``[0, 1]``: float32, or uint8 training images where that is
    exact (see :class:`~jaxvae.data.Dataset`).

    Args:
      name: One of :data:`DATASETS`.
      data_dir: For ``fashion_mnist``, the directory holding the IDX files (default: the
        ``JAXVAE_FASHION_MNIST_DIR`` environment variable, else
        :data:`~jaxvae.data.DEFAULT_FASHION_MNIST_DIR`). For ``npz``, the path of the ``.npz``
        file. For ``folder``, the image folder (:mod:`jaxvae.data.folder`). Ignored by the TFDS
        datasets.
      tfds_data_dir: TFDS data directory for ``mnist``, ``binarized_mnist``, ``cifar10``,
        ``dsprites``, ``shapes3d`` and for ``fashion_mnist`` with ``source="tfds"`` (default: the
        ``TFDS_DATA_DIR`` environment variable, else ``~/tensorflow_datasets``).
      source: For ``fashion_mnist``: ``"idx"`` reads the IDX files with numpy, ``"tfds"`` goes
        through a TFDS data source prepared from the same files, ``"auto"`` means ``"idx"``.
        Other datasets accept ``"auto"`` and their only source (``"tfds"`` for TFDS datasets).
      binarize: ``"none"``; ``"static"`` samples every pixel once from a Bernoulli with the pixel
        intensity as probability (seeded by ``seed``), giving exact 0/1 values in every split;
        ``"dynamic"`` keeps the training images continuous (the training loop resamples each
        batch with :func:`~jaxvae.corruptions.dynamic_binarize`) and binarizes the test and
        validation images once with :data:`EVAL_BINARIZATION_SEED`, whatever ``seed`` is
        (:func:`~jaxvae.data.binarization.binarize_once`).
      seed: The run's seed: seed of the static binarization; unused otherwise.
      limit_train: If positive, keep only the first ``limit_train`` training examples (those
        left after the validation split).
      limit_test: If positive, keep only the first ``limit_test`` test examples.
      validation_size: Hold out the last ``validation_size`` examples of the full training
        split (before ``limit_train``) as the validation set; 0 for none. Must be smaller than
        the training split.
      lazy_train: Leave the training split in its TFDS records (``RecordColumn``) to stream it
        (TFDS data, no static binarization); the rest of the preparation is the same.
      test_only: Read only the test split (what evaluating a trained run needs): the training
        and validation splits are empty, and the test split is the one a full load gives (its
        binarization does not depend on the other splits).
      options: The options of the registered sources (``folder``, ``celeb_a``:
        ``image_size``, ``channels``, ``cache_dir``, ``test_fraction``) and ``download`` (let
        TFDS download and prepare a TFDS dataset that is not prepared; off, such a dataset
        fails in one line saying how to prepare it), as a
        :class:`~jaxvae.data.base.SourceRequest` whose other fields are ignored.

    The datasets with ground-truth factors (:data:`GROUND_TRUTH_DATASETS`) have no test split
    of their own: their test split is a fixed-seed 10% of the combinations (see
    :func:`~jaxvae.data.dsprites.load_dsprites_procedural` and
    :func:`~jaxvae.data.tfds_ground_truth.load_ground_truth_tfds`), the validation split the
    last ``validation_size`` of the rest, and only the examples the limits keep are rendered or
    read. Their Dataset carries ``*_factors``, ``factor_names`` and ``factor_sizes``, and the
    shape factor as labels.

    Returns:
      The loaded :class:`Dataset`. Its ``protocol`` records how the splits were made, for a
      run's ``summary.json``:

      * ``"binarize"``: the ``binarize`` argument;
      * ``"binarization_seed"``: the seed of the one-off binarization (``seed`` for
        ``"static"``, :data:`EVAL_BINARIZATION_SEED` for ``"dynamic"``), ``None`` for ``"none"``;
      * ``"train"``, ``"validation"``, ``"test"``: how each split was made, in words and numpy
        (``"validation"`` is ``"none"`` without a validation set);
      * ``"validation_size"``: the ``validation_size`` argument;
      * ``"num_train"``, ``"num_validation"``, ``"num_test"``: the examples in each split;
      * ``"split"`` (ground-truth datasets only): how the test split was held out.

      With ``test_only``, only ``"binarize"``, ``"binarization_seed"``, ``"test"`` and
      ``"num_test"``.

    Raises:
      ValueError: For an unknown name, source or binarization, a negative limit or validation
        size, a validation size not smaller than the training split, or when the data is
        missing, not prepared or malformed.
    """
    check_choice("name", name, DATASETS)
    check_choice("binarize", binarize, BINARIZE)
    registered = SOURCES_BY_NAME[name]
    if source not in registered.sources:
        raise ValueError(
            f"source={source!r} for dataset {name!r}; expected one of {registered.sources}."
        )
    for arg, value, zero in (
        ("limit_train", limit_train, "0 keeps everything"),
        ("limit_test", limit_test, "0 keeps everything"),
        ("validation_size", validation_size, "0 for no validation set"),
    ):
        if int(value) != value or value < 0:
            raise ValueError(f"{arg}={value!r}; expected an integer >= 0 ({zero}).")
    limit_train, limit_test = int(limit_train), int(limit_test)
    validation_size = int(validation_size)
    if lazy_train and (registered.train_records is None or binarize == "static"):
        raise ValueError(
            f"a streamed training split needs TFDS-backed data without static binarization; got "
            f"{name!r} with source={source!r} and binarize={binarize!r}"
        )
    own_splits = bool(registered.split)
    request = dataclasses.replace(
        options or SourceRequest(),
        data_dir=data_dir,
        tfds_data_dir=tfds_data_dir,
        source=source,
        # with a validation split the whole training split is read: it is taken off its end
        limit_train=0 if validation_size and not own_splits else limit_train,
        limit_test=limit_test,
        validation_size=validation_size,
        lazy_train=lazy_train,
        with_train=not test_only,
    )
    dataset = registered.load(request)
    if validation_size and not test_only and not own_splits:
        dataset = split_validation(dataset, validation_size, limit_train)
    dataset = binarize_once(dataset, binarize, seed)
    own = {"source": dataset.protocol["source"]} if "source" in dataset.protocol else {}
    protocol = {**own, **protocol_of_splits(dataset, binarize, seed, validation_size)}
    if own_splits:
        protocol["split"] = (
            f"test: the last 10% of np.random.default_rng(0).permutation(N) over the "
            f"{registered.split}; train the rest, in permuted order"
        )
    if test_only:
        keep = (*own, "binarize", "binarization_seed", "test", "num_test")
        protocol = {k: protocol[k] for k in keep}
    return dataclasses.replace(dataset, protocol=protocol)


def load_from_config(
    cfg: Any, seed: int = 0, *, lazy_train: bool = False, test_only: bool = False
) -> Dataset:
    """Loads the dataset described by the ``data`` section of a config.

    Args:
      cfg: A :class:`jaxvae.specs.DataSpec` (or any object with its attributes; see
        :func:`load_dataset`).
      seed: The experiment's global seed, used for static binarization.
      test_only: Read only the test split (see :func:`load_dataset`).

    Returns:
      The loaded :class:`Dataset`.

    Raises:
      ValueError: If ``name`` is missing, or as :func:`load_dataset`.
    """
    name = spec_field(cfg, "name")
    if not name:
        raise ValueError(
            f"Data config has no dataset name (got {name!r}); expected one of {DATASETS}."
        )
    return load_dataset(
        str(name),
        data_dir=str(spec_field(cfg, "data_dir") or ""),
        tfds_data_dir=str(spec_field(cfg, "tfds_data_dir") or ""),
        source=str(spec_field(cfg, "source") or "auto"),
        binarize=str(spec_field(cfg, "binarize") or "none"),
        seed=int(seed),
        limit_train=int(spec_field(cfg, "limit_train") or 0),
        limit_test=int(spec_field(cfg, "limit_test") or 0),
        validation_size=int(spec_field(cfg, "validation_size") or 0),
        lazy_train=lazy_train,
        test_only=test_only,
        options=source_request(cfg),
    )


def split_validation(dataset: Dataset, size: int, limit_train: int = 0) -> Dataset:
    """Moves the last ``size`` training examples into the validation set.

    Args:
      dataset: A dataset without a validation set.
      size: Number of examples to hold out, ``1 <= size <`` the number of training examples.
      limit_train: If positive, keep only the first ``limit_train`` of the other examples.

    Returns:
      A new :class:`Dataset` whose training split is the first ``N - size`` training examples
      (at most ``limit_train``) and whose validation split is the last ``size``, in order.

    Raises:
      ValueError: If ``size`` is out of range or ``dataset`` already has a validation set.
    """
    count = int(dataset.train_images.shape[0])
    if dataset.validation_images.shape[0]:
        raise ValueError(
            f"Dataset {dataset.name!r} already has {dataset.validation_images.shape[0]} "
            "validation examples; expected none to split off the training set."
        )
    if int(size) != size or not 1 <= size < count:
        raise ValueError(
            f"validation_size={size!r}; expected an integer in [1, {count - 1}]: fewer than the "
            f"{count} training examples of {dataset.name!r}, whose last validation_size are held "
            "out."
        )
    keep = count - int(size)
    train = slice(0, min(keep, limit_train) if limit_train > 0 else keep)
    factors = dataset.train_factors
    held_out = np.asarray(dataset.train_images[keep:])  # read, if streamed
    return dataclasses.replace(
        dataset,
        train_images=dataset.train_images[train],
        train_labels=dataset.train_labels[train],
        validation_images=to_unit_float(held_out),
        validation_labels=np.asarray(dataset.train_labels[keep:]),
        **({} if factors is None else {"train_factors": factors[train]}),
        **({} if factors is None else {"validation_factors": factors[keep:]}),
    )
