"""From a config to everything a run needs: specs, data, model, objective, optimizer (the optax
transform of an :class:`~jaxvae.specs.OptimizerSpec`: optimizer, learning-rate schedule, Adam's
epsilon and gradient clipping), mesh, keys.

This is the config layer's builder: :func:`build` validates a config once and turns it into
frozen specs and objects; nothing it returns holds on to the config but :attr:`Experiment.config`
(for the run's config.json and :func:`jaxvae.load_run`). ``jaxvae train``, ``eval``, ``bench`` and
:func:`jaxvae.load_run` all go through it, so a notebook that calls it trains, evaluates and draws
exactly what the CLI does.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from jaxvae import config as config_lib
from jaxvae import corruptions, models, sharding, streaming
from jaxvae import data as data_lib
from jaxvae import engine as engine_lib
from jaxvae.models import capabilities as caps
from jaxvae.objectives import ObjectiveSpec
from jaxvae.specs import DataSpec, EvalSpec, LoggingSpec, OptimizerSpec, TrainSpec

# Independent streams of the run's randomness, each derived from the seed.
KEY_NAMES = ("init", "train", "data", "eval", "pictures")


def run_keys(seed: int) -> dict[str, jax.Array]:
    """The run's named keys, ``fold_in(key(seed), i)``."""
    root = jax.random.key(seed)
    return {name: jax.random.fold_in(root, i) for i, name in enumerate(KEY_NAMES)}


def learning_rate(spec: OptimizerSpec, steps_per_epoch: int, total_steps: int):
    """The learning rate as an optax schedule of the step.

    ``constant``; ``cosine`` (from ``learning_rate`` to 0 over ``total_steps``); ``exponential``
    (times ``lr_decay`` per epoch); ``iwae``: the IWAE paper's schedule (Burda et al. 2016,
    section 5), stage ``i = 0..7`` lasting ``3^i`` epochs at ``lr * 10^(-i/7)`` (3280 epochs in
    all), then the last rate.
    """
    lr, kind = float(spec.learning_rate), spec.lr_schedule
    if kind == "constant":
        return lr
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, max(1, total_steps))
    if kind == "exponential":
        return optax.exponential_decay(lr, steps_per_epoch, float(spec.lr_decay))
    factors = [10.0 ** (-i / 7) for i in range(8)]
    ends = itertools.accumulate(3**i for i in range(7))  # the epochs where stages 1..7 start
    pairs = zip(ends, itertools.pairwise(factors), strict=True)
    scales = {end * steps_per_epoch: b / a for end, (a, b) in pairs}
    return optax.piecewise_constant_schedule(lr, scales)


def make_optimizer(
    spec: OptimizerSpec, steps_per_epoch: int = 1, total_steps: int = 1
) -> optax.GradientTransformation:
    """The optax transform of ``spec``; ``steps_per_epoch`` places the schedules' epoch
    boundaries and ``total_steps`` is the length a cosine schedule spans."""
    lr = learning_rate(spec, steps_per_epoch, total_steps)
    eps = float(spec.adam_eps)
    if spec.optimizer == "adam":
        tx = optax.adam(lr, eps=eps)
    elif spec.optimizer == "adamw":
        tx = optax.adamw(lr, eps=eps, weight_decay=spec.weight_decay)
    else:
        tx = optax.sgd(lr, momentum=0.9)
    if spec.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(spec.grad_clip), tx)
    return tx


def _binarize(key, batch):
    return batch | {"image": corruptions.dynamic_binarize(key, batch["image"])}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything built from one config.

    Attributes:
      config: the validated ConfigDict (written as the run's config.json).
      seed: the run's seed.
      train: how training runs; optim: the optimizer; eval: evaluation; data: the data's spec.
      dataset: the loaded :class:`~jaxvae.data.Dataset` (``None`` when built without data).
      source: the streamed training split, or ``None`` when the training set lives on the devices.
      info: the data facts the model was built for.
      model: the model family instance.
      objective: the training objective's spec.
      tx: the optax transform.
      mesh: the device mesh (one ``"data"`` axis).
      keys: the run's named PRNG keys.
      logging: the experiment trackers the run reports to.
    """

    config: ml_collections.ConfigDict
    seed: int
    train: TrainSpec
    optim: OptimizerSpec
    eval: EvalSpec
    data: DataSpec
    dataset: data_lib.Dataset | None
    source: streaming.TrainSource | None
    info: models.DataInfo
    model: models.Model
    objective: ObjectiveSpec
    tx: optax.GradientTransformation
    mesh: Mesh
    keys: dict[str, jax.Array]
    logging: LoggingSpec = LoggingSpec()

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per epoch of the training set."""
        return engine_lib.steps_per_epoch(self.info.num_train, self.train.batch_size)

    def record(self) -> dict[str, Any]:
        """The config as plain JSON-able data (config.json, TensorBoard's hyperparameters)."""
        return self.config.to_dict()

    def preprocess(self):
        """The training batches' input transform: dynamic binarization, or ``None``."""
        return _binarize if self.data.binarize == "dynamic" else None

    def train_step(self):
        """The pure ``(state, batch, key) -> (state, metrics)`` of this run."""
        args = (self.model, self.objective, self.tx)
        return engine_lib.make_train_step(*args, preprocess=self.preprocess())

    def init_state(self) -> engine_lib.TrainState:
        """The initial train state, replicated over the mesh."""
        init = lambda k: engine_lib.init_state(self.model, self.tx, k)
        return jax.jit(init, out_shardings=sharding.replicated(self.mesh))(self.keys["init"])

    def abstract_state(self) -> engine_lib.TrainState:
        return engine_lib.abstract_state(self.model, self.tx, self.mesh)

    def split(self, name: str) -> dict[str, Any]:
        """A split of the dataset as a batch dict ``{"image", "label"}`` (host arrays), with
        ``"factors"`` (int32 ``[N, F]``) for data with ground-truth factors."""
        if self.dataset is None:
            raise ValueError("this experiment was built without data")
        d = self.dataset
        out = {"image": getattr(d, f"{name}_images"), "label": getattr(d, f"{name}_labels")}
        factors = getattr(d, f"{name}_factors", None)
        return out if factors is None else out | {"factors": factors}

    def feed(self, start_step: int, total_steps: int) -> engine_lib.CompiledFeed:
        """The run's training batches: streamed from :attr:`source`, or device-resident."""
        keys = (self.keys["train"], self.keys["data"])
        kw = {"batch_size": self.train.batch_size, "mesh": self.mesh}
        if self.source is None:
            return engine_lib.DeviceFeed(self.train_step(), self.split("train"), *keys, **kw)
        kw |= {"image_shape": self.info.image_shape, "start_step": start_step}
        return streaming.StreamFeed(
            self.train_step(), self.source, *keys, **kw, total_steps=total_steps
        )


def build(
    config: ml_collections.ConfigDict,
    *,
    mesh: Mesh | None = None,
    dataset: data_lib.Dataset | None = None,
    info: models.DataInfo | None = None,
    load_data: bool = True,
    stream: bool = True,
) -> Experiment:
    """Validates ``config`` and builds its :class:`Experiment`.

    Args:
      config: a config (see :func:`jaxvae.config.base_config`).
      mesh: the devices to use (default: every device of every process).
      dataset: data already loaded (default: load ``config.data``).
      info: with ``load_data=False``, the data facts to build the model for (from run.json).
      load_data: whether to load the dataset.
      stream: whether the training split may be streamed (``data.stream``); eval and pictures
        need the test split only and pass ``False`` only with ``dataset`` given.

    Raises:
      ValueError: a bad config, missing data or images that do not fit the model.
    """
    specs = config_lib.validate(config)
    source = None
    if dataset is None and load_data:
        source = streaming.open_train_source(specs.data, config.seed) if stream else None
        dataset = source.dataset if source else data_lib.load_from_config(specs.data, config.seed)
    if dataset is not None:  # what the model needs to know of it
        n = int(dataset.train_images.shape[0])
        info = models.DataInfo(dataset.image_shape, max(dataset.num_classes, 1), n)
    if info is None:
        raise ValueError("build() without data needs the data's DataInfo")
    model = config_lib.make_model(config, info)
    mesh = mesh or sharding.make_mesh()
    sharding.check_batch_size(specs.train.batch_size, mesh)
    per_epoch = max(1, engine_lib.steps_per_epoch(info.num_train, specs.train.batch_size))
    tx = make_optimizer(specs.optim, per_epoch, per_epoch * specs.train.epochs)
    if caps.has(model, caps.ParameterGroups):  # groups with optimizers of their own
        groups = model.group_optimizers()
        label = lambda params: {k: k if k in groups else "model" for k in params}
        tx = optax.multi_transform({"model": tx, **groups}, label)
    given = (specs.train, specs.optim, specs.eval, specs.data)  # in Experiment's field order
    made = (dataset, source, info, model, specs.objective, tx, mesh, run_keys(config.seed))
    return Experiment(config, int(config.seed), *given, *made, logging=specs.logging)
