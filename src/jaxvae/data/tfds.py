"""Datasets read through TFDS array_record data sources, prepared already or (``download``) here.

``mnist``, ``binarized_mnist`` and ``cifar10`` are TFDS's stock builders, prepared elsewhere and
copied into ``tfds_data_dir``, or downloaded and prepared there by TFDS with ``download=True``
(``data.download=true``); they register themselves here (:func:`tfds_source`). Fashion-MNIST
with ``source="tfds"`` (:mod:`jaxvae.data.idx`) is prepared offline from its IDX files by
:mod:`jaxvae.data.tfds_fashion_mnist`. ``tensorflow_datasets`` is imported only when one of these
is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxvae.data.base import (
    Dataset,
    Source,
    SourceRequest,
    default_tfds_data_dir,
    get_records,
    register,
    to_unit_float,
)

TFDS_DATASETS = ("mnist", "binarized_mnist", "cifar10")

_TFDS_READ_CHUNK = 8192


class RecordColumn:
    """One field of a range of records left in a TFDS data source: a training split that is
    streamed rather than read. It has the array's ``shape``, ``dtype`` and ``ndim`` and slices
    into another range, so the one preparation step (validation split, limits, protocol) treats
    it like an array; ``np.asarray`` reads it (the validation examples taken off its end).

    Args:
      records: the random-access data source.
      field: ``"image"`` (uint8, read as float32 in [0, 1]) or ``"label"`` (int32; zeros when
        the records have none).
      start, stop: the range of records.
      item_shape: the shape of one value (``(H, W, C)`` for images, ``()`` for labels).
    """

    def __init__(self, records, field: str, start: int, stop: int, item_shape: tuple):
        self.records, self.field, self.start, self.stop = records, field, start, stop
        self.item_shape = tuple(item_shape)
        self.dtype = np.dtype(np.float32 if field == "image" else np.int32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.stop - self.start, *self.item_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.item_shape)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a streamed training split is read by its feed, not indexed")
        start, stop, _ = key.indices(len(self))
        return RecordColumn(
            self.records,
            self.field,
            self.start + start,
            self.start + max(start, stop),
            self.item_shape,
        )

    def __array__(self, dtype=None, copy=None):
        if self.field == "label" and hasattr(self.records, "labels"):  # no record decoded
            return np.asarray(self.records.labels[self.start : self.stop], np.int32)
        keys = list(range(self.start, self.stop))
        records = self.records.__getitems__(keys) if keys else []
        if self.field == "image":
            if not records:
                return np.zeros((0, *self.item_shape), np.float32)
            return to_unit_float(np.stack([r["image"] for r in records]))
        return np.asarray([r.get("label", 0) for r in records], np.int32)


def tfds_source(name: str, builder: Callable[[SourceRequest], Any]) -> Source:
    """The source of a TFDS dataset whose prepared builder is ``builder(request)``: its ``train``
    and ``test`` splits (:func:`read_tfds_builder`), the training split streamable."""

    def train_records(request: SourceRequest) -> tuple[int, tuple[int, int, int]]:
        info = builder(request).info
        shape = tuple(int(x) for x in info.features["image"].shape)
        return int(info.splits["train"].num_examples), shape

    load = lambda request: read_tfds_builder(builder(request), name, request)
    return Source(load, train_records, sources=("auto", "tfds"))


def prepared_builder(name: str, tfds_data_dir: str = "", *, download: bool = False) -> Any:
    """TFDS's builder ``name``, prepared in ``tfds_data_dir``.

    Args:
      name: A TFDS dataset name.
      tfds_data_dir: TFDS data directory (default: :func:`default_tfds_data_dir`).
      download: Whether TFDS may download and prepare an unprepared dataset
        (``download_and_prepare`` in the array_record format, no GCS mirror); off by default,
        when an unprepared dataset fails at once, saying how to prepare it.

    Returns:
      The prepared ``tfds.core.DatasetBuilder``.

    Raises:
      ValueError: If the dataset is not prepared there and ``download`` is off, or the download
        or preparation fails (offline, say): one line naming the dataset and the cause.
    """
    import tensorflow_datasets as tfds

    data_dir = tfds_data_dir or default_tfds_data_dir()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"TFDS has no dataset {name!r} ({_first_line(e)}).") from None
    if builder.is_prepared():
        return builder
    if not download:
        raise ValueError(
            f"TFDS dataset {name!r} is not prepared in {data_dir!r} (looked for "
            f"{os.fspath(builder.data_path)!r}); jaxvae downloads only when asked: pass "
            "--config.data.download=true to let TFDS download and prepare it there, or on a "
            'machine with internet run: python -c "import tensorflow_datasets as tfds; '
            f"tfds.builder('{name}').download_and_prepare(file_format='array_record')\", copy "
            "its tensorflow_datasets directory here and pass --config.data.tfds_data_dir=DIR "
            "(or set TFDS_DATA_DIR)."
        )
    if not sys.stderr.isatty():
        tfds.disable_progress_bar()  # progress bars only for a person watching
    try:
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
    except Exception as e:  # network, disk, checksum: TFDS raises many kinds; say it in one line
        raise ValueError(
            f"Could not download and prepare TFDS dataset {name!r} into {data_dir!r} "
            f"({type(e).__name__}: {_first_line(e)}); expected network access to its sources "
            "and a writable data directory (or prepare it elsewhere and copy it here)."
        ) from None
    return builder


def _first_line(error: BaseException, limit: int = 300) -> str:
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_tfds_builder(builder: Any, name: str, request: SourceRequest) -> Dataset:
    """Reads the ``train`` and ``test`` splits of a prepared TFDS builder into a Dataset.

    Args:
      builder: A prepared ``tfds.core.DatasetBuilder`` whose features hold a uint8 ``image``
        ``[H, W, C]`` and optionally an integer ``label``.
      name: Name of the returned dataset.
      request: The limits, ``lazy_train`` and ``with_train`` (see :func:`train_split`).

    Returns:
      The :class:`Dataset`; without a ``label`` feature, labels are zeros.

    Raises:
      ValueError: If the data is not in a random-access format or lacks a split or feature.
    """
    splits = set(builder.info.splits)
    features = builder.info.features
    if not {"train", "test"} <= splits or "image" not in features:
        raise ValueError(
            f"TFDS dataset {name!r} in {os.fspath(builder.data_dir)!r} has splits "
            f"{sorted(splits)} and features {sorted(features.keys())}; expected 'train' and 'test' "
            "splits with an 'image' feature."
        )
    train, test = data_source(builder, name, ["train", "test"])
    has_labels = "label" in features
    shape = tuple(int(x) for x in features["image"].shape)
    test_images, test_labels = read_data_source(test, request.limit_test, has_labels)
    return Dataset(
        name,
        *train_split(train, request, shape, has_labels),
        to_unit_float(test_images),
        test_labels,
        class_names=tuple(getattr(features["label"], "names", ())) if has_labels else (),
    )


def train_split(
    records: Sequence[Mapping[str, Any]], request: SourceRequest, shape: tuple, has_labels=True
) -> tuple[Any, Any]:
    """The training split that ``request`` asks of the records: left in them
    (:class:`RecordColumn`, ``lazy_train``), read (uint8, :func:`read_data_source`), or empty
    (not ``with_train``); its first ``limit_train`` records when that is positive."""
    if request.lazy_train:
        n = len(records) if request.limit_train <= 0 else min(request.limit_train, len(records))
        return RecordColumn(records, "image", 0, n, shape), RecordColumn(records, "label", 0, n, ())
    if request.with_train:
        return read_data_source(records, request.limit_train, has_labels)
    return np.zeros((0, *shape), np.uint8), np.zeros(0, np.int32)


def data_source(builder: Any, name: str, split: Any) -> Any:
    """``builder.as_data_source(split)``, or a ValueError if those splits cannot be read at
    random (not stored as array_record, or missing)."""
    try:
        return builder.as_data_source(split=split)
    except (NotImplementedError, KeyError, ValueError) as e:
        raise ValueError(
            f"TFDS dataset {name!r} in {os.fspath(builder.data_dir)!r} (stored as "
            f"{builder.info.file_format}) has no array_record split {split} to read at random "
            f"({type(e).__name__}: {e}); expected array_record. Prepare it with "
            "download_and_prepare(file_format='array_record') or convert it with "
            "`tfds convert_format`."
        ) from e


def read_data_source(
    source: Sequence[Mapping[str, Any]], limit: int = 0, has_labels: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Reads the first records of a random-access data source in batches.

    Args:
      source: A TFDS data source (or any sequence) of dicts with ``image`` and ``label``.
      limit: If positive, read only the first ``limit`` records.
      has_labels: Whether records have a ``label``; if not, labels are zeros.

    Returns:
      ``(images, labels)``: uint8 ``[N, H, W, C]`` and int32 ``[N]``.

    Raises:
      ValueError: If the images are not uint8 or the source is empty.
    """
    count = len(source) if limit <= 0 else min(limit, len(source))
    if count == 0:
        raise ValueError(f"Data source {source!r} is empty; expected at least one record.")
    images, labels = [], []
    for start in range(0, count, _TFDS_READ_CHUNK):
        records = get_records(source, list(range(start, min(start + _TFDS_READ_CHUNK, count))))
        images.append(np.stack([r["image"] for r in records]))
        if has_labels:
            labels.append(np.fromiter((r["label"] for r in records), np.int64, len(records)))
    image_array = np.concatenate(images)
    if image_array.dtype != np.uint8 or image_array.ndim != 4:
        raise ValueError(
            f"Data source {source!r} yields images of dtype {image_array.dtype} and shape "
            f"{image_array.shape[1:]}; expected uint8 [H, W, C]."
        )
    label_array = np.concatenate(labels) if has_labels else np.zeros(count, np.int64)
    return image_array, label_array.astype(np.int32)


for _name in TFDS_DATASETS:
    register(
        _name,
        tfds_source(
            _name,
            lambda r, name=_name: prepared_builder(name, r.tfds_data_dir, download=r.download),
        ),
    )
