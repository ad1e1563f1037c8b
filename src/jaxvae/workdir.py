"""The run directory's config, run info and metrics log, and the checks that protect it.

The file names are :mod:`jaxvae.layout`'s. Nothing here overwrites a run with a different
configuration, or resumes a run directory of another format.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import ml_collections

from jaxvae import config as config_lib
from jaxvae import io, layout
from jaxvae.layout import CONFIG, METRICS, RUN_INFO, SUMMARY  # noqa: F401 (re-exported)

# Keys that may differ when a run is continued: how long it trains and how it reports.
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.progress",
    "train.max_dispatch_s",
    "eval.iwae_k",
    "eval.iwae_num_examples",
)


def ensure_writable(workdir: str) -> None:
    """Creates ``workdir`` if needed and checks that files can be written in it."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-check-"):
            pass
    except OSError as e:
        raise ValueError(f"workdir {workdir!r} is not writable: {e.strerror or e}") from None


def check_compatible(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """Whether ``workdir`` already holds a run; raises ``ValueError`` if its config differs.

    Returns:
      ``True`` when ``workdir`` holds a run of this config (to be resumed), ``False`` when it holds
      none.
    """
    path = os.path.join(workdir, CONFIG)
    if not os.path.exists(path):
        return False
    info_path = layout.path(workdir, RUN_INFO)
    if os.path.exists(info_path):
        read_run_info(workdir)
    try:
        saved_dict = io.read_json(path)
    except ValueError as e:  # damaged: named with its path
        raise ValueError(f"{e}; use another --workdir") from None
    new_dict = json.loads(config_lib.to_json(config))
    saved, new = io.flatten(saved_dict), io.flatten(new_dict)
    differ = [
        k for k in config_lib.config_differences(saved_dict, new_dict) if k not in RESUMABLE_CHANGES
    ]
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in differ[:4])
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise ValueError(
            f"workdir {workdir!r} holds a run with a different config ({shown}{more}); "
            "use a new --workdir"
        )
    return True


def write_run_info(workdir: str, info: dict[str, Any]) -> None:
    """Records what the config alone does not say (image shape, classes, dataset), with the
    run directory's format."""
    io.write_json(layout.path(workdir, RUN_INFO), {"format": layout.RUN_FORMAT} | dict(info))


def read_run_info(workdir: str) -> dict[str, Any]:
    """``run.json`` of ``workdir``; refuses a run directory of another format."""
    path = layout.path(workdir, RUN_INFO)
    if not os.path.exists(path):
        raise ValueError(f"workdir {workdir!r} holds no run ({RUN_INFO} is missing)")
    try:
        info = io.read_json(path)
    except ValueError as e:  # damaged: named with its path
        raise ValueError(f"{e}; use another --workdir") from None
    check_format(workdir, info)
    return info


def check_format(workdir: str, info: dict[str, Any]) -> None:
    found = info.get("format", 1)
    if found != layout.RUN_FORMAT:
        raise ValueError(
            f"workdir {workdir!r} holds a run of format {found} (this jaxvae reads format "
            f"{layout.RUN_FORMAT}: its checkpoints hold a different train state); "
            "use a new --workdir, or the jaxvae version that wrote it"
        )


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config of the run in ``workdir``."""
    path = os.path.join(workdir, CONFIG)
    if not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} does not exist")
    if not os.path.exists(path):
        raise ValueError(f"workdir {workdir!r} holds no run ({CONFIG} is missing)")
    with open(path) as f:
        return config_lib.from_json(f.read())


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl``; on resume, drops lines past the restored step."""

    def __init__(self, workdir: str, *, resume_step: int | None, enabled: bool = True):
        self.path = os.path.join(workdir, METRICS)
        self.enabled = enabled
        if not enabled:
            return
        if resume_step is None:
            open(self.path, "w").close()
        elif os.path.exists(self.path):
            # A line torn by a kill during the write is left out: its step is past the checkpoint.
            records = io.read_jsonl(self.path)
            io.write_jsonl(self.path, [r for r in records if r.get("step", 0) <= resume_step])

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
