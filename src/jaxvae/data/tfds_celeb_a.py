"""CelebA through TFDS's own ``celeb_a`` builder (``data.name="celeb_a"``), 64x64 by default.

The common VAE protocol (e.g. PyTorch-VAE's CelebA benchmark): each aligned 178x218 face is
centre-cropped to 148x148, then resized to ``data.image_size`` (default 64) with PIL's bilinear
filter (:func:`~jaxvae.data.images.crop_and_resize`), RGB. The splits are TFDS's ``train``
(162,770 images) and ``test`` (19,962); TFDS's ``validation`` split is not read (jaxvae's
validation split is the last ``data.validation_size`` training images, as for every dataset).
The 40 binary attributes, the landmarks and the identities are ignored: every label is 0.

The images are cropped and resized when read, record by record (:class:`CroppedRecords`), so the
training split (8 GB as float32 at 64x64) streams from the array_record files like any TFDS
dataset above ``data.stream_threshold_mb``. Preparing CelebA needs its download (about 1.4 GB):
``data.download=true`` lets TFDS do it (see :func:`jaxvae.data.tfds.prepared_builder`).
"""

from __future__ import annotations

from jaxvae.data.base import Dataset, Source, SourceRequest, register, to_unit_float
from jaxvae.data.images import CroppedRecords
from jaxvae.data.tfds import data_source, prepared_builder, read_data_source, train_split

NAME = "celeb_a"
CROP = 148
DEFAULT_IMAGE_SIZE = 64


def _sources(request: SourceRequest) -> tuple[CroppedRecords, CroppedRecords, int]:
    if request.image_size < 0:
        raise ValueError(f"data.image_size={request.image_size!r}; expected >= 0 (0 = 64).")
    if request.channels not in (0, 3):
        raise ValueError(f"data.channels={request.channels!r} for celeb_a; expected 0 or 3 (RGB).")
    builder = prepared_builder(NAME, request.tfds_data_dir, download=request.download)
    train, test = data_source(builder, NAME, ["train", "test"])
    size = request.image_size or DEFAULT_IMAGE_SIZE
    return CroppedRecords(train, size, CROP), CroppedRecords(test, size, CROP), size


def load_celeb_a(request: SourceRequest) -> Dataset:
    """Loads CelebA, centre crop 148 then resize (see the module's protocol).

    Raises:
      ValueError: If ``celeb_a`` is not prepared (and ``download`` is off) or cannot be read.
    """
    train, test, size = _sources(request)
    test_images, test_labels = read_data_source(test, request.limit_test, True)
    train_images, train_labels = train_split(train, request, (size, size, 3))
    protocol = {
        "source": f"TFDS celeb_a: centre crop {CROP}x{CROP}, PIL bilinear resize to {size}x{size}, "
        "RGB; TFDS's train and test splits; attributes ignored (labels 0)"
    }
    return Dataset(
        name=NAME,
        train_images=train_images,
        train_labels=train_labels,
        test_images=to_unit_float(test_images),
        test_labels=test_labels,
        protocol=protocol,
    )


def _train_records(request: SourceRequest) -> tuple[int, tuple[int, int, int]]:
    size = request.image_size or DEFAULT_IMAGE_SIZE
    builder = prepared_builder(NAME, request.tfds_data_dir, download=request.download)
    return int(builder.info.splits["train"].num_examples), (size, size, 3)


register(NAME, Source(load=load_celeb_a, train_records=_train_records))
