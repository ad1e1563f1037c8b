"""TensorBoard event files in the run directory, written without TensorFlow (by tensorboardX).

``tensorboard --logdir runs/`` then shows every run under ``runs/``: the training terms per log step,
the test metrics per evaluation, the picture grids, and the config as text and as hparams (the
HParams tab compares runs by their config values and scalars).

Resuming from the checkpoint at step ``S`` (``EventLog(..., resume_step=S)``) must not show what the
killed attempt logged after ``S``. A purge marker alone (tensorboardX's ``purge_step``: a
``SessionLog.START`` event) does not do it: TensorBoard's default loader (the Rust data server)
ignores it and only replaces points of a series that is logged again at the same steps, so an
evaluation or a picture past ``S`` would stay. So, as :class:`jaxvae.workdir.MetricsLog` does with
``metrics.jsonl``, the earlier event files are rewritten without their events past ``S`` (a record
torn by the kill goes too), and the new file also starts with the purge marker at ``S + 1``, for a
TensorBoard already running that loaded the orphaned events through the Python loader.

The event files are written here (TFRecords of ``Event`` protos, as tensorboardX's
``EventsWriter`` writes them) through :class:`jaxvae.storage.Appender`, so a run directory on an
object store (``gs://...``) gets them too: there each flush writes the file as one object.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from tensorboardX import summary as tbx_summary
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.record_writer import masked_crc32c

from jaxvae import io, storage

CONFIG_TAG = "config"  # the text summary is stored as "config/text_summary"
_CONFIG_TAGS = (CONFIG_TAG + "/text_summary", "_hparams_/session_start_info")
_EVENT_GLOB = "events.out.tfevents.*"


def event_files(logdir: str) -> list[str]:
    """The event files in ``logdir``, in the order TensorBoard reads them (by name)."""
    return sorted(storage.glob(os.path.join(logdir, _EVENT_GLOB)))


def _records(data: bytes) -> list[bytes]:
    """The whole TFRecords of an event file's bytes (each with its length, data and CRCs).

    A record cut short by a kill ends the list. CRCs are not checked: the records are copied as they
    are, and TensorBoard's readers check them.
    """
    records, pos = [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        end = pos + 12 + length + 4
        if end > len(data):
            break
        records.append(data[pos:end])
        pos = end
    return records


def _rewrite(path: str, keep: Callable[[Event], bool]) -> None:
    """Rewrites the event file ``path`` (atomically) with only the events ``keep`` accepts."""
    records = _records(storage.read_bytes(path))
    kept = [record for record in records if keep(Event.FromString(record[12:-4]))]
    io.write_atomic(path, b"".join(kept))


def _hparam(value: Any) -> bool | int | float | str:
    """A config value as an hparam: bools and numbers stay, anything else becomes its JSON text."""
    value = value.item() if isinstance(value, np.generic) else value
    return value if isinstance(value, bool | int | float | str) else json.dumps(value, default=str)


def _record(data: bytes) -> bytes:
    """One TFRecord: the length, its masked CRC32C, the data, the data's masked CRC32C."""
    header = struct.pack("<Q", len(data))
    crc = lambda b: struct.pack("<I", masked_crc32c(b))
    return header + crc(header) + data + crc(data)


class EventLog:
    """Scalars, images and the config of one run, as TensorBoard event files in ``logdir``.

    A disabled log (processes other than 0) writes nothing and creates no file. Events are written
    synchronously through tensorboardX's event-file writer (a few hundred bytes per scalar, no
    background thread) and reach the disk at most ``flush_secs`` after they were written, on
    :meth:`flush` and on :meth:`close`. Flushing when a checkpoint is saved leaves no gap in the
    curves when the run is killed and resumed from that checkpoint.

    Args:
      logdir: the run directory; created if needed.
      resume_step: the checkpoint step this attempt resumes from, None for a new run. What earlier
        attempts logged at steps after it is removed from their event files; a new run removes
        the event files it finds (as :class:`jaxvae.workdir.MetricsLog` empties ``metrics.jsonl``).
      flush_secs: the longest time a written event waits in memory.
    """

    def __init__(
        self,
        logdir: str,
        *,
        resume_step: int | None = None,
        enabled: bool = True,
        flush_secs: float = 30.0,
    ):
        self.flush_secs = flush_secs
        self._out, self._earlier = None, []
        if not enabled:
            return
        if resume_step is not None and resume_step < 0:
            raise ValueError(f"resume_step must be >= 0 or None, got {resume_step}")
        storage.makedirs(logdir)
        self._earlier = event_files(logdir)
        if resume_step is None:  # a new run: like metrics.jsonl, nothing earlier stays
            for path in self._earlier:
                storage.remove(path)
            self._earlier = []
        for path in self._earlier:
            _rewrite(path, lambda e: e.step <= resume_step or e.HasField("file_version"))
        # Event files are named events.out.tfevents.<seconds>.<host><suffix> and read in name order.
        # Two attempts in the same second would share a name (and the second would truncate the
        # first): the suffix numbers the files, keeping the order. The file is byte for byte what
        # tensorboardX's ``EventsWriter`` writes: a first event with the file version, then each
        # event as a TFRecord.
        name = f"events.out.tfevents.{str(time.time())[:10]}.{socket.gethostname()}"
        path = os.path.join(logdir, f"{name}.{len(self._earlier):03d}")
        self._out = storage.Appender(path, fresh=True)
        self._last_flush = time.monotonic()
        self._write(Event(file_version="brain.Event:2"))
        # A session start, as tensorboardX's SummaryWriter(purge_step=...) writes it: TensorBoard's
        # Python loader drops what it holds at steps >= this one when a run's second start comes.
        # A fresh run writes one at step 0, so that the resumed run's start counts as the second.
        start = 0 if resume_step is None else resume_step + 1
        if resume_step is not None:
            self._write(Event(step=start, file_version="brain.Event:2"))
        self._write(Event(step=start, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def _write(self, event: Event) -> None:
        event.wall_time = time.time()
        self._out.write(_record(event.SerializeToString()))
        if time.monotonic() - self._last_flush >= self.flush_secs:
            self.flush()

    def _summary(self, step: int, summary) -> None:
        self._write(Event(summary=summary, step=int(step)))

    def scalars(self, step: int, values: Mapping[str, Any], *, prefix: str = "") -> None:
        """Writes each ``prefix + name: value`` (a real number; stored as float32) at ``step``."""
        if self._out is None:
            return
        for name, value in values.items():
            arr = np.asarray(value)
            if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
                raise ValueError(
                    f"scalar {prefix}{name!r} must be a real number, got {type(value).__name__} "
                    f"of shape {arr.shape}"
                )
            self._summary(step, tbx_summary.scalar(prefix + name, float(arr)))

    def record(self, record: Mapping[str, Any]) -> None:
        """Writes a ``metrics.jsonl`` record at its ``step``: ``test_*`` figures as ``test/*``, the
        training terms as ``train/*`` (``epoch`` and values that are not numbers are left out)."""
        number = lambda v: isinstance(v, int | float | np.number) and not isinstance(v, bool)
        tag = lambda k: f"test/{k[5:]}" if k.startswith("test_") else f"train/{k}"
        values = {tag(k): v for k, v in record.items() if k not in ("step", "epoch") and number(v)}
        self.scalars(int(record["step"]), values)

    def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Writes each picture (uint8 ``[H, W]`` or ``[H, W, C]``, C in 1, 3, 4) at ``step`` as PNG."""
        if self._out is None:
            return
        for name, image in images.items():
            image = np.asarray(image)
            image = image[..., None] if image.ndim == 2 else image
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
                raise ValueError(
                    f"image {name!r} must be uint8 [H, W] or [H, W, C] with C in 1, 3, 4, got "
                    f"{image.dtype} of shape {np.shape(images[name])}"
                )
            self._summary(step, tbx_summary.image(name, image, dataformats="HWC"))

    def config(self, config: Mapping[str, Any]) -> None:
        """Writes the run's config as text (indented JSON) and as hparams, at step 0.

        On a resumed run this replaces the config that earlier attempts wrote, so TensorBoard shows
        one config per run: the one it continued with (``train.epochs`` may have grown).
        """
        if self._out is None:
            return
        for path in self._earlier:  # (none for a new run)
            _rewrite(path, lambda e: not any(v.tag in _CONFIG_TAGS for v in e.summary.value))
        config = dict(config)
        # The config as indented JSON: a Markdown code block in TensorBoard's Text tab.
        body = json.dumps(config, indent=2, sort_keys=True, default=str).splitlines()
        self._summary(0, tbx_summary.text(CONFIG_TAG, "\n".join("    " + s for s in body)))
        flat = {k: _hparam(v) for k, v in io.flatten(config).items() if v is not None}
        # Only the session's start info: TensorBoard then builds the HParams table from every run's
        # values and scalar tags (with an experiment summary in each run it would pick one of them).
        _, session_start, _ = tbx_summary.hparams(flat, {})
        self._summary(0, session_start)

    def flush(self) -> None:
        """Writes what is buffered to the event file."""
        if self._out is not None:
            self._out.flush(sync=True)
            self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._out is not None:
            self.flush()
            self._out.close()
            self._out = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
