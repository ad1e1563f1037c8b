"""Early stopping on a validation figure, with the best checkpoint kept.

With ``data.validation_size > 0`` the run evaluates the validation set at every epoch end
(``val_<figure>`` lines in metrics.jsonl). With ``train.early_stopping_patience = P > 0`` it keeps the
state of the best epoch in ``checkpoints-best/`` and stops once ``P`` epochs in a row did not
improve on it; the test figures and pictures are then those of the best state. The stopper's
state is a function of the logged validation figures alone, so a resumed run rebuilds it from
metrics.jsonl and takes the same decisions as one that was never stopped.
"""

from __future__ import annotations

import dataclasses
import math

from jaxvae import io, layout, storage


@dataclasses.dataclass
class EarlyStopping:
    """Tracks the best (lowest) validation figure.

    Attributes:
      patience: epochs without improvement before stopping (0 = never stop).
      metric: the metrics.jsonl key watched, e.g. ``"val_nelbo"``.
      best: the lowest value seen; ``best_step`` its step; ``bad_epochs`` evaluations since.
    """

    patience: int
    metric: str
    best: float = math.inf
    best_step: int | None = None
    bad_epochs: int = 0

    def update(self, step: int, value: float) -> bool:
        """Records the figure of ``step``; returns whether it is a new best."""
        if value < self.best:
            self.best, self.best_step, self.bad_epochs = float(value), int(step), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    @classmethod
    def from_log(cls, workdir: str, *, upto_step: int, patience: int, metric: str) -> EarlyStopping:
        """The stopper as it stood after ``upto_step``, from metrics.jsonl's validation lines."""
        stopper = cls(patience, metric)
        path = layout.path(workdir, layout.METRICS)
        if not storage.exists(path):
            return stopper
        for record in io.read_jsonl(path):  # a last line torn by a kill is left out
            if metric in record and record.get("step", 0) <= upto_step:
                stopper.update(record["step"], record[metric])
        return stopper
