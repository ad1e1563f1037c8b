"""Datasets for jaxvae: loading, preprocessing and input corruption.

Every loader returns a :class:`Dataset` of float32 images in ``[0, 1]`` laid out as
``[N, H, W, C]`` plus int32 labels. Sources:

* ``fashion_mnist``: the original IDX files (Debian's ``dataset-fashion-mnist`` package puts them
  in ``/usr/share/datasets/fashion-mnist``), read directly with numpy (``source="idx"``) or through
  a TFDS array_record data source built from those same files (``source="tfds"``).
* ``mnist``, ``binarized_mnist``, ``cifar10``: TFDS datasets that must already be prepared (in the
  array_record format) under ``tfds_data_dir``; nothing is ever downloaded.
* ``npz``: a user-supplied ``.npz`` file.

The module also holds the per-batch corruptions used by the training loop
(:func:`dynamic_binarize`, :func:`add_noise`) and a deterministic :func:`synthetic_dataset` for
tests.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DATASETS = ("fashion_mnist", "mnist", "binarized_mnist", "cifar10", "npz")
FASHION_MNIST_ENV = "JAXVAE_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

SOURCES = ("auto", "idx", "tfds")
BINARIZE_MODES = ("none", "static", "dynamic")
NOISE_KINDS = ("gaussian", "masking", "salt_pepper")
TFDS_DATASETS = ("mnist", "binarized_mnist", "cifar10")

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
_TFDS_READ_CHUNK = 8192
_NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


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


# --------------------------------------------------------------------------------------------
# Public entry points.
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    data_dir: str = "",
    tfds_data_dir: str = "",
    source: str = "auto",
    binarize: str = "none",
    seed: int = 0,
    limit_train: int = 0,
    limit_test: int = 0,
) -> Dataset:
    """Loads a dataset as float32 images in ``[0, 1]``.

    Args:
      name: One of :data:`DATASETS`.
      data_dir: For ``fashion_mnist``, the directory holding the IDX files (default: the
        ``JAXVAE_FASHION_MNIST_DIR`` environment variable, else
        :data:`DEFAULT_FASHION_MNIST_DIR`). For ``npz``, the path of the ``.npz`` file. Ignored
        by the TFDS datasets.
      tfds_data_dir: TFDS data directory for ``mnist``, ``binarized_mnist``, ``cifar10`` and for
        ``fashion_mnist`` with ``source="tfds"`` (default: the ``TFDS_DATA_DIR`` environment
        variable, else ``~/tensorflow_datasets``).
      source: For ``fashion_mnist``: ``"idx"`` reads the IDX files with numpy, ``"tfds"`` goes
        through a TFDS data source prepared from the same files, ``"auto"`` means ``"idx"``.
        Other datasets accept ``"auto"`` and their only source (``"tfds"`` for TFDS datasets).
      binarize: ``"none"``; ``"static"`` samples every pixel once from a Bernoulli with the pixel
        intensity as probability (seeded by ``seed``), giving exact 0/1 values; ``"dynamic"``
        keeps the images continuous here (the training loop resamples each batch with
        :func:`dynamic_binarize`).
      seed: Seed of the static binarization.
      limit_train: If positive, keep only the first ``limit_train`` training examples.
      limit_test: If positive, keep only the first ``limit_test`` test examples.

    Returns:
      The loaded :class:`Dataset`.

    Raises:
      ValueError: For an unknown name, source or binarization, a negative limit, or when the data
        is missing, not prepared or malformed.
    """
    _check_choice("name", name, DATASETS)
    _check_choice("source", source, SOURCES)
    _check_choice("binarize", binarize, BINARIZE_MODES)
    for arg, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if int(value) != value or value < 0:
            raise ValueError(f"{arg}={value!r}; expected an integer >= 0 (0 keeps everything).")
    limit_train, limit_test = int(limit_train), int(limit_test)

    if name == "fashion_mnist":
        if source == "tfds":
            dataset = _load_fashion_mnist_tfds(data_dir, tfds_data_dir, limit_train, limit_test)
        else:
            dataset = load_fashion_mnist_idx(data_dir, limit_train, limit_test)
    elif name == "npz":
        if source not in ("auto",):
            raise ValueError(f"source={source!r} for the npz dataset; expected 'auto'.")
        dataset = load_npz(data_dir, limit_train, limit_test)
    else:
        if source == "idx":
            raise ValueError(
                f"source='idx' for dataset {name!r}; IDX files are only read for fashion_mnist. "
                "Expected 'auto' or 'tfds'."
            )
        dataset = load_tfds_dataset(name, tfds_data_dir, limit_train, limit_test)

    if binarize == "static":
        dataset = static_binarize(dataset, seed)
    return dataset


def load_from_config(cfg: Any, seed: int = 0) -> Dataset:
    """Loads the dataset described by the ``data`` section of a config.

    Args:
      cfg: An ``ml_collections.ConfigDict`` (or mapping) with the field ``name`` and optionally
        ``data_dir``, ``tfds_data_dir``, ``source``, ``binarize``, ``limit_train`` and
        ``limit_test`` (see :func:`load_dataset`). Other fields are ignored.
      seed: The experiment's global seed, used for static binarization.

    Returns:
      The loaded :class:`Dataset`.

    Raises:
      ValueError: If ``name`` is missing, or as :func:`load_dataset`.
    """
    name = cfg.get("name", None)
    if not name:
        raise ValueError(
            f"Data config has no dataset name (got {name!r}); expected one of {DATASETS}."
        )
    return load_dataset(
        str(name),
        data_dir=str(cfg.get("data_dir", "") or ""),
        tfds_data_dir=str(cfg.get("tfds_data_dir", "") or ""),
        source=str(cfg.get("source", "auto") or "auto"),
        binarize=str(cfg.get("binarize", "none") or "none"),
        seed=int(seed),
        limit_train=int(cfg.get("limit_train", 0) or 0),
        limit_test=int(cfg.get("limit_test", 0) or 0),
    )


# --------------------------------------------------------------------------------------------
# Preprocessing and corruption.
# --------------------------------------------------------------------------------------------


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


def binarize_images(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Samples each pixel once from a Bernoulli with the pixel intensity as probability.

    Args:
      images: float array with values in ``[0, 1]``.
      rng: The numpy generator to draw from.

    Returns:
      A float32 array of the same shape holding exactly 0.0 and 1.0.
    """
    uniform = rng.random(images.shape, dtype=np.float32)
    return (uniform < images).astype(np.float32)


def static_binarize(dataset: Dataset, seed: int) -> Dataset:
    """Binarizes a dataset once, deterministically for ``seed``.

    The train and test splits use independent streams spawned from
    ``np.random.default_rng(seed)``, so an example's binarization does not depend on how many
    examples of either split were kept.

    Args:
      dataset: The dataset to binarize (images in ``[0, 1]``).
      seed: Seed of ``np.random.default_rng``.

    Returns:
      A new :class:`Dataset` whose images are exactly 0.0 or 1.0.
    """
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    return dataclasses.replace(
        dataset,
        train_images=binarize_images(dataset.train_images, train_rng),
        test_images=binarize_images(dataset.test_images, test_rng),
    )


def dynamic_binarize(key: jax.Array, x: jax.Array) -> jax.Array:
    """Resamples binary images from intensities, e.g. once per training batch.

    Args:
      key: A JAX PRNG key.
      x: Float array with values in ``[0, 1]``, read as Bernoulli probabilities.

    Returns:
      An array like ``x`` (same shape and dtype) holding 0 and 1.
    """
    return jax.random.bernoulli(key, x).astype(x.dtype)


def add_noise(key: jax.Array, x: jax.Array, *, kind: str, level: float) -> jax.Array:
    """Corrupts images for a denoising autoencoder.

    Args:
      key: A JAX PRNG key.
      x: Float array with values in ``[0, 1]``.
      kind: ``"gaussian"``: add ``level`` times standard normal noise and clip to ``[0, 1]``;
        ``"masking"``: set each pixel to 0 with probability ``level``; ``"salt_pepper"``: set
        each pixel with probability ``level`` to 0 or 1 (even odds).
      level: Noise standard deviation (``>= 0``) for ``"gaussian"``, a probability in
        ``[0, 1]`` otherwise. Must be a Python number, not a traced value.

    Returns:
      The corrupted array, same shape and dtype as ``x``.

    Raises:
      ValueError: For an unknown ``kind``, a bad ``level`` or a non-float ``x``.
    """
    _check_choice("kind", kind, NOISE_KINDS)
    level = _check_noise_level(kind, level)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"add_noise got images of dtype {x.dtype}; expected a float dtype.")
    if kind == "gaussian":
        noise = jax.random.normal(key, x.shape, x.dtype)
        return jnp.clip(x + level * noise, 0.0, 1.0)
    if kind == "masking":
        dropped = jax.random.bernoulli(key, level, x.shape)
        return jnp.where(dropped, jnp.zeros_like(x), x)
    corrupt_key, value_key = jax.random.split(key)
    corrupted = jax.random.bernoulli(corrupt_key, level, x.shape)
    salt = jax.random.bernoulli(value_key, 0.5, x.shape).astype(x.dtype)
    return jnp.where(corrupted, salt, x)


def synthetic_dataset(
    num_train: int = 512,
    num_test: int = 128,
    shape: tuple[int, int, int] = (28, 28, 1),
    seed: int = 0,
) -> Dataset:
    """A small deterministic dataset of blobs and strokes, for tests.

    Example ``i`` has label ``i % 10``; its class sets where a soft blob sits and the angle of a
    stroke through the centre, with small seeded jitter. Colour images get class-dependent
    channel weights.

    Args:
      num_train: Number of training examples (>= 1).
      num_test: Number of test examples (>= 1).
      shape: ``(H, W, C)`` of each image; H and W at least 4.
      seed: Seed of the jitter.

    Returns:
      A :class:`Dataset` named ``"synthetic"`` with 10 classes and images in ``[0, 1]``.

    Raises:
      ValueError: For non-positive sizes or a bad shape.
    """
    for arg, value in (("num_train", num_train), ("num_test", num_test)):
        if int(value) != value or value < 1:
            raise ValueError(f"{arg}={value!r}; expected an integer >= 1.")
    if len(shape) != 3 or min(shape[:2]) < 4 or shape[2] < 1:
        raise ValueError(f"shape={shape!r}; expected (H, W, C) with H, W >= 4 and C >= 1.")
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    train_images, train_labels = _synthetic_split(int(num_train), tuple(shape), train_rng)
    test_images, test_labels = _synthetic_split(int(num_test), tuple(shape), test_rng)
    return Dataset(
        name="synthetic",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=tuple(f"class_{k}" for k in range(10)),
    )


# --------------------------------------------------------------------------------------------
# Fashion-MNIST from IDX files.
# --------------------------------------------------------------------------------------------


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
    found: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    for split, stems in FASHION_MNIST_FILES.items():
        paths = []
        for stem in stems:
            candidates = [os.path.join(directory, stem + ".gz"), os.path.join(directory, stem)]
            path = next((c for c in candidates if os.path.isfile(c)), "")
            if not path:
                missing.append(" or ".join(candidates))
            paths.append(path)
        found[split] = (paths[0], paths[1])
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
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
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


def load_fashion_mnist_idx(
    data_dir: str = "", limit_train: int = 0, limit_test: int = 0
) -> Dataset:
    """Loads Fashion-MNIST from its original IDX files with numpy.

    Args:
      data_dir: Directory of the IDX files (see :func:`resolve_fashion_mnist_dir`).
      limit_train: If positive, keep only the first ``limit_train`` training examples.
      limit_test: If positive, keep only the first ``limit_test`` test examples.

    Returns:
      The :class:`Dataset`, images scaled to float32 in ``[0, 1]``.

    Raises:
      ValueError: If files are missing or malformed.
    """
    files = find_fashion_mnist_files(data_dir)
    arrays = {}
    for split, limit in (("train", limit_train), ("test", limit_test)):
        images, labels = read_fashion_mnist_split(*files[split], split)
        arrays[split] = _limit(images, limit), _limit(labels, limit)
    return _dataset_from_uint8("fashion_mnist", arrays, FASHION_MNIST_CLASSES)


# --------------------------------------------------------------------------------------------
# TFDS data sources.
# --------------------------------------------------------------------------------------------


def default_tfds_data_dir() -> str:
    """TFDS's default data directory: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR", "") or os.path.expanduser("~/tensorflow_datasets")


def load_tfds_dataset(
    name: str, tfds_data_dir: str = "", limit_train: int = 0, limit_test: int = 0
) -> Dataset:
    """Loads an already prepared TFDS dataset through its array_record data source.

    Nothing is downloaded: an unprepared dataset fails at once.

    Args:
      name: ``"mnist"``, ``"binarized_mnist"`` or ``"cifar10"``.
      tfds_data_dir: TFDS data directory (default: :func:`default_tfds_data_dir`).
      limit_train: If positive, read only the first ``limit_train`` training records.
      limit_test: If positive, read only the first ``limit_test`` test records.

    Returns:
      The :class:`Dataset`; datasets without labels get zeros.

    Raises:
      ValueError: If the dataset is not prepared in ``tfds_data_dir`` or not as array_record.
    """
    _check_choice("name", name, TFDS_DATASETS)
    import tensorflow_datasets as tfds

    data_dir = tfds_data_dir or default_tfds_data_dir()
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise ValueError(
            f"TFDS dataset {name!r} is not prepared in {data_dir!r} (looked for "
            f"{os.fspath(builder.data_path)!r}); jaxvae never downloads. On a machine with "
            'internet and TensorFlow run: python -c "import tensorflow_datasets as tfds; '
            f"tfds.builder('{name}').download_and_prepare(file_format='array_record')\", copy "
            "its tensorflow_datasets directory here and pass --config.data.tfds_data_dir=DIR "
            "(or set TFDS_DATA_DIR)."
        )
    return read_tfds_builder(builder, name, limit_train, limit_test)


def read_tfds_builder(
    builder: Any, name: str, limit_train: int = 0, limit_test: int = 0
) -> Dataset:
    """Reads the ``train`` and ``test`` splits of a prepared TFDS builder into a Dataset.

    Args:
      builder: A prepared ``tfds.core.DatasetBuilder`` whose features hold a uint8 ``image``
        ``[H, W, C]`` and optionally an integer ``label``.
      name: Name of the returned dataset.
      limit_train: If positive, read only the first ``limit_train`` training records.
      limit_test: If positive, read only the first ``limit_test`` test records.

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
    try:
        sources = builder.as_data_source(split=["train", "test"])
    except NotImplementedError as e:
        raise ValueError(
            f"TFDS dataset {name!r} in {os.fspath(builder.data_dir)!r} is stored as "
            f"{builder.info.file_format}; expected array_record (random access). Prepare it with "
            "download_and_prepare(file_format='array_record') or convert it with "
            "`tfds convert_format`."
        ) from e
    has_labels = "label" in features
    class_names = tuple(getattr(features["label"], "names", ())) if has_labels else ()
    arrays = {
        split: read_data_source(source, limit, has_labels)
        for split, source, limit in zip(
            ("train", "test"), sources, (limit_train, limit_test), strict=True
        )
    }
    return _dataset_from_uint8(name, arrays, class_names)


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
    get_many: Callable[[list[int]], Sequence[Mapping[str, Any]]] = getattr(
        source, "__getitems__", lambda keys: [source[k] for k in keys]
    )
    images, labels = [], []
    for start in range(0, count, _TFDS_READ_CHUNK):
        records = get_many(list(range(start, min(start + _TFDS_READ_CHUNK, count))))
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


def _load_fashion_mnist_tfds(
    data_dir: str, tfds_data_dir: str, limit_train: int, limit_test: int
) -> Dataset:
    from jaxvae import tfds_fashion_mnist

    builder = tfds_fashion_mnist.prepare(
        idx_dir=data_dir, tfds_data_dir=tfds_data_dir or default_tfds_data_dir()
    )
    return read_tfds_builder(builder, "fashion_mnist", limit_train, limit_test)


# --------------------------------------------------------------------------------------------
# User .npz files.
# --------------------------------------------------------------------------------------------


def load_npz(path: str, limit_train: int = 0, limit_test: int = 0) -> Dataset:
    """Loads a user dataset from an ``.npz`` file.

    The file holds ``train_images`` and ``test_images`` (uint8 0..255, or float in ``[0, 1]``;
    shape ``[N, H, W]`` or ``[N, H, W, C]``) and optionally ``train_labels`` and ``test_labels``
    (non-negative integers; zeros when absent).

    Args:
      path: Path of the ``.npz`` file.
      limit_train: If positive, keep only the first ``limit_train`` training examples.
      limit_test: If positive, keep only the first ``limit_test`` test examples.

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
        raise ValueError(
            f"npz file {path!r} does not exist; expected a .npz file made with np.savez."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"Could not read {path!r} as an .npz file ({e}).") from e
    return dataset_from_arrays("npz", contents, path, limit_train, limit_test)


def dataset_from_arrays(
    name: str,
    arrays: Mapping[str, np.ndarray],
    origin: str = "<arrays>",
    limit_train: int = 0,
    limit_test: int = 0,
) -> Dataset:
    """Validates user arrays (as in an ``.npz`` file) and builds a Dataset.

    Args:
      name: Name of the dataset.
      arrays: ``train_images``, ``test_images`` and optionally ``train_labels``,
        ``test_labels``, as described in :func:`load_npz`.
      origin: Where the arrays came from, for error messages.
      limit_train: If positive, keep only the first ``limit_train`` training examples.
      limit_test: If positive, keep only the first ``limit_test`` test examples.

    Returns:
      The :class:`Dataset`.

    Raises:
      ValueError: On unknown or missing keys, or bad dtype, shape or range.
    """
    unknown = sorted(set(arrays) - set(_NPZ_KEYS))
    missing = [k for k in ("train_images", "test_images") if k not in arrays]
    if unknown or missing:
        raise ValueError(
            f"{origin!r} has keys {sorted(arrays)}; expected train_images and test_images, "
            f"optionally train_labels and test_labels (missing: {missing}, unknown: {unknown})."
        )
    splits = {}
    for split, limit in (("train", limit_train), ("test", limit_test)):
        images = _validate_user_images(
            np.asarray(arrays[f"{split}_images"]), f"{split}_images", origin
        )
        labels_key = f"{split}_labels"
        if labels_key in arrays:
            labels = _validate_user_labels(
                np.asarray(arrays[labels_key]), labels_key, origin, len(images)
            )
        else:
            labels = np.zeros(len(images), np.int32)
        splits[split] = _limit(images, limit), _limit(labels, limit)
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
    if images.dtype == np.uint8:
        return to_unit_float(images)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{origin!r}: {key} has dtype {images.dtype}; expected uint8 (0..255) or a float "
            "dtype with values in [0, 1]."
        )
    lo, hi = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{origin!r}: {key} has values in [{lo}, {hi}]; expected float values in [0, 1] "
            "(or uint8 0..255)."
        )
    return images.astype(np.float32)


def _validate_user_labels(labels: np.ndarray, key: str, origin: str, count: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (count,):
        raise ValueError(
            f"{origin!r}: {key} has dtype {labels.dtype} and shape {labels.shape}; expected "
            f"integers of shape ({count},)."
        )
    if labels.min() < 0 or labels.max() > np.iinfo(np.int32).max:
        raise ValueError(
            f"{origin!r}: {key} has values in [{labels.min()}, {labels.max()}]; expected "
            "non-negative int32 class indices."
        )
    return labels.astype(np.int32)


# --------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------


def _check_choice(arg: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{arg}={value!r}; expected one of {tuple(choices)}.")


def _check_noise_level(kind: str, level: float) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError) as e:  # TypeError includes JAX tracers.
        raise ValueError(f"Noise level {level!r}; expected a Python number.") from e
    upper = math.inf if kind == "gaussian" else 1.0
    if not (0.0 <= value <= upper):
        expected = "a standard deviation >= 0" if kind == "gaussian" else "a probability in [0, 1]"
        raise ValueError(f"Noise level {level!r} for kind {kind!r}; expected {expected}.")
    return value


def _limit(array: np.ndarray, limit: int) -> np.ndarray:
    return array[:limit] if limit > 0 else array


def _dataset_from_uint8(
    name: str,
    arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str] = (),
) -> Dataset:
    (train_images, train_labels), (test_images, test_labels) = arrays["train"], arrays["test"]
    return Dataset(
        name=name,
        train_images=to_unit_float(train_images),
        train_labels=train_labels.astype(np.int32),
        test_images=to_unit_float(test_images),
        test_labels=test_labels.astype(np.int32),
        class_names=tuple(class_names),
    )


def _fashion_mnist_help() -> str:
    return (
        "Get Fashion-MNIST's IDX files with `apt-get install dataset-fashion-mnist` (they go to "
        f"{DEFAULT_FASHION_MNIST_DIR}), or put train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        f"in a directory and set {FASHION_MNIST_ENV}=DIR or pass --config.data.data_dir=DIR."
    )


def _synthetic_split(
    count: int, shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    height, width, channels = shape
    labels = np.arange(count, dtype=np.int32) % 10
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[None, :, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, None, :]
    # Blob: centred on a circle at the class's angle, with jittered position and width.
    blob_angle = 2.0 * np.pi * labels / 10.0
    cy = (0.5 + 0.25 * np.sin(blob_angle) + rng.normal(0, 0.03, count))[:, None, None]
    cx = (0.5 + 0.25 * np.cos(blob_angle) + rng.normal(0, 0.03, count))[:, None, None]
    spread = (0.08 + 0.03 * rng.random(count))[:, None, None]
    blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2.0 * spread**2))
    # Stroke: a segment through the centre at the class's angle, slightly rotated.
    stroke_angle = (np.pi * labels / 10.0 + rng.normal(0, 0.05, count))[:, None, None]
    along = (xs - 0.5) * np.cos(stroke_angle) + (ys - 0.5) * np.sin(stroke_angle)
    across = (xs - 0.5) * np.sin(stroke_angle) - (ys - 0.5) * np.cos(stroke_angle)
    stroke = np.exp(-(across**2) / (2.0 * 0.04**2)) * (np.abs(along) < 0.35)
    gray = np.clip(np.maximum(blob, 0.8 * stroke), 0.0, 1.0)
    # Colour: class-dependent channel weights in [0.4, 1].
    phases = 2.0 * np.pi * np.arange(channels) / max(channels, 1)
    weights = 0.7 + 0.3 * np.cos(blob_angle[:, None] + phases[None, :])
    weights = weights if channels > 1 else np.ones((count, 1))
    images = gray[..., None] * weights[:, None, None, :]
    return images.astype(np.float32), labels
