"""The :class:`Dataset` type and what every loader shares.

This module imports nothing else from :mod:`jaxvae.data`, so every loader (IDX, TFDS, npz,
synthetic) builds its Dataset from here and :mod:`jaxvae.data.dataset` dispatches to the loaders
without an import circle.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """An image dataset split into train and test, ready for training.

    Attributes:
      name: Dataset name, e.g. ``"fashion_mnist"``.
      train_images: float32 array ``[N, H, W, C]`` with values in ``[0, 1]``.
      train_labels: int32 array ``[N]``.
      test_images: float32 array ``[M, H, W, C]`` with values in ``[0, 1]``.
      test_labels: int32 array ``[M]``.
      class_names: Optional names of the classes; when given, ``num_classes`` is their count.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != np.float32 or images.ndim != 4:
                raise ValueError(
                    f"Dataset {self.name!r}: {split}_images has dtype {images.dtype} and shape "
                    f"{images.shape}; expected float32 [N, H, W, C]."
                )
            if labels.dtype != np.int32 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"Dataset {self.name!r}: {split}_labels has dtype {labels.dtype} and shape "
                    f"{labels.shape}; expected int32 [{images.shape[0]}]."
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"Dataset {self.name!r}: train images are {self.train_images.shape[1:]} but test "
                f"images are {self.test_images.shape[1:]}; expected the same [H, W, C]."
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The ``(H, W, C)`` shape of one image."""
        height, width, channels = self.train_images.shape[1:]
        return int(height), int(width), int(channels)

    @property
    def num_classes(self) -> int:
        """Number of classes: ``len(class_names)`` if set, else one more than the largest label."""
        if self.class_names:
            return len(self.class_names)
        largest = max(
            (int(labels.max()) for labels in (self.train_labels, self.test_labels) if labels.size),
            default=-1,
        )
        return largest + 1


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """Scales uint8 images (0..255) to float32 in ``[0, 1]``.

    Args:
      images: uint8 array of any shape.

    Returns:
      A float32 array of the same shape.

    Raises:
      ValueError: If ``images`` is not uint8.
    """
    if images.dtype != np.uint8:
        raise ValueError(f"Images have dtype {images.dtype}; expected uint8 (0..255).")
    return images.astype(np.float32) / np.float32(255.0)


def default_tfds_data_dir() -> str:
    """TFDS's default data directory: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR", "") or os.path.expanduser("~/tensorflow_datasets")


def check_choice(arg: str, value: str, choices: Sequence[str]) -> None:
    """Raises ``ValueError`` naming ``arg`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{arg}={value!r}; expected one of {tuple(choices)}.")


def take_first(array: np.ndarray, limit: int) -> np.ndarray:
    """The first ``limit`` entries of ``array``, or all of it when ``limit <= 0``."""
    return array[:limit] if limit > 0 else array


def dataset_from_uint8(
    name: str,
    arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str] = (),
) -> Dataset:
    """Builds a Dataset from ``{"train": (uint8 images, labels), "test": (...)}``."""
    (train_images, train_labels), (test_images, test_labels) = arrays["train"], arrays["test"]
    return Dataset(
        name=name,
        train_images=to_unit_float(train_images),
        train_labels=train_labels.astype(np.int32),
        test_images=to_unit_float(test_images),
        test_labels=test_labels.astype(np.int32),
        class_names=tuple(class_names),
    )
