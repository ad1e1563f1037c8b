"""From a config to everything a run needs: data, model, objective, optimizer, mesh and keys.

``jaxvae train``, ``eval``, ``bench`` and :func:`jaxvae.load_run` all go through :func:`build`, so a
notebook that calls it trains, evaluates and draws exactly what the CLI does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from jaxvae import config as config_lib
from jaxvae import corruptions, models, sharding
from jaxvae import data as data_lib
from jaxvae import engine as engine_lib
from jaxvae.objectives import ObjectiveSpec

# Independent streams of the run's randomness, each derived from the seed.
KEY_NAMES = ("init", "train", "data", "eval", "pictures")


def run_keys(seed: int) -> dict[str, jax.Array]:
    """The run's named keys, ``fold_in(key(seed), i)``."""
    root = jax.random.key(seed)
    return {name: jax.random.fold_in(root, i) for i, name in enumerate(KEY_NAMES)}


def data_info(dataset: data_lib.Dataset) -> models.DataInfo:
    """What a model needs to know of ``dataset``."""
    return models.DataInfo(
        image_shape=dataset.image_shape,
        num_classes=max(dataset.num_classes, 1),
        num_train=int(dataset.train_images.shape[0]),
    )


def info_dict(info: models.DataInfo, dataset_name: str) -> dict[str, Any]:
    """``run.json``'s record of the data (see :func:`info_from_dict`)."""
    return {
        "image_shape": list(info.image_shape),
        "num_classes": info.num_classes,
        "num_train": info.num_train,
        "dataset": dataset_name,
    }


def info_from_dict(d: dict[str, Any]) -> models.DataInfo:
    return models.DataInfo(
        image_shape=tuple(d["image_shape"]),
        num_classes=int(d.get("num_classes", 10)),
        num_train=int(d.get("num_train", 60_000)),
    )


def steps_per_epoch(config: ml_collections.ConfigDict, info: models.DataInfo) -> int:
    """Full batches per epoch of the training set (at least 1, for the schedules)."""
    return max(1, info.num_train // config.train.batch_size)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything built from one config.

    Attributes:
      config: the validated ConfigDict.
      dataset: the loaded :class:`~jaxvae.data.Dataset` (``None`` when built without data).
      info: the data facts the model was built for.
      model: the model family instance.
      objective: the training objective's spec.
      tx: the optax transform.
      mesh: the device mesh (one ``"data"`` axis).
      keys: the run's named PRNG keys.
    """

    config: ml_collections.ConfigDict
    dataset: data_lib.Dataset | None
    info: models.DataInfo
    model: models.Model
    objective: ObjectiveSpec
    tx: optax.GradientTransformation
    mesh: Mesh
    keys: dict[str, jax.Array]

    def preprocess(self):
        """The training batches' input transform: dynamic binarization, or ``None``."""
        if self.config.data.binarize != "dynamic":
            return None

        def binarize(key, batch):
            return batch | {"image": corruptions.dynamic_binarize(key, batch["image"])}

        return binarize

    def train_step(self):
        """The pure ``(state, batch, key) -> (state, metrics)`` of this run."""
        return engine_lib.make_train_step(
            self.model, self.objective, self.tx, preprocess=self.preprocess()
        )

    def init_state(self) -> engine_lib.TrainState:
        """The initial train state, replicated over the mesh."""
        init = jax.jit(
            lambda k: engine_lib.init_state(self.model, self.tx, k),
            out_shardings=sharding.replicated(self.mesh),
        )
        return init(self.keys["init"])

    def abstract_state(self) -> engine_lib.TrainState:
        return engine_lib.abstract_state(self.model, self.tx, self.mesh)

    def split(self, name: str) -> dict[str, Any]:
        """A split of the dataset as a batch dict ``{"image", "label"}`` (host arrays)."""
        if self.dataset is None:
            raise ValueError("this experiment was built without data")
        d = self.dataset
        return {"image": getattr(d, f"{name}_images"), "label": getattr(d, f"{name}_labels")}


def build(
    config: ml_collections.ConfigDict,
    *,
    mesh: Mesh | None = None,
    dataset: data_lib.Dataset | None = None,
    info: models.DataInfo | None = None,
    load_data: bool = True,
) -> Experiment:
    """Validates ``config`` and builds its :class:`Experiment`.

    Args:
      config: a config (see :func:`jaxvae.config.base_config`).
      mesh: the devices to use (default: every device of every process).
      dataset: data already loaded (default: load ``config.data``).
      info: with ``load_data=False``, the data facts to build the model for (from run.json).
      load_data: whether to load the dataset.

    Raises:
      ValueError: a bad config, missing data or images that do not fit the model.
    """
    config_lib.validate(config)
    if dataset is None and load_data:
        dataset = data_lib.load_from_config(config.data, config.seed)
    if dataset is not None:
        info = data_info(dataset)
    if info is None:
        raise ValueError("build() without data needs the data's DataInfo")
    model = models.from_config(config, info)
    objective = config_lib.objective_spec(config)
    mesh = mesh or sharding.make_mesh()
    sharding.check_batch_size(config.train.batch_size, mesh)
    return Experiment(
        config=config,
        dataset=dataset,
        info=info,
        model=model,
        objective=objective,
        tx=engine_lib.make_optimizer(config.train, steps_per_epoch(config, info)),
        mesh=mesh,
        keys=run_keys(config.seed),
    )
