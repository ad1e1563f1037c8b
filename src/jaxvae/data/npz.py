"""User datasets from ``.npz`` files, checked array by array.

Every check names the file, the array and the bad value in one line, so the CLI can print it as
its one-line error.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

from jaxvae.data.base import Dataset, take_first, to_unit_float

_NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def load_npz(
    path: str, limit_train: int = 0, limit_test: int = 0, *, with_train: bool = True
) -> Dataset:
    """Loads a user dataset from an ``.npz`` file.

    The file holds ``train_images`` and ``test_images`` (uint8 0..255, or float in ``[0, 1]``;
    shape ``[N, H, W]`` or ``[N, H, W, C]`` with ``C`` 1 or 3, channels last) and optionally
    ``train_labels`` and ``test_labels`` (non-negative integers; zeros when absent).

    Args:
      path: Path of the ``.npz`` file.
      limit_train: If positive, keep only the first ``limit_train`` training examples.
      limit_test: If positive, keep only the first ``limit_test`` test examples.
      with_train: Whether to read the training arrays (else the training split is empty).

    Returns:
      The :class:`Dataset`, named ``"npz"``.

    Raises:
      ValueError: If the file is missing or unreadable, or an array has the wrong key, dtype,
        shape or range.
    """
    if not path:
        raise ValueError(
            "The npz dataset needs the path of a .npz file; pass it as data_dir "
            "(--config.data.data_dir=/path/to/file.npz)."
        )
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ValueError(f"npz file {path!r} {what}; expected a .npz file made with np.savez.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(
                f"it holds one {type(loaded).__name__} (a .npy file?), not named arrays"
            )
        with loaded as npz:
            # each array is read when indexed: the training arrays only when asked for
            keys = [k for k in npz.files if with_train or not k.startswith("train_")]
            contents = {key: npz[key] for key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"Could not read {path!r} as an .npz file ({reason}); expected a file made with "
            "np.savez or np.savez_compressed."
        ) from e
    return dataset_from_arrays(
        "npz", contents, path, limit_train, limit_test, with_train=with_train
    )


def dataset_from_arrays(
    name: str,
    arrays: Mapping[str, np.ndarray],
    origin: str = "<arrays>",
    limit_train: int = 0,
    limit_test: int = 0,
    *,
    with_train: bool = True,
) -> Dataset:
    """Validates user arrays (as in an ``.npz`` file) and builds a Dataset.

    Args:
      name: Name of the dataset.
      arrays: ``train_images``, ``test_images`` and optionally ``train_labels``,
        ``test_labels``, as described in :func:`load_npz`.
      origin: Where the arrays came from, for error messages.
      limit_train: If positive, keep only the first ``limit_train`` training examples.
      limit_test: If positive, keep only the first ``limit_test`` test examples.
      with_train: Whether to take the training split (else it is empty, and the training arrays
        need not be given).

    Returns:
      The :class:`Dataset`.

    Raises:
      ValueError: On unknown or missing keys, or bad dtype, shape or range.
    """
    unknown = sorted(set(arrays) - set(_NPZ_KEYS))
    required = ("train_images", "test_images") if with_train else ("test_images",)
    missing = [k for k in required if k not in arrays]
    if unknown or missing:
        raise ValueError(
            f"{origin!r} has keys {sorted(arrays)}; expected train_images and test_images, "
            f"optionally train_labels and test_labels (missing: {missing}, unknown: {unknown})."
        )
    splits = {}
    for split, limit in (("train", limit_train), ("test", limit_test)):
        if split == "train" and not with_train:
            continue
        images = _validate_user_images(
            np.asarray(arrays[f"{split}_images"]), f"{split}_images", origin
        )
        if split == "test":
            images = to_unit_float(images)  # uint8 training images stay uint8
        labels_key = f"{split}_labels"
        if labels_key in arrays:
            labels = _validate_user_labels(
                np.asarray(arrays[labels_key]), labels_key, origin, len(images)
            )
        else:
            labels = np.zeros(len(images), np.int32)
        splits[split] = take_first(images, limit), take_first(labels, limit)
    if not with_train:
        empty = np.zeros((0, *splits["test"][0].shape[1:]), np.float32)
        splits["train"] = empty, np.zeros(0, np.int32)
    train_shape, test_shape = splits["train"][0].shape[1:], splits["test"][0].shape[1:]
    if train_shape != test_shape:
        raise ValueError(
            f"{origin!r}: train images are {train_shape} but test images are {test_shape}; "
            "expected the same [H, W, C]."
        )
    return Dataset(name, *splits["train"], *splits["test"])


def _validate_user_images(images: np.ndarray, key: str, origin: str) -> np.ndarray:
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] == 0 or 0 in images.shape[1:]:
        raise ValueError(
            f"{origin!r}: {key} has shape {images.shape}; expected [N, H, W] or [N, H, W, C] "
            "with N, H, W, C >= 1."
        )
    if images.shape[-1] not in (1, 3):
        hint = ""
        if images.shape[1] in (1, 3):
            hint = (
                f"; it looks channels-first ([N, C, H, W] with C={images.shape[1]}): save "
                "np.transpose(x, (0, 2, 3, 1)) instead"
            )
        raise ValueError(
            f"{origin!r}: {key} has shape {images.shape}, i.e. {images.shape[-1]} channels; "
            f"expected [N, H, W, C] with C in {{1, 3}}, or [N, H, W]{hint}."
        )
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{origin!r}: {key} has dtype {images.dtype}; expected uint8 (0..255) or a float "
            "dtype with values in [0, 1]."
        )
    finite = np.isfinite(images)
    if not finite.all():
        first = _first_index(~finite)
        raise ValueError(
            f"{origin!r}: {key} holds {int(np.size(finite) - np.count_nonzero(finite))} "
            f"non-finite values (the first, {images[first]}, at index {first}); expected float "
            "values in [0, 1] (or uint8 0..255)."
        )
    lo, hi = float(np.min(images)), float(np.max(images))
    if lo < 0.0 or hi > 1.0:
        first = _first_index((images < 0.0) | (images > 1.0))
        raise ValueError(
            f"{origin!r}: {key} has values in [{lo}, {hi}] (the first outside [0, 1], "
            f"{images[first]}, at index {first}); expected float values in [0, 1] "
            "(or uint8 0..255)."
        )
    return images.astype(np.float32)


def _validate_user_labels(labels: np.ndarray, key: str, origin: str, count: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{origin!r}: {key} has dtype {labels.dtype}; expected integer class indices "
            f"(e.g. int64) of shape ({count},)."
        )
    if labels.shape != (count,):
        raise ValueError(
            f"{origin!r}: {key} has shape {labels.shape}; expected ({count},), one label per image."
        )
    if labels.min() < 0 or labels.max() > np.iinfo(np.int32).max:
        raise ValueError(
            f"{origin!r}: {key} has values in [{labels.min()}, {labels.max()}]; expected "
            "non-negative int32 class indices."
        )
    return labels.astype(np.int32)


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))
