"""``jaxvae study export DIR DEST``: the study's record without its weights.

DEST becomes a study directory of the same study holding, of each run that is done, what its
figures and curves are made of: ``config.json``, ``run.json``, ``summary.json``, ``eval.json``
and ``metrics.jsonl`` (a few hundred kilobytes for a run, against megabytes to gigabytes of
checkpoints, event files and pictures). ``jaxvae study report DEST`` writes the same
``results.csv`` and figures as the report of DIR itself, and ``jaxvae study run`` on DEST (a
copy of it on another machine, or DIR restored from it) counts those runs as done and trains
only the others: the way to keep a long study's finished work where its machine does not last
(a repository, an artifact store), and to gather studies run in pieces on machines without a
shared disk. Exporting again into the same DEST adds the runs done since.
"""

from __future__ import annotations

import os

from jaxvae import io, layout, storage
from jaxvae.studies import state

# summary.json last: a reader of DEST counts a run done only once its record is whole.
RECORD = (layout.CONFIG, layout.RUN_INFO, layout.EVAL, layout.METRICS, layout.SUMMARY)


def export_study(workdir: str, dest: str) -> list[str]:
    """Copies the record of ``workdir``'s done runs into ``dest``; returns the runs copied.

    Raises:
      ValueError: ``workdir`` holds no study, or ``dest`` holds another study or other files
        (nothing is written then).
    """
    if storage.abspath(workdir) == storage.abspath(dest):
        raise ValueError(f"study export: {dest!r} is the study directory itself")
    study_json = state.read_study(workdir)
    state.init_study_dir(dest, study_json)
    exported = []
    for run in study_json["identity"]["runs"]:
        if state.run_state(workdir, run).state != state.DONE:
            continue
        source, target = state.run_dir(workdir, run["name"]), state.run_dir(dest, run["name"])
        storage.makedirs(target)
        for name in RECORD:
            path = layout.path(source, name)
            if storage.exists(path):
                io.write_atomic(os.path.join(target, name), storage.read_bytes(path))
        exported.append(run["name"])
    return exported
