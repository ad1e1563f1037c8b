"""User datasets from ``.npz`` files, checked array by array.

Every check names the file, the array and the bad value in one line, so the CLI can print it as
its one-line error.
"""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from jaxvae.data.base import Dataset, Source, SourceRequest, register, take_first, to_unit_float

_NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def load_npz(request: SourceRequest) -> Dataset:
    """Loads a user dataset from the ``.npz`` file ``request.data_dir``.

    The file holds ``train_images`` and ``test_images`` (uint8 0..255, or float in ``[0, 1]``;
    shape ``[N, H, W]`` or ``[N, H, W, C]`` with ``C`` 1 or 3, channels last) and optionally
    ``train_labels`` and ``test_labels`` (non-negative integers; zeros when absent). Only the
    limits and ``with_train`` (whether to read the training arrays, which then need not be
    there) of ``request`` apply.

    Returns:
      The :class:`Dataset`, named ``"npz"``.

    Raises:
      ValueError: If the file is missing or unreadable, or an array has the wrong key, dtype,
        shape or range.
    """
    path = request.data_dir
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
            keys = [k for k in npz.files if request.with_train or not k.startswith("train_")]
            arrays = {key: npz[key] for key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"Could not read {path!r} as an .npz file ({reason}); expected a file made with "
            "np.savez or np.savez_compressed."
        ) from e
    unknown = sorted(set(arrays) - set(_NPZ_KEYS))
    required = ("train_images", "test_images") if request.with_train else ("test_images",)
    missing = [k for k in required if k not in arrays]
    if unknown or missing:
        raise ValueError(
            f"{path!r} has keys {sorted(arrays)}; expected train_images and test_images, "
            f"optionally train_labels and test_labels (missing: {missing}, unknown: {unknown})."
        )
    splits = {}
    for split, limit in (("train", request.limit_train), ("test", request.limit_test)):
        if f"{split}_images" in arrays:  # (the training arrays only with_train)
            images = _validate_user_images(np.asarray(arrays[f"{split}_images"]), split, path)
            images = to_unit_float(images) if split == "test" else images  # uint8 train stays
            labels = _validate_user_labels(arrays.get(f"{split}_labels"), split, path, len(images))
            splits[split] = take_first(images, limit), take_first(labels, limit)
    test_shape = splits["test"][0].shape[1:]
    empty = np.zeros((0, *test_shape), np.float32), np.zeros(0, np.int32)
    train_images, train_labels = splits.get("train", empty)
    if train_images.shape[1:] != test_shape:
        raise ValueError(
            f"{path!r}: train images are {train_images.shape[1:]} but test images are "
            f"{test_shape}; expected the same [H, W, C]."
        )
    return Dataset("npz", train_images, train_labels, *splits["test"])


def _validate_user_images(images: np.ndarray, split: str, origin: str) -> np.ndarray:
    key = f"{split}_images"
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


def _validate_user_labels(labels, split: str, origin: str, count: int) -> np.ndarray:
    key = f"{split}_labels"
    if labels is None:
        return np.zeros(count, np.int32)
    labels = np.asarray(labels)
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


register("npz", Source(load_npz))
