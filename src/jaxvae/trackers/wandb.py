"""Weights & Biases (``logging.wandb=true``; ``pip install 'jaxvae[wandb]'``).

The config is the run's config; every metrics line is ``run.log(figures, step=step)``; each
picture is a ``wandb.Image`` under its file's name (``samples``, ``curves``, ...) at the step it
was drawn. A resumed run continues the tracked run with ``wandb.init(id=..., resume="allow")``.
wandb's own settings apply: ``WANDB_MODE=offline`` writes the run under ``WANDB_DIR`` for a later
``wandb sync``. Each run is a run object of its own (``reinit="create_new"``), so several seeds
trained in one program are several tracked runs.
"""

from __future__ import annotations

import os
from typing import Any

from jaxvae import trackers
from jaxvae.specs import LoggingSpec


@trackers.register("wandb")
class Wandb:
    def __init__(self, spec: LoggingSpec, *, name: str, run_id: str | None):
        wandb = trackers.require("wandb", "wandb")
        self._image = wandb.Image
        self.run = wandb.init(
            project=spec.wandb_project,
            entity=spec.wandb_entity or None,
            name=name,
            id=run_id,
            resume="allow" if run_id else None,
            reinit="create_new",
        )
        self.run_id = self.run.id

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def log_image(self, step: int, path: str) -> None:
        name = os.path.splitext(os.path.basename(path))[0]
        self.run.log({name: self._image(path)}, step=step)

    def close(self) -> None:
        self.run.finish()
