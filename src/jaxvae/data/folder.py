"""A folder of PNG/JPEG images as a dataset (``data.name="folder"``, ``data.data_dir=DIR``).

* **Labels.** Each sub-folder of ``DIR`` (not starting with ``.``) is a class: their sorted names
  are classes ``0..K-1`` (``Dataset.class_names``), the images anywhere below each one its
  examples; images directly in such a ``DIR`` are ignored (a warning line counts them). A flat
  ``DIR`` (no sub-folder) has no classes: every label is 0. Files ending in ``.png``, ``.jpg`` or
  ``.jpeg`` (any case) are images; other files are ignored.
* **Colour.** ``data.channels=1`` converts every image to grey (PIL mode ``L``), ``3`` to RGB
  (``RGB``; an alpha channel is dropped); ``0`` (the default) takes the majority: RGB unless more
  than half of the images are grey (PIL modes :data:`~jaxvae.data.images.GREY_MODES`).
* **Size.** Every image is centre-cropped to its short side and resized to
  ``data.image_size`` (default 64) square with PIL's bilinear filter
  (:func:`~jaxvae.data.images.crop_and_resize`).
* **Split.** A file is a test example when ``u < data.test_fraction`` (default 0.1), where ``u``
  is the first 8 bytes of the SHA-256 of its path relative to ``DIR`` (``/``-separated, UTF-8)
  read as a big-endian integer over ``2**64``. Both splits are ordered by ``u`` (a fixed shuffle,
  so the validation split, the last ``data.validation_size`` training examples, mixes the
  classes). A file's split depends on its path alone: adding files moves no other file.
* **Cache.** The images are decoded once into ``images.npy`` (uint8 ``[N, H, W, C]``, in ``u``
  order), ``labels.npy``, ``u.npy`` and ``info.json``, in ``CACHE/<key>/`` with ``CACHE`` =
  ``data.cache_dir`` or ``DIR/.jaxvae-cache``. The key is a SHA-256 over the listing (each
  file's relative path, size and modification time), ``image_size`` and ``channels``, so a changed
  folder decodes again and an unchanged one reads the cache (memory-mapped). Old keys are left.
* **Bad files.** A file PIL cannot decode is skipped with one warning line naming it (on every
  load, from the cache's record); no image at all is an error.
* **Streaming.** A folder whose training images take more than ``data.stream_threshold_mb`` as
  float32 (``data.stream="auto"``), or any folder with ``data.stream="always"``, streams as TFDS
  data does (:class:`ArrayRecords` in a :class:`~jaxvae.data.tfds.RecordColumn`): from its cache
  when one is there, else from its files, each decoded when its batch is read
  (:class:`~jaxvae.data.folder_records.FileImages`), so the first batch waits for one pass over
  the files' headers (PIL opens each: the channel count, the unreadable files), not for the
  decoding; no cache is written then, and the test and validation images are decoded at the
  start. The images and their order are the cache's. A file that opens but does not decode is
  an error when its batch comes (the cache skips it).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
import sys
from typing import Any

import numpy as np
import PIL.Image

from jaxvae import io
from jaxvae.data.base import Dataset, Source, SourceRequest, register, to_unit_float
from jaxvae.data.folder_records import ArrayRecords, FileImages, decode_one, why
from jaxvae.data.images import GREY_MODES
from jaxvae.data.tfds import RecordColumn

EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_IMAGE_SIZE = 64
CACHE_NAME = ".jaxvae-cache"
CACHE_VERSION = 1
CACHE_FILES = ("images.npy", "labels.npy", "u.npy", "info.json")


def _warn(message: str) -> None:
    """One warning line on stderr (the run goes on)."""
    print(f"jaxvae: warning: {message}", file=sys.stderr, flush=True)


def split_fraction(relpath: str) -> float:
    """``u`` in ``[0, 1)`` of a file's relative path: the first 8 bytes of its SHA-256 / 2**64."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def list_folder(data_dir: str) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
    """The images of ``data_dir``: ``([(relative path, label)], class_names)``, paths sorted.

    Raises:
      ValueError: If ``data_dir`` is not a directory or holds no image file.
    """
    if not data_dir or not os.path.isdir(data_dir):
        raise ValueError(
            f"data.data_dir={data_dir!r} is not a directory; the folder dataset expects a "
            "directory of PNG/JPEG images (class sub-folders give labels)."
        )

    def images_below(top: str) -> list[str]:
        found = []
        for root, dirs, files in os.walk(os.path.join(data_dir, top)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in files:
                if f.lower().endswith(EXTENSIONS) and not f.startswith("."):
                    found.append(os.path.relpath(os.path.join(root, f), data_dir))
        return sorted(p.replace(os.sep, "/") for p in found)

    entries = sorted(os.listdir(data_dir))
    classes = tuple(e for e in entries if not e.startswith(".") and _isdir(data_dir, e))
    top = [e for e in entries if e.lower().endswith(EXTENSIONS) and not _isdir(data_dir, e)]
    if classes:
        if top:
            _warn(
                f"ignored {len(top)} image(s) directly in {data_dir!r} (with class sub-folders, "
                "only their images are read)"
            )
        files = [(p, label) for label, c in enumerate(classes) for p in images_below(c)]
    else:
        files = [(p, 0) for p in sorted(top)]
    if not files:
        raise ValueError(
            f"data.data_dir={data_dir!r} holds no image; expected files ending in "
            f"{', '.join(EXTENSIONS)} (in class sub-folders, or directly in it)."
        )
    return files, classes


def _isdir(data_dir: str, name: str) -> bool:
    return os.path.isdir(os.path.join(data_dir, name))


def _cache_key(data_dir: str, files, request: SourceRequest) -> str:
    digest = hashlib.sha256()
    digest.update(repr((CACHE_VERSION, _size(request), request.channels)).encode())
    for relpath, label in files:
        st = os.stat(os.path.join(data_dir, relpath))
        digest.update(f"\n{relpath}\t{label}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _size(request: SourceRequest) -> int:
    return request.image_size or DEFAULT_IMAGE_SIZE


_SCANNED: dict[str, tuple] = {}  # the newest header pass, by cache key (a start reads it twice)


def _scan(data_dir: str, files, request: SourceRequest):
    """The header pass: every file opened (not decoded) by PIL. Returns ``(order, channels,
    skipped)``: ``[(u, index in files)]`` of the files that open, in ``u`` order, the channel
    count, and ``{path: why}`` of those that do not."""
    key = _cache_key(data_dir, files, request)
    if key in _SCANNED:
        return _SCANNED[key]
    paths = [os.path.join(data_dir, p) for p, _ in files]
    skipped: dict[str, str] = {}

    def mode(path: str) -> str | None:
        try:
            with PIL.Image.open(path) as image:
                return image.mode
        except (OSError, ValueError, SyntaxError) as e:
            skipped[path] = why(e)
            return None

    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        modes = list(pool.map(mode, paths))
    channels = request.channels
    if not channels:
        grey = sum(m in GREY_MODES for m in modes if m is not None)
        channels = 1 if grey * 2 > sum(m is not None for m in modes) else 3
    order = sorted(
        (split_fraction(p), i) for i, (p, _) in enumerate(files) if paths[i] not in skipped
    )
    _SCANNED.clear()
    _SCANNED[key] = order, channels, dict(skipped)
    return _SCANNED[key]


def _decode(data_dir: str, files, request: SourceRequest, out_dir: str) -> None:
    """Decodes ``files`` into the cache files in ``out_dir`` (a fresh directory)."""
    paths = [os.path.join(data_dir, p) for p, _ in files]
    workers = min(8, os.cpu_count() or 1)
    order, channels, skipped = _scan(data_dir, files, request)
    skipped = dict(skipped)
    size = _size(request)
    images = np.lib.format.open_memmap(
        os.path.join(out_dir, "images.npy"), "w+", np.uint8, (len(order), size, size, channels)
    )

    def decode(i: int) -> np.ndarray | None:
        try:
            return decode_one(paths[i], size, channels)
        except (OSError, ValueError, SyntaxError) as e:
            skipped[paths[i]] = why(e)
            return None

    kept: list[tuple[float, int]] = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for (u, i), array in zip(order, pool.map(decode, [i for _, i in order]), strict=True):
            if array is not None:
                images[len(kept)] = array
                kept.append((u, i))
    images.flush()
    del images
    if len(kept) < len(order):  # a file that opened but did not decode: drop the unused rows
        full = np.load(os.path.join(out_dir, "images.npy"), mmap_mode="r")
        np.save(os.path.join(out_dir, "images.tmp.npy"), full[: len(kept)])
        del full
        os.replace(os.path.join(out_dir, "images.tmp.npy"), os.path.join(out_dir, "images.npy"))
    np.save(os.path.join(out_dir, "labels.npy"), np.array([files[i][1] for _, i in kept], np.int32))
    np.save(os.path.join(out_dir, "u.npy"), np.array([u for u, _ in kept], np.float64))
    io.write_json(
        os.path.join(out_dir, "info.json"), _info(data_dir, files, kept, channels, size, skipped)
    )


def _info(data_dir, files, kept, channels: int, size: int, skipped) -> dict[str, Any]:
    return {
        "files": [files[i][0] for _, i in kept],
        "channels": channels,
        "image_size": size,
        "skipped": {os.path.relpath(p, data_dir): r for p, r in sorted(skipped.items())},
    }


def _undecoded(data_dir: str, files, request: SourceRequest):
    """What :func:`_open_cache` gives, from the header pass alone: the images as
    :class:`FileImages`."""
    order, channels, skipped = _scan(data_dir, files, request)
    size = _size(request)
    images = FileImages([os.path.join(data_dir, files[i][0]) for _, i in order], size, channels)
    labels = np.array([files[i][1] for _, i in order], np.int32)
    u = np.array([u for u, _ in order], np.float64)
    return images, labels, u, _info(data_dir, files, order, channels, size, skipped)


def _cache_path(data_dir: str, files, request: SourceRequest) -> tuple[str, str, bool]:
    """``(cache root, this cache's directory, whether it is complete)``."""
    root = request.cache_dir or os.path.join(data_dir, CACHE_NAME)
    path = os.path.join(root, _cache_key(data_dir, files, request))
    return root, path, all(os.path.isfile(os.path.join(path, f)) for f in CACHE_FILES)


def _cache(data_dir: str, files, request: SourceRequest) -> str:
    """The cache directory of this listing and these options, decoded first when absent."""
    root, path, complete = _cache_path(data_dir, files, request)
    if complete:
        return path
    try:
        os.makedirs(root, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        _decode(data_dir, files, request, tmp)
        try:
            os.rename(tmp, path)
        except OSError:  # another process wrote the same cache first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        raise ValueError(
            f"Could not write the decoded images of {data_dir!r} to {root!r} ({why(e)}); "
            "expected a writable cache directory: set data.cache_dir."
        ) from e
    return path


def _open_cache(path: str):
    images = np.load(os.path.join(path, "images.npy"), mmap_mode="r")
    labels = np.load(os.path.join(path, "labels.npy"))
    u = np.load(os.path.join(path, "u.npy"))
    return images, labels, u, io.read_json(os.path.join(path, "info.json"))


def _check_request(request: SourceRequest) -> None:
    if request.channels not in (0, 1, 3):
        raise ValueError(f"data.channels={request.channels!r}; expected 0 (majority), 1 or 3.")
    if request.image_size < 0:
        raise ValueError(f"data.image_size={request.image_size!r}; expected >= 0 (0 = 64).")
    if not 0.0 < request.test_fraction < 1.0:
        raise ValueError(f"data.test_fraction={request.test_fraction!r}; expected in (0, 1).")


def _opened(request: SourceRequest, *, decode: bool = True):
    """The folder's images (the cache, memory-mapped; without ``decode`` and without a cache,
    :class:`FileImages`), labels, test count, class names and info."""
    _check_request(request)
    data_dir = request.data_dir
    files, classes = list_folder(data_dir)
    if decode or _cache_path(data_dir, files, request)[2]:
        images, labels, u, info = _open_cache(_cache(data_dir, files, request))
    else:
        images, labels, u, info = _undecoded(data_dir, files, request)
    if not len(labels):
        raise ValueError(f"data.data_dir={data_dir!r}: none of its {len(files)} images decoded.")
    num_test = int(np.searchsorted(u, request.test_fraction))
    if num_test in (0, len(labels)):
        raise ValueError(
            f"data.test_fraction={request.test_fraction} splits the {len(labels)} images of "
            f"{data_dir!r} into {len(labels) - num_test} training and {num_test} test images; "
            "expected both splits non-empty (more images, or another fraction)."
        )
    return images, labels, num_test, classes, info


def load_folder(request: SourceRequest) -> Dataset:
    """Loads the image folder ``request.data_dir`` (see the module's rules).

    Raises:
      ValueError: A missing or empty folder, bad options, or an unwritable cache.
    """
    decode = request.with_train and not request.lazy_train  # else only what is read is decoded
    images, labels, num_test, classes, info = _opened(request, decode=decode)
    for relpath, reason in info["skipped"].items():
        _warn(f"skipped unreadable image {os.path.join(request.data_dir, relpath)!r} ({reason})")
    test = slice(0, num_test if request.limit_test <= 0 else min(num_test, request.limit_test))
    n_train = len(labels) - num_test
    if request.limit_train > 0:
        n_train = min(n_train, request.limit_train)
    train = slice(num_test, num_test + (n_train if request.with_train else 0))
    test_images = to_unit_float(np.asarray(images[test]))
    if request.lazy_train:
        records = ArrayRecords(images[num_test:], labels[num_test:])
        shape = images.shape[1:]
        train_images = RecordColumn(records, "image", 0, n_train, shape)
        train_labels = RecordColumn(records, "label", 0, n_train, ())
    else:
        train_images, train_labels = np.asarray(images[train]), labels[train]
    protocol = {
        "source": f"image folder {request.data_dir!r}: {len(info['files'])} images "
        f"(and {len(info['skipped'])} unreadable, skipped), {len(classes)} class sub-folders, centre crop to "
        f"the short side, PIL bilinear resize to {info['image_size']}, {info['channels']} "
        f"channel(s); test: the files with u < {request.test_fraction}, u = "
        "int.from_bytes(sha256(relative path).digest()[:8], 'big') / 2**64; both splits in u order",
    }
    return Dataset(
        name="folder",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=labels[test].astype(np.int32),
        class_names=classes,
        protocol=protocol,
    )


def _train_records(request: SourceRequest) -> tuple[int, tuple[int, int, int]]:
    images, labels, num_test, _, _ = _opened(request, decode=False)
    return len(labels) - num_test, tuple(int(x) for x in images.shape[1:])


register("folder", Source(load=load_folder, train_records=_train_records))
