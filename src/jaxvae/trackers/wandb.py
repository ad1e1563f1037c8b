"""Weights & Biases (``logging.wandb=true``; ``pip install 'jaxvae[wandb]'``).

The config is the run's config; every metrics line is ``run.log(figures, step=step)``; each
picture is a ``wandb.Image`` under its file's name (``samples``, ``curves``, ...) at the step it
was drawn. A resumed run continues the tracked run with ``wandb.init(id=..., resume="allow")``.
wandb's own settings apply: ``WANDB_MODE=offline`` writes the run under ``WANDB_DIR`` for a later
``wandb sync``. A row of a step below the run's first step (a run continued online starts
after its newest step, and wandb drops earlier steps: ``jaxvae eval``'s figures at the run's
final step) goes to wandb's next step, its keys charted against their own step, ``STEP_KEY``
(wandb's ``define_metric``). Each run is a run object of its own (``reinit="create_new"``), so several seeds
trained in one program are several tracked runs.
"""

from __future__ import annotations

import os
from typing import Any

from jaxvae import trackers
from jaxvae.specs import LoggingSpec

STEP_KEY = "jaxvae/step"  # the step of a row logged after the run's newest step (see above)


@trackers.register("wandb")
class Wandb:
    def __init__(self, spec: LoggingSpec, *, name: str, run_id: str | None):
        wandb = trackers.require("wandb", "wandb")
        self._image = wandb.Image
        where = {"project": spec.wandb_project, "entity": spec.wandb_entity or None, "name": name}
        resume = "allow" if run_id else None
        self.run = wandb.init(**where, id=run_id, resume=resume, reinit="create_new")
        self.run_id = self.run.id

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def _log(self, row: dict[str, Any], step: int) -> None:
        if step >= self.run.starting_step:
            self.run.log(row, step=step)
            return
        for key in row:
            self.run.define_metric(key, step_metric=STEP_KEY)
        self.run.log(row | {STEP_KEY: step})

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._log(metrics, step)

    def log_image(self, step: int, path: str) -> None:
        name = os.path.splitext(os.path.basename(path))[0]
        self._log({name: self._image(path)}, step)

    def close(self) -> None:
        self.run.finish()
