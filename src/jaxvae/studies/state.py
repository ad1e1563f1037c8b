"""The study directory: its layout, ``study.json``, and the state of each run.

::

    DIR/study.json               the expanded study (runs.canonical); written once, atomically
    DIR/runs/<run>/              each run: an ordinary jaxvae run directory (config.json, summary.json, ...)
    DIR/state/<run>.lock         held while a process trains the run: host, pid, start; its mtime is
                                 a heartbeat (on an object store: the object's update time, the
                                 object written again)
    DIR/state/<run>.failed.json  the error of the run's last attempt, if it failed
    DIR/report/                  what ``jaxvae study report`` writes

A run is *done* when its directory holds a ``summary.json`` of its own config, *running* while a
live process holds its lock, *failed* when its last attempt left an error, else *pending* (a run
directory with checkpoints resumes from them). A lock left by a killed process is not live: on its
own host the process is gone; from another host the heartbeat is older than :data:`STALE_S`.

DIR may be a URL (``gs://bucket/path``): every file here goes through :mod:`jaxvae.storage`. A
lock is then created by a conditional write (``ifGenerationMatch=0``), which one process wins, as
``O_EXCL`` decides locally; ``study.json`` likewise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import threading
import time
import traceback
from typing import Any

import psutil

from jaxvae import io, layout, storage

STUDY = "study.json"
RUNS = "runs"
STATE = "state"
REPORT = "report"
HEARTBEAT_S = 10.0  # a holder touches its lock this often
STALE_S = 120.0  # a lock of another host whose heartbeat is older than this is not live

DONE, RUNNING, FAILED, PENDING = "done", "running", "failed", "pending"


def run_dir(workdir: str, name: str) -> str:
    return os.path.join(workdir, RUNS, name)


def lock_path(workdir: str, name: str) -> str:
    return os.path.join(workdir, STATE, f"{name}.lock")


def failed_path(workdir: str, name: str) -> str:
    return os.path.join(workdir, STATE, f"{name}.failed.json")


def read_study(workdir: str) -> dict[str, Any]:
    path = os.path.join(workdir, STUDY)
    if not storage.isdir(workdir):
        raise ValueError(f"study directory {workdir!r} does not exist")
    if not storage.exists(path):
        raise ValueError(f"{workdir!r} holds no study ({STUDY} is missing)")
    return io.read_json(path)  # a damaged file is a ValueError naming it


def _difference(saved: dict[str, Any], new: dict[str, Any]) -> str:
    """What makes two study identities two studies, in a few words; ``""`` when they are one
    study: equal, but that a config key added since the directory was made may appear at its
    default (:func:`jaxvae.config.config_differences`)."""
    from jaxvae import config as config_lib

    for key in ("name", "overrides", "seeds"):
        if saved.get(key) != new.get(key):
            return f"{key}: {saved.get(key)!r} there, {new.get(key)!r} here"
    old_runs = {r["name"]: r for r in saved.get("runs", [])}
    new_runs = {r["name"]: r for r in new.get("runs", [])}
    added, removed = sorted(new_runs.keys() - old_runs), sorted(old_runs.keys() - new_runs)
    if added or removed:
        changed = {"new runs": added, "no runs": removed}
        return "; ".join(f"{what} {names[:3]}" for what, names in changed.items() if names)
    for name, run in new_runs.items():
        old = old_runs[name]
        keys = [k for k in set(old) | set(run) if k != "config" and old.get(k) != run.get(k)]
        keys += [f"config.{k}" for k in config_lib.config_differences(old["config"], run["config"])]
        if keys:
            k = min(keys)
            was, now = io.flatten(old).get(k, "(none)"), io.flatten(run).get(k)
            return f"run {name}: {k} is {was!r} there, {now!r} here"
    rest = lambda identity: {k: v for k, v in identity.items() if k != "runs"}
    if rest(saved) != rest(new) or list(old_runs) != list(new_runs):
        return "the variants differ"
    return ""


def init_study_dir(workdir: str, study_json: dict[str, Any]) -> bool:
    """Makes ``workdir`` the directory of this study, or checks that it already is.

    Several processes (shards) may call this at the same time: ``study.json`` is created with a
    hard link, which exactly one of them wins, and the others compare with what it wrote. When
    only the report settings differ, ``study.json`` takes the new ones.

    Returns:
      Whether the directory held this study already.

    Raises:
      ValueError: ``workdir`` holds another study, or is a non-empty directory without a study;
        nothing is changed then.
    """
    # Compare through JSON text, so that tuples and lists are the same.
    study_json = json.loads(json.dumps(study_json))
    path = os.path.join(workdir, STUDY)
    if storage.isdir(workdir) and not storage.exists(path):
        stray = [n for n in storage.listdir(workdir) if not n.startswith(STUDY)]
        if stray and not storage.exists(path):  # (another shard may have just made it)
            raise ValueError(f"{workdir!r} is not empty and holds no {STUDY}; use a new --workdir")
    try:
        storage.makedirs(workdir)
    except OSError as e:
        raise ValueError(f"study directory {workdir!r} cannot be made: {e.strerror or e}") from None
    existed = True
    if not storage.exists(path):  # of several shards starting at once, one creates it
        existed = not io.write_atomic(path, io.dumps(study_json), exclusive=True)
    saved = read_study(workdir)
    if why := _difference(saved.get("identity", {}), study_json["identity"]):
        raise ValueError(f"{workdir!r} holds a different study ({why}); use a new --workdir")
    if saved.get("report") != study_json["report"]:
        io.write_json(path, study_json)
    for sub in (RUNS, STATE):
        storage.makedirs(os.path.join(workdir, sub))
    return existed


# --- locks -------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _start(pid: int) -> tuple[float, float | None] | None:
    """When process ``pid`` started: ``(seconds since the epoch, seconds since boot)``, or
    ``None`` when it is gone. The first is for people and moves with the wall clock (an NTP step,
    a VM's clock sync: a lock once judged stale because of that was taken from a live process);
    the second is the kernel's own count since boot, which never moves (``None`` off Linux)."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time(), _since_boot(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _since_boot(pid: int) -> float | None:
    """Linux: the start of ``pid`` in seconds since boot (``/proc/<pid>/stat``'s starttime, in
    clock ticks); ``None`` elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after the command, which may hold spaces
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of the whole line
    except (OSError, IndexError, ValueError):
        return None


def _same_process(info: dict[str, Any]) -> bool:
    """Whether the process a lock names on this host is alive, and is that process, not a later
    one that reuses its pid."""
    if (now := _start(int(info.get("pid", -1)))) is None:
        return False
    wall, since_boot = now
    if since_boot is not None and info.get("process_since_boot") is not None:
        return abs(since_boot - info["process_since_boot"]) < 0.05  # clock ticks: exact
    return abs(wall - info.get("process_start", wall)) <= 2.0


def lock_holder(path: str) -> dict[str, Any] | None:
    """Who holds the lock at ``path``, or ``None`` when nobody live does."""
    try:
        mtime = storage.mtime(path)
        text = storage.read_text(path)
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:  # being written by its holder right now
        return {"host": "?", "pid": None} if time.time() - mtime < STALE_S else None
    if info.get("host") == socket.gethostname():
        return info if _same_process(info) else None
    return info if time.time() - mtime < STALE_S else None


class RunLock:
    """Holds ``DIR/state/<run>.lock`` while this process trains the run, with a heartbeat.

    ``acquire()`` is False when a live process holds it; a stale lock is taken over.
    """

    def __init__(self, path: str):
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._text: str | None = None  # what this lock wrote: release removes only that

    def acquire(self) -> bool:
        for _ in range(2):
            wall, since_boot = _start(os.getpid()) or (None, None)
            info = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": wall}
            info |= {"process_since_boot": since_boot, "started": _now()}
            info["token"] = secrets.token_hex(8)
            self._text = json.dumps(info)
            if not storage.create(self.path, self._text):
                if lock_holder(self.path) is not None:
                    return False
                with contextlib.suppress(FileNotFoundError):
                    storage.remove(self.path)  # stale: its holder is gone
                continue
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
            return True
        return False

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                storage.touch(self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # Only this lock's own file: were it ever taken over (judged stale), removing the new
        # holder's file would let a third process train the run beside it.
        with contextlib.suppress(FileNotFoundError):
            if storage.read_text(self.path) == self._text:
                storage.remove(self.path)


# --- failures ----------------------------------------------------------------------------------


def record_failure(workdir: str, name: str, error: BaseException) -> dict[str, Any]:
    """Writes ``DIR/state/<run>.failed.json`` for ``error`` and returns what it wrote."""
    message = str(error).splitlines()[0] if str(error) else ""
    record = {
        "run": name,
        "error": f"{type(error).__name__}: {message}" if message else type(error).__name__,
        "traceback": "".join(traceback.format_exception(error)),
    }
    record |= {"host": socket.gethostname(), "pid": os.getpid(), "time": _now()}
    io.write_json(failed_path(workdir, name), record)
    return record


def read_failure(workdir: str, name: str) -> dict[str, Any] | None:
    try:
        return io.read_json(failed_path(workdir, name))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"error": "failed.json cannot be read"}


def clear_failure(workdir: str, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        storage.remove(failed_path(workdir, name))


# --- run state ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunState:
    """Where one run stands: ``state`` is done, running, failed or pending; ``detail`` says more;
    a done run's ``summary``."""

    name: str
    state: str
    detail: str = ""
    summary: dict[str, Any] | None = None


def summary_of(workdir: str, name: str, config_dict: dict[str, Any]) -> dict[str, Any] | None:
    """The run's ``summary.json`` when it is done: present, of the run's own config, finished."""
    from jaxvae import config as config_lib

    directory = run_dir(workdir, name)
    try:
        saved = io.read_json(layout.path(directory, layout.CONFIG))
        summary = io.read_json(layout.path(directory, layout.SUMMARY))
    except (OSError, ValueError):
        return None
    if summary.get("epochs") != config_dict["train"]["epochs"]:
        return None
    return None if config_lib.config_differences(saved, config_dict) else summary


def run_state(workdir: str, run: dict[str, Any]) -> RunState:
    """The state of ``run`` (an entry of ``study.json``'s runs)."""
    name = run["name"]
    if (summary := summary_of(workdir, name, run["config"])) is not None:
        return RunState(name, DONE, summary=summary)
    if (holder := lock_holder(lock_path(workdir, name))) is not None:
        who = f"{holder.get('host')} pid {holder.get('pid')}"
        return RunState(name, RUNNING, f"{who} since {holder.get('started', '?')}")
    if (failure := read_failure(workdir, name)) is not None:
        return RunState(name, FAILED, failure.get("error", ""))
    steps = checkpoint_steps(run_dir(workdir, name))
    return RunState(name, PENDING, f"resumes from step {steps[-1]}" if steps else "")


def checkpoint_steps(directory: str) -> list[int]:
    """The steps of the run directory's checkpoints, oldest first (none when damaged)."""
    from jaxvae import checkpoint

    try:
        return checkpoint.steps(directory)
    except Exception:  # noqa: BLE001 -- a damaged checkpoint directory is still pending
        return []
