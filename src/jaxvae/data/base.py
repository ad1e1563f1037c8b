"""The :class:`Dataset` type and what every loader shares.

This module imports nothing else from :mod:`jaxvae.data`, so every loader (IDX, TFDS, npz,
synthetic) builds its Dataset from here and :mod:`jaxvae.data.dataset` dispatches to the loaders
without an import circle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """An image dataset split into train, validation and test, ready for training.

    Attributes:
      name: Dataset name, e.g. ``"fashion_mnist"``.
      train_images: ``[N, H, W, C]``, float32 with values in ``[0, 1]``, or uint8 (its compact
        stored form, where that is exact: pixels ``v`` stand for ``v / 255``,
        :func:`to_unit_float`), which is how it goes onto the devices; the train step converts
        each batch (:func:`jaxvae.engine.make_train_step`). Kept on a 64-byte boundary
        (:func:`aligned`; an array that is not is copied once), so that a CPU device uses it in
        place: on a CPU the training split on the "device" is this very memory, not a second
        copy (do not write into it while a run trains from it).
      train_labels: int32 array ``[N]``.
      test_images: ``[M, H, W, C]``, float32 in ``[0, 1]``, or uint8 read as ``v / 255``
        (the ground-truth sources keep every split in its stored 8 bits; evaluation converts
        batch by batch, :func:`jaxvae.evaluate.padded_batches`).
      test_labels: int32 array ``[M]``.
      class_names: Optional names of the classes; when given, ``num_classes`` is their count.
      validation_images: ``[V, H, W, C]``, float32 in ``[0, 1]`` or uint8 as above, held out of
        the training split (see :func:`jaxvae.data.load_dataset`'s ``validation_size``);
        ``[0, H, W, C]`` when there is none, which is also what ``None`` (the default) becomes.
      validation_labels: int32 array ``[V]``; ``[0]`` when there is none (or ``None``).
      protocol: How the splits were made, as a JSON-serializable dict that a run writes into
        ``summary.json``: :func:`jaxvae.data.load_dataset` documents its keys. Empty for a
        Dataset built by hand.
      factor_names: Names of the ground-truth factors of variation (dSprites, Shapes3D); empty
        for data without them.
      factor_sizes: Number of values of each factor; as long as ``factor_names``.
      train_factors: int32 ``[N, F]``, the factors of each training example (``F`` =
        ``len(factor_sizes)``), each in ``[0, factor_sizes[j])``; ``None`` without factors.
      test_factors: int32 ``[M, F]``; ``None`` without factors.
      validation_factors: int32 ``[V, F]``; ``None`` without factors, or (with factors) none
        given for an empty validation set, which becomes ``[0, F]``.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...] = ()
    validation_images: np.ndarray | None = None
    validation_labels: np.ndarray | None = None
    protocol: dict[str, Any] = dataclasses.field(default_factory=dict)
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    train_factors: np.ndarray | None = None
    test_factors: np.ndarray | None = None
    validation_factors: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.train_images, np.ndarray):
            object.__setattr__(self, "train_images", aligned(self.train_images))
        hwc = self.train_images.shape[1:]
        if self.validation_images is None:
            object.__setattr__(self, "validation_images", np.zeros((0, *hwc), np.float32))
        if self.validation_labels is None:
            object.__setattr__(self, "validation_labels", np.zeros(0, np.int32))
        for split in SPLITS:
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            dtypes = (np.float32, np.uint8)
            if images.dtype not in dtypes or images.ndim != 4:
                raise ValueError(
                    f"Dataset {self.name!r}: {split}_images has dtype {images.dtype} and shape "
                    f"{images.shape}; expected {' or '.join(np.dtype(d).name for d in dtypes)} "
                    "[N, H, W, C]."
                )
            if images.shape[1:] != hwc:
                raise ValueError(
                    f"Dataset {self.name!r}: train images are {hwc} but {split} images are "
                    f"{images.shape[1:]}; expected the same [H, W, C]."
                )
            if labels.dtype != np.int32 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"Dataset {self.name!r}: {split}_labels has dtype {labels.dtype} and shape "
                    f"{labels.shape}; expected int32 [{images.shape[0]}]."
                )
        self._check_factors()
        if not isinstance(self.protocol, dict):
            raise ValueError(
                f"Dataset {self.name!r}: protocol is a {type(self.protocol).__name__}; expected "
                "a dict."
            )
        try:
            json.dumps(self.protocol)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Dataset {self.name!r}: protocol {self.protocol!r} is not JSON-serializable ({e})."
            ) from None

    def _check_factors(self) -> None:
        object.__setattr__(self, "factor_names", tuple(str(n) for n in self.factor_names))
        object.__setattr__(self, "factor_sizes", tuple(int(n) for n in self.factor_sizes))
        num = len(self.factor_sizes)
        if len(self.factor_names) != num:
            raise ValueError(
                f"Dataset {self.name!r}: factor_names {self.factor_names} and factor_sizes "
                f"{self.factor_sizes} differ in length; expected one name per factor."
            )
        if num and self.validation_factors is None and not self.validation_images.shape[0]:
            object.__setattr__(self, "validation_factors", np.zeros((0, num), np.int32))
        for split in SPLITS:
            factors = getattr(self, f"{split}_factors")
            count = getattr(self, f"{split}_images").shape[0]
            if not num:
                if factors is not None:
                    raise ValueError(
                        f"Dataset {self.name!r}: {split}_factors given but factor_sizes is empty; "
                        "expected the sizes of the factors with them."
                    )
                continue
            if (
                factors is None
                or factors.dtype != np.int32
                or factors.shape != (count, num)
                or (factors.size and (factors.min() < 0 or (factors >= self.factor_sizes).any()))
            ):
                got = "None" if factors is None else f"{factors.dtype} {factors.shape}"
                raise ValueError(
                    f"Dataset {self.name!r}: {split}_factors is {got}; expected int32 "
                    f"[{count}, {num}] with column j in [0, factor_sizes[j]) "
                    f"(factor_sizes {self.factor_sizes})."
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
        labels = (self.train_labels, self.validation_labels, self.test_labels)
        # (a streamed training split's labels are not read: they count once read)
        read = [s for s in labels if isinstance(s, np.ndarray) and s.size]
        largest = max((int(split.max()) for split in read), default=-1)
        return largest + 1


ALIGNMENT = 64  # bytes: the host buffers XLA's CPU client takes in place instead of copying


def aligned_empty(shape: Sequence[int], dtype) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on an :data:`ALIGNMENT` boundary.

    ``jax.device_put`` onto a CPU device uses such an array's memory as the device buffer (it
    copies any other), so a large training split allocated this way is held once, not twice.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(tuple(shape))


def aligned(array: np.ndarray) -> np.ndarray:
    """``array`` if it is C-contiguous on an :data:`ALIGNMENT` boundary, else such a copy."""
    if array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0:
        return array
    out = aligned_empty(array.shape, array.dtype)
    out[...] = array
    return out


def to_unit_float(images):
    """Images in ``[0, 1]`` as float32: uint8 pixels ``v`` (0..255) become ``v / 255``.

    The one map from stored pixels to floats: a numpy array is divided on the host (IEEE
    division, correctly rounded); a jax array (a batch inside a compiled step) looks its values
    up in :data:`UNIT_FLOATS`, the host's quotients, because XLA compiles a division by the
    constant 255 as a multiplication by its reciprocal, which is off by one ulp for 126 of the
    256 values. Both give the same bits. Float images (already in ``[0, 1]``) are returned as
    float32, float32 ones as they are.

    Args:
      images: uint8 or float array (numpy or jax) of any shape.

    Returns:
      A float32 array of the same shape (and kind).

    Raises:
      ValueError: If ``images`` is neither uint8 nor a float array.
    """
    if images.dtype == np.float32:
        return images
    if jnp.issubdtype(images.dtype, jnp.floating):
        return images.astype(np.float32)
    if images.dtype != np.uint8:
        raise ValueError(f"Images have dtype {images.dtype}; expected uint8 (0..255) or float.")
    if isinstance(images, np.ndarray):
        return images.astype(np.float32) / np.float32(255.0)
    return jnp.asarray(UNIT_FLOATS)[images]


UNIT_FLOATS = to_unit_float(np.arange(256, dtype=np.uint8))  # v / 255 for each uint8 v


def default_tfds_data_dir() -> str:
    """TFDS's default data directory: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR", "") or os.path.expanduser("~/tensorflow_datasets")


def check_choice(arg: str, value: str, choices: Sequence[str]) -> None:
    """Raises ``ValueError`` naming ``arg`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{arg}={value!r}; expected one of {tuple(choices)}.")


def spec_field(cfg: Any, name: str) -> Any:
    """A data spec's field, from a spec (attributes) or a mapping (keys); None when absent."""
    if hasattr(cfg, "get"):
        return cfg.get(name, None)
    return getattr(cfg, name, None)


def take_first(array: np.ndarray, limit: int) -> np.ndarray:
    """The first ``limit`` entries of ``array``, or all of it when ``limit <= 0``."""
    return array[:limit] if limit > 0 else array


def get_records(source: Sequence[Mapping[str, Any]], keys: list[int]) -> Sequence[Mapping]:
    """The records ``keys`` of a random-access source (its ``__getitems__`` when it has one)."""
    if hasattr(source, "__getitems__"):
        return source.__getitems__(keys)
    return [source[k] for k in keys]


@dataclasses.dataclass(frozen=True)
class SourceRequest:
    """What :func:`jaxvae.data.load_dataset` asks of a registered source (see :func:`register`).

    Attributes:
      data_dir: the source's files (an image folder for ``folder``); "" = its default.
      tfds_data_dir: TFDS data directory; "" = :func:`default_tfds_data_dir`.
      source: the files to read, one of the source's ``sources`` (``"auto"``: its default).
      image_size: the side of the square images to make; 0 = the source's default.
      channels: 1 (grey) or 3 (RGB); 0 = the source's rule.
      cache_dir: where a source that decodes files keeps its decoded arrays; "" = its default.
      test_fraction: the share of the examples a source without a test split holds out.
      download: whether a TFDS source may download and prepare its data.
      limit_train: if positive, read only the first ``limit_train`` training examples.
      limit_test: if positive, read only the first ``limit_test`` test examples.
      validation_size: the examples to hold out as the validation split, for a source that makes
        its own splits (``Source.split``); the others leave it to :func:`jaxvae.data.load_dataset`.
      lazy_train: leave the training split in its records (a ``RecordColumn``), to stream it.
      with_train: whether to read the training split at all (else it is empty).
    """

    data_dir: str = ""
    tfds_data_dir: str = ""
    source: str = "auto"
    image_size: int = 0
    channels: int = 0
    cache_dir: str = ""
    test_fraction: float = 0.1
    download: bool = False
    limit_train: int = 0
    limit_test: int = 0
    validation_size: int = 0
    lazy_train: bool = False
    with_train: bool = True


@dataclasses.dataclass(frozen=True)
class Source:
    """A dataset source registered by its own module.

    Attributes:
      load: ``load(request) -> Dataset``, honouring every field of :class:`SourceRequest`.
      train_records: ``train_records(request) -> (N, (H, W, C))``: the size of the whole training
        split and the shape of one image, found without reading the images (or ``None`` for a
        source that cannot stream: then ``lazy_train`` is refused; it returns ``None`` for a
        request whose ``source`` cannot). The streaming decision (:mod:`jaxvae.streaming`) reads it.
      sources: the values of ``data.source`` it accepts.
      split: for data with ground-truth factors, whose loader makes the train, validation and
        test splits itself (a permutation of the examples): what is permuted, for the protocol;
        "" for the others, whose validation split :func:`jaxvae.data.load_dataset` takes off the
        training split.
    """

    load: Callable[[SourceRequest], Dataset]
    train_records: Callable[[SourceRequest], tuple[int, tuple[int, int, int]] | None] | None = None
    sources: tuple[str, ...] = ("auto",)
    split: str = ""


SOURCES_BY_NAME: dict[str, Source] = {}


def source_request(cfg: Any) -> SourceRequest:
    """The registered sources' options (and ``download``) of a data spec or mapping ``cfg``;
    the per-load fields (limits, ``lazy_train``) keep their defaults."""
    fraction = spec_field(cfg, "test_fraction")
    return SourceRequest(
        data_dir=str(spec_field(cfg, "data_dir") or ""),
        tfds_data_dir=str(spec_field(cfg, "tfds_data_dir") or ""),
        source=str(spec_field(cfg, "source") or "auto"),
        image_size=int(spec_field(cfg, "image_size") or 0),
        channels=int(spec_field(cfg, "channels") or 0),
        cache_dir=str(spec_field(cfg, "cache_dir") or ""),
        test_fraction=0.1 if fraction is None else float(fraction),
        download=bool(spec_field(cfg, "download")),
    )


def register(name: str, source: Source) -> Source:
    """Registers ``source`` as ``data.name=name``; each source module calls it once on import."""
    if name in SOURCES_BY_NAME:
        raise ValueError(f"data source {name!r} is registered twice; expected one module per name.")
    SOURCES_BY_NAME[name] = source
    return source
