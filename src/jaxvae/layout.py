"""The run directory: every file name in it, in one place.

::

    WORKDIR/
      config.json            the run's config (written once; a resumed run must match it)
      run.json               what the config does not say: format, image shape, classes, dataset
      metrics.jsonl          one JSON line per log step and per evaluation
      summary.json           the final figures (written when training ends)
      eval.json              written by `jaxvae eval`
      checkpoints/<step>/    Orbax checkpoints of the train state
      checkpoints-corrupt/   unreadable checkpoints, moved aside (never deleted)
      samples.png, reconstructions.png, interpolations.png, latent_map.png (2 latents),
      and each model family's own pictures (e.g. codebook.png)
"""

from __future__ import annotations

import os

CONFIG = "config.json"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
EVAL = "eval.json"
CHECKPOINTS = "checkpoints"
CORRUPT = "checkpoints-corrupt"
SAMPLES = "samples.png"
RECONSTRUCTIONS = "reconstructions.png"
INTERPOLATIONS = "interpolations.png"
LATENT_MAP = "latent_map.png"

# The on-disk format of run directories: run.json records it; a run of another format is refused
# (its checkpoints hold a different train state).
RUN_FORMAT = 2


def path(workdir: str, name: str) -> str:
    """``WORKDIR/name``."""
    return os.path.join(workdir, name)
