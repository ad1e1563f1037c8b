"""Decoding image files and making them square: what the folder and CelebA sources share.

The one geometric rule: a centred square crop (side ``crop``, or the image's short side), then a
resize to ``size x size`` with PIL's bilinear filter (``PIL.Image.Resampling.BILINEAR``, which
PIL antialiases when it shrinks; torchvision's ``CenterCrop`` + ``Resize`` on a PIL image do the
same). The crop box starts at ``((W - crop) // 2, (H - crop) // 2)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import PIL.Image

from jaxvae.data.base import get_records

RESAMPLE = PIL.Image.Resampling.BILINEAR
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def crop_and_resize(image: PIL.Image.Image, size: int, crop: int = 0) -> PIL.Image.Image:
    """The centred square crop of side ``crop`` (0: the short side), resized to ``size``.

    Raises:
      ValueError: If ``crop`` is larger than the image's short side.
    """
    width, height = image.size
    side = crop or min(width, height)
    if side > min(width, height):
        raise ValueError(
            f"a centre crop of {side} pixels does not fit an image of {width}x{height}; expected "
            "a crop no larger than its short side."
        )
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), RESAMPLE)
    return image


class CroppedRecords:
    """A random-access record source whose ``image`` is centre-cropped and resized (uint8
    ``[size, size, C]``), with a ``label`` of 0 when the records have none; other fields are
    dropped. Reads a record only when asked, so it can be streamed.
    """

    def __init__(self, records: Sequence[Mapping[str, Any]], size: int, crop: int = 0):
        self.records, self.size, self.crop = records, int(size), int(crop)

    def __len__(self) -> int:
        return len(self.records)

    def _map(self, record: Mapping[str, Any]) -> dict[str, Any]:
        array = np.asarray(record["image"])
        image = PIL.Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        out = np.asarray(crop_and_resize(image, self.size, self.crop))
        return {"image": out.reshape(self.size, self.size, -1), "label": record.get("label", 0)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._map(self.records[index])

    def __getitems__(self, keys: Sequence[int]) -> list[dict[str, Any]]:
        return [self._map(r) for r in get_records(self.records, list(keys))]
