"""A TFDS builder that prepares Fashion-MNIST from its original IDX files, without TensorFlow.

TFDS's stock ``fashion_mnist`` builder downloads the files itself and needs TensorFlow to encode
them. :class:`JaxvaeFashionMnist` instead reads the local IDX files (e.g. from Debian's
``dataset-fashion-mnist`` package) with numpy and writes the array_record format, which TFDS
reads back as a random-access data source. Examples keep the order of the IDX files, so the
data source matches :func:`jaxvae.data.idx.load_fashion_mnist_idx` exactly.

This module imports only :mod:`jaxvae.data.idx` and :mod:`jaxvae.data.base` from jaxvae, and
only :func:`jaxvae.data.tfds.load_fashion_mnist_tfds` imports it (lazily, since it imports
``tensorflow_datasets``), so there is no import circle.

Usage::

    builder = prepare(idx_dir="/usr/share/datasets/fashion-mnist", tfds_data_dir="/tmp/tfds")
    train = builder.as_data_source(split="train")

Importing this module registers the builder as ``jaxvae_fashion_mnist``, so a prepared copy can
also be read with ``tfds.data_source("jaxvae_fashion_mnist", data_dir=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxvae.data import idx
from jaxvae.data.base import default_tfds_data_dir

BUILDER_NAME = "jaxvae_fashion_mnist"
FILE_FORMAT = "array_record"


class JaxvaeFashionMnist(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (28x28 grayscale, 10 classes) prepared from local IDX files.

    Features match TFDS's ``fashion_mnist``: ``image`` (uint8 ``[28, 28, 1]``) and ``label``
    (``ClassLabel`` with the 10 Fashion-MNIST names). Images are stored as raw bytes rather than
    PNG, so neither preparing nor reading needs an image codec.
    """

    name = BUILDER_NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Fashion-MNIST from the original IDX files, in file order."}

    def __init__(self, *, idx_dir: str = "", **kwargs: Any) -> None:
        """Creates the builder.

        Args:
          idx_dir: Directory of the IDX files, needed only to prepare (see
            :func:`jaxvae.data.idx.resolve_fashion_mnist_dir` for the fallbacks when empty).
          **kwargs: Passed to ``tfds.core.GeneratorBasedBuilder`` (``data_dir``,
            ``file_format``, ...).
        """
        self._idx_dir = idx_dir
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Fashion-MNIST, read from the original IDX files in file order.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(*idx.FASHION_MNIST_IMAGE_HW, 1),
                        dtype=np.uint8,
                        encoding=tfds.features.Encoding.BYTES,
                    ),
                    "label": tfds.features.ClassLabel(names=list(idx.FASHION_MNIST_CLASSES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict]]]:
        del dl_manager  # Nothing is downloaded.
        files = idx.find_fashion_mnist_files(self._idx_dir)
        return {split: self._generate_examples(*paths, split) for split, paths in files.items()}

    def _generate_examples(
        self, images_path: str, labels_path: str, split: str
    ) -> Iterator[tuple[int, dict]]:
        images, labels = idx.read_fashion_mnist_split(images_path, labels_path, split)
        for index in range(len(images)):
            yield index, {"image": images[index], "label": int(labels[index])}


def prepare(idx_dir: str = "", tfds_data_dir: str = "") -> JaxvaeFashionMnist:
    """Returns the Fashion-MNIST builder, preparing it from the IDX files if needed.

    Preparing never downloads anything; an already prepared copy in ``tfds_data_dir`` is reused
    without reading the IDX files.

    Args:
      idx_dir: Directory of the IDX files (see :func:`jaxvae.data.idx.resolve_fashion_mnist_dir`).
      tfds_data_dir: TFDS data directory (default: :func:`jaxvae.data.base.default_tfds_data_dir`).

    Returns:
      A prepared :class:`JaxvaeFashionMnist`.

    Raises:
      ValueError: If the data is not prepared and the IDX files are missing or malformed or
        ``tfds_data_dir`` is not writable, or the prepared copy does not hold Fashion-MNIST's
        60000/10000 examples.
    """
    data_dir = tfds_data_dir or default_tfds_data_dir()
    builder = JaxvaeFashionMnist(idx_dir=idx_dir, data_dir=data_dir, file_format=FILE_FORMAT)
    if not builder.is_prepared():
        idx.find_fashion_mnist_files(idx_dir)  # Fail with a clear message before TFDS starts.
        try:
            builder.download_and_prepare(
                file_format=FILE_FORMAT,
                download_config=tfds.download.DownloadConfig(try_download_gcs=False),
            )
        except OSError as e:
            raise ValueError(
                f"Could not prepare {BUILDER_NAME} in {data_dir!r} ({e}); expected a writable "
                "TFDS data directory (set --config.data.tfds_data_dir or TFDS_DATA_DIR)."
            ) from e
    sizes = {split: builder.info.splits[split].num_examples for split in builder.info.splits}
    if sizes != idx.FASHION_MNIST_SIZES:
        raise ValueError(
            f"Prepared {BUILDER_NAME} in {os.fspath(builder.data_path)!r} has splits {sizes}; "
            f"expected {idx.FASHION_MNIST_SIZES}. Delete that directory to prepare it again."
        )
    return builder
