"""Where jaxvae's own files live: a local directory or an object store (``gs://bucket/path``).

Every file that jaxvae itself reads or writes in a run or study directory (config.json, run.json,
metrics.jsonl, summary.json, eval.json, pictures, TensorBoard events, study state, locks, the
report) goes through these functions; Orbax and TensorStore reach the checkpoints on their own.

A local path is handled with ``os`` as it always was: atomic writes by rename (in
:func:`jaxvae.io.write_atomic`), exclusive creation by ``O_EXCL`` or a hard link, fsync.

A URL (``scheme://...``) goes to the fsspec filesystem of its scheme (``gs://``: gcsfs, the
backend etils.epath, hence Orbax, uses). An object store has no directories, no rename and no
append, so:

- one object write is atomic: a reader sees the old object or the new one, never a part;
- exclusive creation is a conditional write (GCS: ``ifGenerationMatch=0``), which exactly one
  of several writers wins;
- :class:`Appender` keeps a file's whole content in memory and writes it as one object when it
  is flushed (``metrics.jsonl`` and event files);
- :func:`makedirs` does nothing (a "directory" exists while an object is under it);
- :func:`move` copies then deletes, object by object: not atomic;
- a lock's heartbeat rewrites the object (its update time is the heartbeat).

fsspec caches directory listings per process; another process's new objects would then stay
unseen, so the listing cache is turned off for each scheme used here (in fsspec's config, unless
it is set there already: the filesystem etils.epath gives Orbax follows it too).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob as glob_lib
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL (``gs://bucket/key``) rather than a local path."""
    return "://" in os.fspath(path)


def abspath(path: str) -> str:
    """The absolute form of a local path; a URL as it is."""
    return path if is_remote(path) else os.path.abspath(path)


@functools.cache
def _filesystem(scheme: str) -> Any:
    import fsspec  # only for URLs: a local run imports none of it

    fsspec.config.conf.setdefault(scheme, {}).setdefault("use_listings_cache", False)
    if scheme == "gs":  # gcsfs registers both names; etils.epath asks for "gcs"
        fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)
    return fsspec.filesystem(scheme, use_listings_cache=False)


def filesystem(path: str) -> Any:
    """The fsspec filesystem of the URL ``path`` (set up on first use; see the module doc)."""
    return _filesystem(os.fspath(path).split("://", 1)[0])


@contextlib.contextmanager
def _remote(path: str) -> Iterator[Any]:
    """The filesystem of ``path``; a failure of the store's client (no credentials, no bucket, a
    refused request) becomes an ``OSError`` naming ``path``, as a local one would be."""
    try:
        yield filesystem(path)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - a client's own error types: one OSError naming the path
        first = str(e).splitlines()[0] if str(e) else ""
        raise OSError(f"{path}: {type(e).__name__}: {first[:300]}") from e


def _local_or_remote(local, remote):
    """The function of a path that is ``local(path, *args)`` for a local path and ``remote(fs,
    path, *args)`` for a URL (``fs`` its filesystem, the client's errors as :func:`_remote`'s)."""

    def function(path: str, *args: Any) -> Any:
        if not is_remote(path):
            return local(path, *args)
        with _remote(path) as fs:
            return remote(fs, path, *args)

    return function


exists = _local_or_remote(os.path.exists, lambda fs, path: fs.exists(path))
# A local directory; for a URL, a bucket or a prefix with objects under it.
isdir = _local_or_remote(os.path.isdir, lambda fs, path: fs.isdir(path))
# The names in a directory (for a URL: of the objects and prefixes right under it).
listdir = _local_or_remote(
    os.listdir,
    lambda fs, path: [os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)],
)
# The paths matching a pattern (URLs keep their scheme).
glob = _local_or_remote(
    glob_lib.glob, lambda fs, p: [f"{p.split('://', 1)[0]}://{m}" for m in fs.glob(p)]
)
# The content of a file; ``FileNotFoundError`` when there is none.
read_bytes = _local_or_remote(
    lambda path: pathlib.Path(path).read_bytes(), lambda fs, p: fs.cat_file(p)
)
# Moves a file or directory (for URLs: copied object by object, then deleted; not atomic).
move = _local_or_remote(shutil.move, lambda fs, src, dst: fs.mv(src, dst, recursive=True))
# The time a file was last modified (for a URL: the object's update time).
mtime = _local_or_remote(os.path.getmtime, lambda fs, path: fs.modified(path).timestamp())
# Sets a file's modification time to now (for a URL: the object is written again).
touch = _local_or_remote(os.utime, lambda fs, path: fs.pipe_file(path, fs.cat_file(path)))


def makedirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``; nothing for a URL (object stores have no
    directories)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    """Removes a file; ``FileNotFoundError`` when there is none."""
    if not is_remote(path):
        os.remove(path)
        return
    with _remote(path) as fs:
        if not fs.exists(path):
            raise FileNotFoundError(path)
        fs.rm_file(path)


def rmtree(path: str) -> None:
    """Removes a directory and everything under it, ignoring errors."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(OSError), _remote(path) as fs:
        fs.rm(path, recursive=True)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local file holding ``path``'s content, for a library that opens local files only (an
    experiment tracker's picture): ``path`` itself when it is local, else a temporary copy under
    the same file name, removed when the ``with`` block ends."""
    if not is_remote(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="jaxvae-copy-") as tmp:
        local = os.path.join(tmp, os.path.basename(path.rstrip("/")))
        with open(local, "wb") as f:
            f.write(read_bytes(path))
        yield local


def read_text(path: str) -> str:
    """The text of a file (locally read as ``open(path)`` reads it)."""
    if not is_remote(path):
        with open(path) as f:
            return f.read()
    return read_bytes(path).decode()


def put(path: str, data: bytes, *, exclusive: bool = False) -> bool:
    """Writes the object ``path`` in one request (atomic on an object store); with ``exclusive``,
    only when it does not exist (a conditional write). Returns whether it was written. For local
    paths use :func:`jaxvae.io.write_atomic`, which calls this for URLs."""
    with _remote(path) as fs:
        try:
            fs.pipe_file(path, data, mode="create" if exclusive else "overwrite")
        except FileExistsError:
            return False
        except FileNotFoundError:  # an upload finds nothing only without its bucket
            bucket = path.split("://", 1)[1].split("/", 1)[0]
            raise FileNotFoundError(errno.ENOENT, f"no bucket {bucket!r}", path) from None
    return True


def create(path: str, data: str) -> bool:
    """Creates the file ``path`` holding ``data`` unless it exists; returns whether it did.

    Locally ``O_CREAT | O_EXCL`` (readers may see it empty for a moment); for a URL a conditional
    write of the whole object.
    """
    if is_remote(path):
        return put(path, data.encode(), exclusive=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(data)
    return True


class Appender:
    """A file written by appending (``metrics.jsonl``, an event file).

    Locally an open file: :meth:`write` appends, :meth:`flush` hands the data to the OS, and
    ``flush(sync=True)`` also fsyncs. For a URL (objects cannot be appended to) the whole content
    stays in memory and is written as one object by ``flush(sync=True)``, by :meth:`close`, and by
    a plain :meth:`flush` once ``every_s`` seconds have passed since the last write of it.

    Args:
      fresh: start it empty (else append to what it holds).
      every_s: for a URL, the longest time a plain flush leaves written data unsent.
    """

    def __init__(self, path: str, *, fresh: bool, every_s: float = 30.0):
        self.path, self.every_s = path, every_s
        self._remote = is_remote(path)
        self._file = None
        if not self._remote:
            self._file = open(path, "wb" if fresh else "ab")
            return
        self._data = bytearray()
        if not fresh:
            with contextlib.suppress(FileNotFoundError):
                self._data += read_bytes(path)
        self._sent = -1  # bytes of _data already in the object (-1: the object is not written)
        self._last = time.monotonic()
        if fresh:
            self._send()

    def write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
        elif self._remote:
            self._data += data

    def _send(self) -> None:
        put(self.path, bytes(self._data))
        self._sent, self._last = len(self._data), time.monotonic()

    def flush(self, *, sync: bool = False) -> None:
        if self._file is not None:
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        elif self._remote and self._sent != len(self._data):
            if sync or time.monotonic() - self._last >= self.every_s:
                self._send()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._remote:
            self.flush(sync=True)
            self._remote = False
