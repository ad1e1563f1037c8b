"""Frozen specs of a run: what the config layer (:mod:`jaxvae.config`) turns a config into.

The core (engine, runner, evaluation, models) reads these, never a ConfigDict. Each spec's fields
are the keys of its config section, with their defaults: :func:`jaxvae.config.base_config` is built
from them, so a default is written once. Each field carries the rule its value must follow
(:func:`_field`); a spec checks them when it is made and names the bad key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "exponential", "iwae")
# Schedules whose shape depends on the run's length (train.epochs): a run continued with more
# epochs would change its learning rate, so the run directory refuses that change.
LENGTH_DEPENDENT = ("cosine",)


def check(cond: bool, key: str, value: Any, expected: str) -> None:
    """Raises ``ValueError("config KEY=VALUE: expected ...")`` unless ``cond``."""
    if not cond:
        raise ValueError(f"config {key}={value!r}: expected {expected}")


def _field(default: Any, rule: tuple[Callable[[Any], bool], str]) -> Any:
    """A spec field: its default, and ``(ok, expected)``: whether a value is allowed, and what
    the message says is expected."""
    return dataclasses.field(default=default, metadata={"rule": rule})


def _one_of(options: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in options, f"one of {options}")


positive = (lambda v: v > 0, "a positive number")
positive_int = (lambda v: v > 0, "a positive integer")
at_least_0 = (lambda v: v >= 0, ">= 0")
int_at_least_0 = (lambda v: v >= 0, "an integer >= 0")


class _Checked:
    """A spec whose fields' rules are checked when it is made, named ``{section}.{field}``."""

    section = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if "rule" in f.metadata:
                ok, expected = f.metadata["rule"]
                value = getattr(self, f.name)
                check(ok(value), f"{self.section}.{f.name}", value, expected)


@dataclasses.dataclass(frozen=True)
class TrainSpec(_Checked):
    """How training runs (section ``train``, with :class:`OptimizerSpec`).

    Attributes:
      batch_size: images per step (divisible by the devices).
      epochs: passes over the training set.
      steps_per_dispatch: steps per compiled call (0 = to the next boundary).
      max_dispatch_s: a dispatch runs at most about this long, so that a stop signal is answered
        within seconds (0 = unbounded); it changes no result.
      log_every_steps: a metrics.jsonl line every N steps (0 = every epoch).
      checkpoint_every_steps: 0 = every epoch, at most once per ``checkpoint_min_interval_s``.
      checkpoint_min_interval_s: with ``checkpoint_every_steps=0``, at most one checkpoint per
        this many seconds; the end of the first epoch and the last step always save (0 = every
        epoch).
      keep_checkpoints: checkpoints kept.
      early_stopping_patience: with ``data.validation_size > 0``: stop after this many epochs
        without a better validation figure (the family's headline), keeping the best state
        (0 = never stop).
      eval_every_epochs: test figures in metrics.jsonl every N epochs (0 = only at the end).
      progress: a progress bar on a terminal.
    """

    section = "train"
    batch_size: int = _field(128, positive_int)
    epochs: int = _field(10, positive_int)
    steps_per_dispatch: int = _field(0, int_at_least_0)
    max_dispatch_s: float = _field(2.0, at_least_0)
    log_every_steps: int = _field(0, int_at_least_0)
    checkpoint_every_steps: int = _field(0, int_at_least_0)
    checkpoint_min_interval_s: float = _field(30.0, at_least_0)
    keep_checkpoints: int = _field(3, positive_int)
    early_stopping_patience: int = _field(0, int_at_least_0)
    eval_every_epochs: int = _field(1, at_least_0)
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class OptimizerSpec(_Checked):
    """The optax transform (keys of section ``train``).

    Attributes:
      optimizer: ``adam``, ``adamw`` (decoupled weight decay) or ``sgd`` (momentum 0.9).
      learning_rate: the (initial) learning rate.
      lr_schedule: ``constant``, ``cosine`` (to 0 over the run's steps), ``exponential`` (times
        ``lr_decay`` per epoch) or ``iwae`` (Burda et al. 2016).
      lr_decay: ``exponential``'s factor per epoch.
      adam_eps: Adam/AdamW epsilon (the IWAE paper: 1e-4).
      weight_decay: decoupled weight decay, ``adamw`` only.
      grad_clip: global-norm clip (0 = off).
    """

    section = "train"
    optimizer: str = _field("adam", _one_of(OPTIMIZERS))
    learning_rate: float = _field(1e-3, positive)
    lr_schedule: str = _field("constant", _one_of(LR_SCHEDULES))
    lr_decay: float = _field(0.99, (lambda v: 0 < v <= 1, "a number in (0, 1]"))
    adam_eps: float = _field(1e-8, positive)
    weight_decay: float = _field(0.0, at_least_0)
    grad_clip: float = _field(0.0, at_least_0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_decay > 0 and self.optimizer != "adamw":
            raise ValueError(
                f"config train.weight_decay={self.weight_decay!r} needs train.optimizer='adamw', "
                f"got train.optimizer={self.optimizer!r} (which has no weight decay); use "
                "--config.train.optimizer=adamw or --config.train.weight_decay=0"
            )


@dataclasses.dataclass(frozen=True)
class EvalSpec(_Checked):
    """Evaluation during and at the end of training (section ``eval``).

    Attributes:
      batch_size: images per evaluation batch.
      iwae_k: importance samples of the NLL bound at the end of training (0 = skip; ``jaxvae
        eval`` computes it).
      iwae_num_examples: test images of that bound.
      num_pictures: images per picture grid.
      disentanglement: at the end of training, score the representation with every
        disentanglement metric (:mod:`jaxvae.disentangle`; a dataset with ground-truth factors)
        into summary.json, and draw its pictures.
      disentanglement_seed: the metrics' sampling seed (the study's: 0).
      disentanglement_points: 0 = the study's protocol; N > 0 = every metric's sample counts
        reduced to N training and N // 2 test points (quick looks and tests only).
      disentanglement_jobs: DCI's factors fitted in that many parallel processes (-1: one per
        core); the same numbers.
    """

    section = "eval"
    batch_size: int = _field(1000, positive_int)
    iwae_k: int = _field(0, (lambda v: 0 <= v <= 100_000, "an integer in [0, 100000]"))
    iwae_num_examples: int = _field(1000, (lambda v: v > 0, "> 0"))
    num_pictures: int = _field(64, positive_int)
    disentanglement: bool = False
    disentanglement_seed: int = _field(0, int_at_least_0)
    disentanglement_points: int = _field(0, (lambda v: v == 0 or v >= 4, "0 or an integer >= 4"))
    disentanglement_jobs: int = _field(1, (lambda v: v == -1 or v >= 1, "-1 or an integer >= 1"))


def fields(spec_type: type) -> dict[str, Any]:
    """``{field: default}`` of a spec dataclass, in declaration order."""
    return {f.name: f.default for f in dataclasses.fields(spec_type)}


def from_section(spec_type: type, section: Any) -> Any:
    """The spec of ``spec_type`` from the matching keys of a config section (a mapping)."""
    return spec_type(**{name: section[name] for name in fields(spec_type)})


BINARIZE = ("none", "static", "dynamic")


@dataclasses.dataclass(frozen=True)
class DataSpec(_Checked):
    """The data of a run (section ``data``).

    Attributes:
      name: a dataset of :data:`jaxvae.data.DATASETS`.
      data_dir: IDX directory (fashion_mnist), .npz path (npz) or image folder (folder); "" =
        the default.
      tfds_data_dir: TFDS data directory; "" = ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      source: fashion_mnist's files: ``auto``, ``idx`` or ``tfds``.
      binarize: ``none``, ``static`` (once, in file order) or ``dynamic`` (every step).
      limit_train: keep only the first N training images (0 = all).
      limit_test: keep only the first N test images (0 = all).
      validation_size: hold out the last N training images as the validation set, before
        ``limit_train`` (0 = none).
      stream: the training data streamed from its TFDS data source (an image folder: from its
        cache or its files) instead of living on the device: ``auto`` (when its training images
        exceed ``stream_threshold_mb`` as float32), ``always`` or ``never``.
      stream_threshold_mb: see ``stream``.
      stream_workers: Grain reader threads (0 = min(8, CPUs)).
      image_size: ``folder`` and ``celeb_a``: the side of the square images (0 = 64).
      channels: ``folder``: 1 (grey) or 3 (RGB); 0 = the majority of its images.
      cache_dir: ``folder``: where its decoded images are kept ("" = ``DIR/.jaxvae-cache``).
      test_fraction: ``folder``: the share of files held out as the test split (by path hash).
      download: let TFDS download and prepare a TFDS dataset that is not prepared.
    """

    section = "data"
    name: str = "fashion_mnist"
    data_dir: str = ""
    tfds_data_dir: str = ""
    source: str = "auto"
    binarize: str = _field("none", _one_of(BINARIZE))
    limit_train: int = _field(0, at_least_0)
    limit_test: int = _field(0, at_least_0)
    validation_size: int = _field(0, at_least_0)
    stream: str = _field("auto", _one_of(("auto", "always", "never")))
    stream_threshold_mb: float = _field(2048.0, at_least_0)
    stream_workers: int = _field(0, int_at_least_0)
    image_size: int = _field(0, (lambda v: v >= 0, "an integer >= 0 (0 = 64)"))
    channels: int = _field(0, (lambda v: v in (0, 1, 3), "0 (the majority), 1 or 3"))
    cache_dir: str = ""
    test_fraction: float = _field(0.1, (lambda v: 0 < v < 1, "a fraction in (0, 1)"))
    download: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        memory_only = self.name == "npz" or (self.name == "fashion_mnist" and self.source != "tfds")
        if self.stream == "always" and memory_only:
            raise ValueError(
                f"config data.stream='always' needs a TFDS data source; data.name={self.name!r} "
                f"with data.source={self.source!r} is read into memory (fashion_mnist: "
                "data.source='tfds')"
            )


@dataclasses.dataclass(frozen=True)
class LoggingSpec:
    """Experiment trackers a run reports to besides metrics.jsonl and TensorBoard (section
    ``logging``; :mod:`jaxvae.trackers`). They change nothing a run computes, so a resumed run may
    turn them on or off.

    Attributes:
      wandb: also to Weights & Biases (``pip install 'jaxvae[wandb]'``; wandb's own settings, such
        as ``WANDB_MODE=offline`` or ``WANDB_DIR``, apply).
      wandb_project: the W&B project.
      wandb_entity: the W&B team or user ("" = wandb's default entity).
      mlflow: also to the MLflow tracking server or store at this URI ("" = off;
        ``pip install 'jaxvae[mlflow]'``), e.g. ``http://localhost:5000`` or ``file:///tmp/mlruns``.
      mlflow_experiment: the MLflow experiment the run belongs to (created when missing).
      run_name: the tracked run's name ("" = the workdir's last path component).
    """

    wandb: bool = False
    wandb_project: str = "jaxvae"
    wandb_entity: str = ""
    mlflow: str = ""
    mlflow_experiment: str = "jaxvae"
    run_name: str = ""

    def __post_init__(self) -> None:
        needed = {"wandb_project": (self.wandb, "a W&B project name")}
        needed["mlflow_experiment"] = (self.mlflow, "an MLflow experiment name")
        for name, (used, expected) in needed.items():
            value = getattr(self, name)
            check(not used or value != "", f"logging.{name}", value, expected)
