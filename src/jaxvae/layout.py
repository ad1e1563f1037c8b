"""The run directory: every file name in it, in one place.

::

    WORKDIR/
      config.json            the run's config (written once; a resumed run must match it)
      run.json               what the config does not say: format, image shape, classes, dataset
      metrics.jsonl          one JSON line per log step and per evaluation
      summary.json           the final figures (written when training ends)
      eval.json              written by `jaxvae eval`
      carried_sums.json      the running metric sums of a log interval a stop request cut
      trackers.json          each experiment tracker's run id and what it has been sent
      checkpoints/<step>/    Orbax checkpoints of the train state
      checkpoints-corrupt/   unreadable checkpoints, moved aside (never deleted)
      checkpoints-best/      with early stopping: the state of the best validation epoch
      events.out.tfevents.*  TensorBoard: training terms, test figures, pictures, the config
      samples.png, reconstructions.png, interpolations.png, traversals.png, latent_map.png
      (2 latents), latent_space.png (the test codes' first two principal components),
      curves.png (loss and test figure against steps), and each model family's own pictures
      (e.g. codebook.png); with the disentanglement metrics (eval.disentanglement or
      `jaxvae eval --disentanglement`) disentanglement_matrices.png (MIG mutual information and
      DCI importance, latents x factors) and factor_traversals.png (a traversal per latent,
      labelled with the factor it captures)
"""

from __future__ import annotations

import os

CONFIG = "config.json"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
EVAL = "eval.json"
CARRIED_SUMS = "carried_sums.json"
TRACKERS = "trackers.json"  # jaxvae.trackers: the tracked runs a resumed run continues
CHECKPOINTS = "checkpoints"
CORRUPT = "checkpoints-corrupt"
BEST = "checkpoints-best"  # the best validation epoch's state (early stopping)
SAMPLES = "samples.png"
RECONSTRUCTIONS = "reconstructions.png"
INTERPOLATIONS = "interpolations.png"
LATENT_MAP = "latent_map.png"
LATENT_SPACE = "latent_space.png"
TRAVERSALS = "traversals.png"
CURVES = "curves.png"
DISENTANGLEMENT_MATRICES = "disentanglement_matrices.png"
FACTOR_TRAVERSALS = "factor_traversals.png"
# TensorBoard event files (events.out.tfevents.*) are written into the workdir itself, so that
# `tensorboard --logdir runs/` shows one run per workdir.

# The on-disk format of run directories: run.json records it; a run of another format is refused
# (its checkpoints hold a different train state).
RUN_FORMAT = 2


def path(workdir: str, name: str) -> str:
    """``WORKDIR/name``."""
    return os.path.join(workdir, name)
