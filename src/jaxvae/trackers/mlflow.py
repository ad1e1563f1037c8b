"""MLflow (``logging.mlflow=URI``; ``pip install 'jaxvae[mlflow]'``).

Through ``MlflowClient`` (no fluent API, no active run of the process): the flattened config as
params (values as JSON text, strings as they are), every metrics line as metrics by step, each
picture as an artifact at the run's root. The run belongs to the experiment
``logging.mlflow_experiment`` (created when missing). A resumed run continues the tracked run of
the recorded ``run_id``; closing marks it finished.
"""

from __future__ import annotations

import json
import time
from typing import Any

from jaxvae import trackers
from jaxvae.specs import LoggingSpec

_BATCH = 100  # params per log_batch call (MLflow's limit)


@trackers.register("mlflow")
class MLflow:
    def __init__(self, spec: LoggingSpec, *, name: str, run_id: str | None):
        tracking = trackers.require("mlflow.tracking", "mlflow")
        self._entities = trackers.require("mlflow.entities", "mlflow")
        self.client = tracking.MlflowClient(tracking_uri=spec.mlflow)
        if run_id is None:
            wanted = spec.mlflow_experiment
            found = self.client.get_experiment_by_name(wanted)
            experiment = found.experiment_id if found else self.client.create_experiment(wanted)
            run_id = self.client.create_run(experiment, run_name=name).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        Param = self._entities.Param
        items = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH])

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        Metric = self._entities.Metric
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def log_image(self, step: int, path: str) -> None:
        del step  # an artifact has no step: the pictures are drawn once, at the end
        self.client.log_artifact(self.run_id, path)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
