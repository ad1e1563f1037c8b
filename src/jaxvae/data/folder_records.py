"""The records of an image folder (:mod:`jaxvae.data.folder`) that a streamed training split reads:
over its memory-mapped cache, or over its files, each decoded when read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image

from jaxvae.data.images import crop_and_resize


def why(error: BaseException) -> str:
    """An error's first line (its type's name when it has none)."""
    return (str(error).splitlines() or [type(error).__name__])[0]


def decode_one(path: str, size: int, channels: int) -> np.ndarray:
    """One file's pixels: uint8 ``[size, size, channels]`` (PIL's errors propagate)."""
    with PIL.Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        return np.asarray(crop_and_resize(image, size)).reshape(size, size, channels)


class FileImages:
    """The images of a folder not decoded yet, as a read-only uint8 array ``[N, H, W, C]`` whose
    rows are decoded from their files when read (an int index, or ``np.asarray`` of a slice): a
    streamed folder's source when it has no cache, as a TFDS data source decodes its records."""

    origin = "its image files, each decoded when read"

    def __init__(self, paths: Sequence[str], size: int, channels: int):
        self.paths, self.size, self.channels = list(paths), size, channels
        self.shape = (len(self.paths), size, size, channels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return FileImages(self.paths[key], self.size, self.channels)
        path = self.paths[key]
        try:
            return decode_one(path, self.size, self.channels)
        except (OSError, ValueError, SyntaxError) as e:
            raise ValueError(
                f"image {path!r} opened but did not decode ({why(e)}); a streamed folder reads "
                "each file when its batch comes: remove the file, or decode the folder first "
                "(data.stream='never', which skips it)"
            ) from e

    def __array__(self, dtype=None, copy=None):
        rows = [self[i] for i in range(len(self))]
        out = np.stack(rows) if rows else np.zeros((0, *self.shape[1:]), np.uint8)
        return out if dtype is None else out.astype(dtype)


class ArrayRecords:
    """Records ``{"image": uint8 [H, W, C], "label": int}`` over (memory-mapped) arrays or
    :class:`FileImages`: the random-access source a streamed training split reads (see
    :mod:`jaxvae.streaming`); ``origin`` says where its images come from."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.origin = getattr(images, "origin", "its memory-mapped cache")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": np.asarray(self.images[index]), "label": int(self.labels[index])}

    def __getitems__(self, keys: Sequence[int]) -> list[dict[str, Any]]:
        return [self[k] for k in keys]
