"""Files: atomic writes, JSON and JSON lines, flat keys, and user Python files.

Plain Python (``json``, ``os``): the run directory (:mod:`jaxvae.workdir`), the study directory
(:mod:`jaxvae.studies.state`), the config layer and the readers of ``metrics.jsonl`` all go through
these, so each file is written and read one way. A path may be a URL (``gs://...``): it is then
read and written through :mod:`jaxvae.storage`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import traceback
from collections.abc import Mapping
from typing import Any

from jaxvae import storage


def write_figure(path: str, fig: Any, **savefig: Any) -> str:
    """Writes a matplotlib figure as a PNG through :func:`write_atomic` (local or ``gs://``)."""
    import io as io_lib

    png = io_lib.BytesIO()
    fig.savefig(png, format="png", **savefig)
    write_atomic(path, png.getvalue())
    return path


def write_atomic(path: str, data: str | bytes, *, exclusive: bool = False) -> bool:
    """Writes ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    The data goes to a temporary file of this process beside ``path``, reaches the disk
    (``fsync``) and is renamed over ``path`` (``os.replace``). On any failure the temporary file
    is removed and ``path`` is left as it was.

    Args:
      path: the file to write.
      data: its new content (text is written as UTF-8).
      exclusive: only create ``path``, never replace it: the temporary file is hard-linked to
        ``path``, which fails when ``path`` exists, so exactly one of several processes that
        create it at once writes it.

    A URL (``gs://...``) is written as one object, which is atomic by itself; ``exclusive`` is
    then a conditional write (:func:`jaxvae.storage.put`).

    Returns:
      Whether ``path`` was written (``False`` only when ``exclusive`` and it existed).
    """
    data = data.encode() if isinstance(data, str) else data
    if storage.is_remote(path):
        return storage.put(path, data, exclusive=exclusive)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # unique across processes, hosts
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            (os.link if exclusive else os.replace)(tmp, path)
        except FileExistsError:  # exclusive, and path exists: a link never replaces a file
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def dumps(obj: Any) -> str:
    """The JSON text of a file this package writes: indented, keys sorted, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically (:func:`write_atomic`)."""
    write_atomic(path, dumps(obj))


def read_json(path: str) -> Any:
    """The JSON value in ``path``.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: ``path`` cannot be read or is not JSON (the message names ``path``).
    """
    try:
        return json.loads(storage.read_text(path))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read ({e})") from None


def write_jsonl(path: str, records: list[Mapping[str, Any]]) -> None:
    """Writes ``records`` as JSON lines (keys sorted) to ``path`` atomically."""
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn last line (no newline, not JSON) is left out.

    A process killed while it appends a line leaves that line cut short and without its newline;
    it is the only damage tolerated. Blank lines are skipped.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: a complete line (one ending in a newline) is not a JSON object; the message
        names the file and the line number (``path:N``).
    """
    # the last element is what follows the last newline
    lines = storage.read_text(path).split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline yet: torn by a kill, or still being written
                break
            raise ValueError(f"{path}:{number} is not a JSON line: {line[:80]!r}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} is not a JSON object: {line[:80]!r}")
        records.append(record)
    return records


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of nested mappings; lists become tuples.

    Tuples and lists are one kind of value here, so that a config (tuples) and its JSON (lists)
    flatten to equal dicts.
    """
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def error_line(error: BaseException, path: str) -> str:
    """``TypeName: message (line N)``: ``error`` in one line, with the line of the file ``path``
    where it was raised (when it was raised there). A ``ValueError`` (jaxvae's way of naming a
    bad value) is its message alone."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    for frame, number in traceback.walk_tb(error.__traceback__):
        if os.path.abspath(frame.f_code.co_filename) == os.path.abspath(path):
            line = number
    message = str(error).splitlines()[0] if str(error) else ""
    where = f" (line {line})" if line else ""
    if isinstance(error, ValueError) and message:
        return f"{message}{where}"
    return f"{type(error).__name__}: {message}{where}"


def call_python_file(path: str, function: str, *, module_name: str, what: str) -> Any:
    """Imports the Python file ``path`` as ``module_name`` and returns ``function()`` of it.

    Args:
      path: the file (a config file, a study file).
      function: the name of the function to call, e.g. ``"get_config"``.
      module_name: the name the module is imported under (it is not added to ``sys.modules``).
      what: what the file is, for messages: ``"config file"``.

    Raises:
      ValueError: ``path`` is not a file, has no ``function``, or raises anything while it is
        imported or called: one line, ``{what} {path!r}: TypeName: message (line N)``.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - a user's file may raise anything: one clear line
        raise ValueError(f"{what} {path!r}: {error_line(e, path)}") from None
    if not callable(getattr(module, function, None)):
        raise ValueError(f"{what} {path!r} has no {function}()")
    try:
        return getattr(module, function)()
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{what} {path!r}: {error_line(e, path)}") from None
