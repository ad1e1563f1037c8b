"""dSprites and Shapes3D through their TFDS builders (prepared elsewhere; nothing is downloaded).

Both TFDS datasets hold one ``train`` split: every combination of the factors once, each record
an ``image`` and a ``label_<factor>`` ClassLabel per factor (plus ``value_<factor>`` floats,
unused here). TFDS shuffles the records when it prepares them, so the record order is not the
factors' order; the factors come from the labels.

=========  =====================  ======================================================
dataset    image                  factors (``label_*``, sizes)
=========  =====================  ======================================================
dsprites   uint8 64x64x1, 0 or 1  shape 3, scale 6, orientation 40, x_position 32,
                                  y_position 32 (737,280 records)
shapes3d   uint8 64x64x3, 0..255  floor_hue 10, wall_hue 10, object_hue 10, scale 8,
                                  shape 4, orientation 15 (480,000 records)
=========  =====================  ======================================================

:func:`load_ground_truth_tfds` makes a training :class:`~jaxvae.data.Dataset` with a held-out
test split, by record number: ``perm = np.random.default_rng(split_seed).permutation(N)``, test
``perm[-num_test:]`` (default the last 10%), train the rest, both in permuted order (see
:func:`~jaxvae.data.ground_truth.split_indices`), reading only the records the limits keep.
:func:`ground_truth_from_tfds` reads every record into a
:class:`~jaxvae.data.ArrayGroundTruthData` for the disentanglement metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxvae.data.base import (
    Dataset,
    Source,
    SourceRequest,
    aligned_empty,
    check_choice,
    get_records,
    register,
)
from jaxvae.data.ground_truth import (
    ArrayGroundTruthData,
    check_factors,
    split_index_sets,
)
from jaxvae.data.tfds import data_source, prepared_builder

_READ_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class GroundTruthSpec:
    """What jaxvae expects of a TFDS ground-truth dataset.

    Attributes:
      factor_names: The factors, in mixed-radix order; record feature ``label_<name>``.
      factor_sizes: Number of values of each factor.
      image_shape: ``(H, W, C)``.
      pixel_max: The largest stored pixel value: images in ``[0, 1]`` are ``image / pixel_max``.
      label_factor: The factor given as the Dataset's ``labels``.
      class_names: Names of the label factor's values.
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    image_shape: tuple[int, int, int]
    pixel_max: int
    label_factor: str
    class_names: tuple[str, ...]


GROUND_TRUTH_TFDS = {
    "dsprites": GroundTruthSpec(
        factor_names=("shape", "scale", "orientation", "x_position", "y_position"),
        factor_sizes=(3, 6, 40, 32, 32),
        image_shape=(64, 64, 1),
        pixel_max=1,
        label_factor="shape",
        class_names=("square", "ellipse", "heart"),
    ),
    "shapes3d": GroundTruthSpec(
        factor_names=("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
        factor_sizes=(10, 10, 10, 8, 4, 15),
        image_shape=(64, 64, 3),
        pixel_max=255,
        label_factor="shape",
        class_names=("shape_0", "shape_1", "shape_2", "shape_3"),
    ),
}
SPLIT_SEED = 0


def load_ground_truth_tfds(name: str, request: SourceRequest) -> Dataset:
    """Loads ``dsprites`` or ``shapes3d`` from a prepared TFDS data source, with factors.

    The test split is the last 10% (at least 1) of
    ``np.random.default_rng(SPLIT_SEED).permutation(N)`` over the records, train the rest.

    Args:
      name: ``"dsprites"`` or ``"shapes3d"``.
      request: ``tfds_data_dir`` (default: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``),
        ``limit_train`` (if positive, keep and read only the first training records),
        ``limit_test``, ``validation_size`` (records held out of the end of the training split)
        and ``download`` (let TFDS download and prepare it, see
        :func:`~jaxvae.data.prepared_builder`).

    Returns:
      A :class:`~jaxvae.data.Dataset` of images in ``[0, 1]`` (every split uint8 0..255,
      dsprites' 0/1 as 0/255), labels the ``spec.label_factor``
      factor, and the factors of every example.

    Raises:
      ValueError: If the dataset is not prepared, lacks a feature, or a size is out of range.
    """
    spec = GROUND_TRUTH_TFDS[name]
    source = _train_source(name, request.tfds_data_dir, spec, request.download)
    count = len(source)
    splits = split_index_sets(
        count,
        max(1, count // 10),
        SPLIT_SEED,
        validation_size=request.validation_size,
        limit_train=request.limit_train,
        limit_test=request.limit_test,
        what=f"training records of {name!r}",
    )
    label = spec.factor_names.index(spec.label_factor)
    arrays = {}
    for split, index in splits.items():
        images, factors = read_factor_records(source, index, spec)
        np.multiply(images, 255 // spec.pixel_max, out=images)  # 0..255: every split uint8
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = factors[:, label].copy()
        arrays[f"{split}_factors"] = factors
    return Dataset(
        name=name,
        class_names=spec.class_names,
        factor_names=spec.factor_names,
        factor_sizes=spec.factor_sizes,
        **arrays,
    )


def ground_truth_from_tfds(name: str, tfds_data_dir: str = "") -> ArrayGroundTruthData:
    """Every record of ``dsprites`` or ``shapes3d`` as a ground-truth dataset for the metrics.

    The images stay uint8 in memory (dsprites 3 GB, shapes3d 5.9 GB); observations are scaled to
    ``[0, 1]`` as they are looked up. Reading decodes every record's PNG (minutes).

    Args:
      name: ``"dsprites"`` or ``"shapes3d"``.
      tfds_data_dir: TFDS data directory.

    Returns:
      An :class:`~jaxvae.data.ArrayGroundTruthData`.

    Raises:
      ValueError: As :func:`load_ground_truth_tfds`.
    """
    check_choice("name", name, tuple(GROUND_TRUTH_TFDS))
    spec = GROUND_TRUTH_TFDS[name]
    source = _train_source(name, tfds_data_dir, spec)
    images, factors = read_factor_records(source, np.arange(len(source)), spec)
    return ArrayGroundTruthData(
        images,
        factors,
        spec.factor_sizes,
        spec.factor_names,
        pixel_max=spec.pixel_max,
    )


def read_factor_records(
    source: Sequence[Mapping[str, Any]], index: np.ndarray, spec: GroundTruthSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Reads the records ``index`` of a data source: their images and factors.

    Args:
      source: A random-access sequence of records with ``image`` and ``label_<factor>``.
      index: Record numbers to read, in the order wanted.
      spec: The dataset's :class:`GroundTruthSpec`.

    Returns:
      ``(images, factors)``: uint8 ``[N, H, W, C]`` and int32 ``[N, F]``.

    Raises:
      ValueError: If an image has the wrong dtype, shape or range, or a factor is out of range.
    """
    images = aligned_empty((len(index), *spec.image_shape), np.uint8)  # every row is read below
    factors = np.zeros((len(index), len(spec.factor_names)), np.int64)
    for start in range(0, len(index), _READ_CHUNK):
        keys = [int(k) for k in index[start : start + _READ_CHUNK]]
        records = get_records(source, keys)
        chunk = np.stack([np.asarray(r["image"]) for r in records])
        if chunk.dtype != np.uint8 or chunk.shape[1:] != spec.image_shape:
            raise ValueError(
                f"Records yield images of dtype {chunk.dtype} and shape {chunk.shape[1:]}; "
                f"expected uint8 {spec.image_shape}."
            )
        images[start : start + len(keys)] = chunk
        for j, factor in enumerate(spec.factor_names):
            factors[start : start + len(keys), j] = [int(r[f"label_{factor}"]) for r in records]
    if images.size and int(images.max()) > spec.pixel_max:
        raise ValueError(
            f"Images hold the pixel value {int(images.max())}; expected values in "
            f"[0, {spec.pixel_max}]."
        )
    return images, check_factors(factors, spec.factor_sizes, "record factors").astype(np.int32)


def _train_source(
    name: str, tfds_data_dir: str, spec: GroundTruthSpec, download: bool = False
) -> Any:
    builder = prepared_builder(name, tfds_data_dir, download=download)
    features = builder.info.features
    expected = {
        f"label_{f}": size for f, size in zip(spec.factor_names, spec.factor_sizes, strict=True)
    }
    found = {
        key: getattr(features[key], "num_classes", None) for key in expected if key in features
    }
    if "train" not in builder.info.splits or "image" not in features or found != expected:
        raise ValueError(
            f"TFDS dataset {name!r} in {os.fspath(builder.data_dir)!r} has splits "
            f"{sorted(builder.info.splits)} and label sizes {found}; expected a 'train' split, an "
            f"'image' feature and the labels {expected}."
        )
    return data_source(builder, name, "train")


for _name in GROUND_TRUTH_TFDS:
    register(
        _name,
        Source(
            functools.partial(load_ground_truth_tfds, _name),
            sources=("auto", "tfds"),
            split="records of the TFDS 'train' split",
        ),
    )
