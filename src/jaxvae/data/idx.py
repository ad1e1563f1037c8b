"""Fashion-MNIST from its original IDX files, read with numpy.

Debian's ``dataset-fashion-mnist`` package puts the four files in
:data:`DEFAULT_FASHION_MNIST_DIR`; another directory comes from ``data_dir`` or the
:data:`FASHION_MNIST_ENV` environment variable. Files may be gzipped or not.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from jaxvae.data.base import Dataset, Source, SourceRequest, register, take_first, to_unit_float
from jaxvae.data.tfds import tfds_source

FASHION_MNIST_ENV = "JAXVAE_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# File stems of the original Fashion-MNIST release, per split: (images, labels).
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_SIZES = {"train": 60_000, "test": 10_000}
FASHION_MNIST_IMAGE_HW = (28, 28)

_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one Fashion-MNIST uses.


def resolve_fashion_mnist_dir(data_dir: str = "") -> tuple[str, str]:
    """Picks the Fashion-MNIST directory: ``data_dir``, else the env var, else the default.

    Args:
      data_dir: Explicit directory; empty to fall back.

    Returns:
      ``(directory, origin)`` where ``origin`` says where the directory came from.
    """
    if data_dir:
        return data_dir, "the data_dir argument (--config.data.data_dir)"
    from_env = os.environ.get(FASHION_MNIST_ENV, "")
    if from_env:
        return from_env, f"the {FASHION_MNIST_ENV} environment variable"
    return DEFAULT_FASHION_MNIST_DIR, f"the default (neither data_dir nor {FASHION_MNIST_ENV} set)"


def find_fashion_mnist_files(data_dir: str = "") -> dict[str, tuple[str, str]]:
    """Locates the four Fashion-MNIST IDX files, gzipped or not.

    Args:
      data_dir: Directory to look in (see :func:`resolve_fashion_mnist_dir`).

    Returns:
      ``{"train": (images_path, labels_path), "test": (...)}``.

    Raises:
      ValueError: If the directory or any file is missing; the message lists the paths tried
        and how to get the data.
    """
    directory, origin = resolve_fashion_mnist_dir(data_dir)
    if not os.path.isdir(directory):
        raise ValueError(
            f"Fashion-MNIST directory {directory!r} (from {origin}) does not exist. "
            + _fashion_mnist_help()
        )
    found, missing = {}, []
    for split, stems in FASHION_MNIST_FILES.items():
        tried = [[os.path.join(directory, stem + ext) for ext in (".gz", "")] for stem in stems]
        paths = [next((c for c in t if os.path.isfile(c)), "") for t in tried]
        missing += [" or ".join(t) for t, p in zip(tried, paths, strict=True) if not p]
        found[split] = tuple(paths)
    if missing:
        raise ValueError(
            f"Fashion-MNIST files missing in {directory!r} (from {origin}); tried: "
            + "; ".join(missing)
            + ". "
            + _fashion_mnist_help()
        )
    return found


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (``.gz`` or uncompressed) into a numpy array.

    Args:
      path: File path; a name ending in ``.gz`` is decompressed.

    Returns:
      A uint8 array with the shape stored in the header.

    Raises:
      ValueError: If the file cannot be read, is not a ubyte IDX file, or its size does not
        match its header (truncated or with trailing bytes).
    """
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(
            f"Could not read IDX file {path!r} ({type(e).__name__}: {e}); the file is corrupt "
            "or truncated. Reinstall it (apt-get install --reinstall dataset-fashion-mnist)."
        ) from e
    return parse_idx(raw, path)


def parse_idx(raw: bytes, path: str = "<bytes>") -> np.ndarray:
    """Parses the bytes of an IDX file of unsigned bytes.

    Args:
      raw: The uncompressed file content.
      path: Name used in error messages.

    Returns:
      A uint8 array with the shape stored in the header.

    Raises:
      ValueError: On a bad magic number or a size that does not match the header.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"IDX file {path!r} starts with {raw[:4].hex() or 'nothing'}; expected the magic "
            "number 0000 08 NN (an IDX file of unsigned bytes)."
        )
    type_code, ndim = raw[2], raw[3]
    if type_code != _IDX_UBYTE or ndim < 1:
        raise ValueError(
            f"IDX file {path!r} has type code {type_code:#04x} and {ndim} dimensions; expected "
            f"type {_IDX_UBYTE:#04x} (unsigned byte) and at least one dimension."
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"IDX file {path!r} is {len(raw)} bytes, shorter than its {header_size}-byte header; "
            "the file is truncated."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_size + math.prod(shape)
    if len(raw) != expected:
        raise ValueError(
            f"IDX file {path!r} is {len(raw)} bytes; its header (shape {shape}) implies "
            f"{expected} bytes. The file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def read_fashion_mnist_split(
    images_path: str, labels_path: str, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Reads and checks one Fashion-MNIST split from its IDX files.

    Args:
      images_path: Path of the images IDX file.
      labels_path: Path of the labels IDX file.
      split: ``"train"`` or ``"test"``, to check the expected number of examples.

    Returns:
      ``(images, labels)``: uint8 ``[N, 28, 28, 1]`` and int32 ``[N]``.

    Raises:
      ValueError: If a file is malformed or its shape or labels are not Fashion-MNIST's.
    """
    count = FASHION_MNIST_SIZES[split]
    images = read_idx(images_path)
    if images.shape != (count, *FASHION_MNIST_IMAGE_HW):
        raise ValueError(
            f"IDX file {images_path!r} holds an array of shape {images.shape}; expected "
            f"({count}, 28, 28) for the Fashion-MNIST {split} images."
        )
    labels = read_idx(labels_path)
    if labels.shape != (count,):
        raise ValueError(
            f"IDX file {labels_path!r} holds an array of shape {labels.shape}; expected "
            f"({count},) for the Fashion-MNIST {split} labels."
        )
    if labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"IDX file {labels_path!r} holds label {int(labels.max())}; expected labels in "
            f"0..{len(FASHION_MNIST_CLASSES) - 1}."
        )
    return images[..., None], labels.astype(np.int32)


def load_fashion_mnist(request: SourceRequest) -> Dataset:
    """Loads Fashion-MNIST: from its IDX files with numpy, or (``request.source="tfds"``)
    through the TFDS data source prepared from them (:mod:`jaxvae.data.tfds_fashion_mnist`),
    which holds the same examples in the same order.

    Args:
      request: ``data_dir`` (the IDX files, see :func:`resolve_fashion_mnist_dir`), the limits
        and ``with_train`` (and, through TFDS, ``tfds_data_dir`` and ``lazy_train``).

    Returns:
      The :class:`Dataset`, the training images uint8 and the test images float32 in ``[0, 1]``.

    Raises:
      ValueError: If files are missing or malformed.
    """
    if request.source == "tfds":
        return _TFDS.load(request)
    files = find_fashion_mnist_files(request.data_dir)
    test_images, test_labels = read_fashion_mnist_split(*files["test"], "test")
    if request.with_train:
        train_images, train_labels = read_fashion_mnist_split(*files["train"], "train")
    else:
        train_images, train_labels = (
            np.zeros((0, *FASHION_MNIST_IMAGE_HW, 1), np.uint8),
            np.zeros(0, np.int32),
        )
    return Dataset(
        "fashion_mnist",
        take_first(train_images, request.limit_train),
        take_first(train_labels, request.limit_train),
        to_unit_float(take_first(test_images, request.limit_test)),
        take_first(test_labels, request.limit_test),
        FASHION_MNIST_CLASSES,
    )


def _tfds_builder(request: SourceRequest):
    from jaxvae.data import tfds_fashion_mnist  # Imports tensorflow_datasets.

    return tfds_fashion_mnist.prepare(idx_dir=request.data_dir, tfds_data_dir=request.tfds_data_dir)


def _fashion_mnist_help() -> str:
    return (
        "Get Fashion-MNIST's IDX files with `apt-get install dataset-fashion-mnist` (they go to "
        f"{DEFAULT_FASHION_MNIST_DIR}), or put train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        f"in a directory and set {FASHION_MNIST_ENV}=DIR or pass --config.data.data_dir=DIR."
    )


_TFDS = tfds_source("fashion_mnist", _tfds_builder)
register(
    "fashion_mnist",
    Source(
        load_fashion_mnist,
        lambda r: _TFDS.train_records(r) if r.source == "tfds" else None,
        sources=("auto", "idx", "tfds"),
    ),
)
