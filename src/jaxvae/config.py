"""Experiment configuration: the schema every config file starts from, overrides and validation.

Config files are Python files with ``get_config()`` returning an ``ml_collections.ConfigDict``; they
start from :func:`base_config`, whose keys and types are the schema (it is locked, so a misspelt key
is an error). Each model family adds its own section ``model.<kind>`` with the defaults it declares.
Only the CLI, the run builder (:mod:`jaxvae.experiment`), model families' ``from_config`` and
``experiments/`` read ConfigDicts; the rest of the library takes frozen specs.
"""

from __future__ import annotations

import ast
import json
from typing import Any

import jax
import ml_collections

from jaxvae import data as data_lib
from jaxvae import engine as engine_lib
from jaxvae import io, likelihoods, models
from jaxvae.objectives import ESTIMATORS, OBJECTIVES, ObjectiveSpec

OPTIMIZERS = ("adam", "adamw", "sgd")
BINARIZE = ("none", "static", "dynamic")


def base_config() -> ml_collections.ConfigDict:
    """All configuration keys with their defaults (a conv VAE on Fashion-MNIST)."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "fashion_mnist"
    c.data.data_dir = ""  # IDX directory (fashion_mnist) or .npz path (npz); "" = default
    c.data.tfds_data_dir = ""  # TFDS data directory; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.source = "auto"  # fashion_mnist: auto | idx | tfds
    c.data.binarize = "none"  # none | static | dynamic
    c.data.limit_train = 0  # keep only the first N train images (0 = all)
    c.data.limit_test = 0
    # hold out the last N train images as the validation set, before limit_train (0 = none)
    c.data.validation_size = 0
    # Training data streamed from its TFDS data source instead of living on the device:
    # auto (TFDS data whose training images exceed stream_threshold_mb as float32) | always | never
    c.data.stream = "auto"
    c.data.stream_threshold_mb = 2048.0
    c.data.stream_workers = 0  # Grain reader threads (0 = min(8, CPUs))

    c.model = ml_collections.ConfigDict()
    c.model.kind = "vae"  # a registered family (jaxvae.models.families())
    c.model.architecture = "conv"  # conv | mlp
    c.model.latent_dim = 16
    c.model.hidden = (400,)
    c.model.channels = (32, 64)
    c.model.activation = "relu"  # MLP hidden layers: relu | tanh
    c.model.layer = "dense"  # MLP hidden layers: dense | gated
    c.model.likelihood = "bernoulli"  # bernoulli | gaussian | gaussian_learned | logistic_mixture
    c.model.gaussian_std = 0.1
    c.model.num_mixtures = 5  # logistic_mixture components
    c.model.conv_impl = "auto"  # auto (fast on CPU and GPU, lax on TPU) | fast | lax
    for name, family in sorted(models.families().items()):
        if family.config_defaults:
            c.model[name] = ml_collections.ConfigDict(dict(family.config_defaults))

    c.objective = ml_collections.ConfigDict()
    c.objective.name = "elbo"  # elbo (the family's loss) | elbo_k (k-sample ELBO) | iwae
    c.objective.k = 1  # IWAE importance samples
    c.objective.estimator = "standard"  # IWAE gradient: standard | dreg
    c.objective.beta = 1.0
    c.objective.warmup_steps = 0
    c.objective.free_bits = 0.0
    c.objective.ae_loss = "l2"
    c.objective.noise = "gaussian"
    c.objective.noise_level = 0.3

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 128
    c.train.epochs = 10
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3
    c.train.lr_schedule = "constant"  # constant | cosine | exponential | iwae (Burda et al.)
    c.train.lr_decay = 0.99  # exponential: factor per epoch
    c.train.adam_eps = 1e-8  # Adam/AdamW epsilon (the IWAE paper: 1e-4)
    c.train.weight_decay = 0.0  # decoupled weight decay: optimizer adamw only
    c.train.grad_clip = 0.0  # global-norm clip (0 = off)
    c.train.steps_per_dispatch = 0  # steps run in one compiled call (0 = to the next boundary)
    # A dispatch runs at most about this long, so a stop signal is answered within seconds
    # (0 = unbounded); it changes no result.
    c.train.max_dispatch_s = 2.0
    c.train.log_every_steps = 0  # metrics.jsonl line every N steps (0 = every epoch)
    c.train.checkpoint_every_steps = 0  # 0 = every epoch, at most once per the interval below
    # With checkpoint_every_steps=0: at most one checkpoint per this many seconds; the end of the
    # first epoch and the last step always save (0 = every epoch).
    c.train.checkpoint_min_interval_s = 30.0
    c.train.keep_checkpoints = 3
    # With data.validation_size > 0: stop after this many epochs without a better validation
    # figure (the family's headline, e.g. val_nelbo), keeping the best state (0 = never stop).
    c.train.early_stopping_patience = 0
    c.train.eval_every_epochs = 1  # test negative ELBO in metrics.jsonl (0 = only at the end)
    c.train.progress = True

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 1000
    c.eval.iwae_k = 0  # IWAE bound at the end of training (0 = skip; `jaxvae eval` computes it)
    c.eval.iwae_num_examples = 1000
    c.eval.num_pictures = 64

    c.lock()
    return c


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """Imports ``path`` and returns its ``get_config()``.

    Raises:
      ValueError: the file is missing, has no ``get_config``, does not return a ConfigDict, or
        raises anything while it is imported or called (its exception type and message, with the
        line of the file where it was raised).
    """
    config = io.call_python_file(
        path, "get_config", module_name="_jaxvae_config", what="config file"
    )
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(
            f"config file {path!r}: get_config() returned {type(config).__name__}, "
            "expected an ml_collections.ConfigDict (start from jaxvae.config.base_config())"
        )
    return config


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _parse(text: str, kind: type) -> Any:
    """``text`` parsed as a ``kind`` (a tuple from a Python literal, ``32`` as ``(32,)``); the
    text itself when it does not parse."""
    text = text.strip()
    try:
        if kind is bool:
            low = text.lower()
            return True if low in _TRUE else False if low in _FALSE else text
        if kind in (int, float):
            return kind(text)
        if kind in (tuple, list):
            return ast.literal_eval(text if text.startswith(("(", "[")) else f"({text},)")
    except (ValueError, SyntaxError):
        pass
    return text


def set_value(config: ml_collections.ConfigDict, key: str, value: Any, *, flag: str = "") -> None:
    """Sets the dotted ``key`` of ``config`` to ``value``, converted to the key's type.

    One rule for the command line and for studies: a text is parsed as the key's type (for a
    bool ``true``/``false``/``1``/``0``/``yes``/``no``, for a tuple a Python literal); any other
    value must be of that type already (an int is a float, a list a tuple).

    Args:
      config: the config, changed in place.
      key: a dotted key such as ``"train.epochs"``.
      value: the new value, or its text.
      flag: put before ``key`` in messages (``"--config."`` on the command line).

    Raises:
      ValueError: ``key`` is not a leaf of ``config``, or ``value`` is not of its type.
    """
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
            raise ValueError(f"unknown config key {key!r}")
        node = node[p]
    if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
        raise ValueError(f"unknown config key {key!r}")
    kind = type(node[leaf])
    parsed = _parse(value, kind) if isinstance(value, str) and kind is not str else value
    allowed = {float: (int, float), tuple: (tuple, list), list: (tuple, list)}.get(kind, (kind,))
    if not isinstance(parsed, allowed) or (isinstance(parsed, bool) and kind is not bool):
        raise ValueError(f"{flag}{key}={value!r}: expected a value of type {kind.__name__}")
    node[leaf] = (
        float(parsed) if kind is float else tuple(parsed) if kind in (tuple, list) else parsed
    )


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """Applies ``["a.b=value", ...]`` (the command line's ``--config.a.b=value``) in place with
    :func:`set_value`; unknown keys and wrong types raise ``ValueError``."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override --config.{item} needs a value: --config.{item}=VALUE")
        key, text = item.split("=", 1)
        set_value(config, key, text, flag="--config.")


def flat(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of ``config`` (lists as tuples): :func:`jaxvae.io.flatten`
    of a ConfigDict."""
    if isinstance(config, ml_collections.ConfigDict):
        config = config.to_dict()
    return io.flatten(config, prefix)


def changed_keys(path: str) -> dict[str, Any]:
    """The keys where the config file ``path`` differs from :func:`base_config` (a study variant
    that is that config file)."""
    base = flat(base_config())
    return {k: v for k, v in flat(load_config_file(path)).items() if base.get(k) != v}


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The flat keys in which a saved config (a run's config.json, a study's study.json) and a
    new one differ, sorted.

    A key the saved config lacks and the new one holds at its default is no difference: the
    saved config was written before the key existed, and a key is added with a default that
    keeps the behaviour from before it, so the run is the same run (it resumes, and a finished
    one stays done). Compared as JSON (tuples and lists alike).
    """
    a = flat(json.loads(json.dumps(saved)))
    b = flat(json.loads(json.dumps(new)))
    defaults = flat(json.loads(to_json(base_config())))
    out = []
    for k in set(a) | set(b):
        if k not in a and k in defaults and b[k] == defaults[k]:
            continue
        if a.get(k, _MISSING) != b.get(k, _MISSING):
            out.append(k)
    return sorted(out)


_MISSING = object()


def _check(cond: bool, key: str, value: Any, expected: str) -> None:
    if not cond:
        raise ValueError(f"config {key}={value!r}: expected {expected}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks types and ranges of every key that the library reads."""
    schema = base_config()
    _check_types(schema, config, "")
    t = config.train
    for key in ("batch_size", "epochs", "keep_checkpoints"):
        _check(t[key] > 0, f"train.{key}", t[key], "a positive integer")
    for key in ("steps_per_dispatch", "log_every_steps", "checkpoint_every_steps"):
        _check(t[key] >= 0, f"train.{key}", t[key], "an integer >= 0")
    _check(t.eval_every_epochs >= 0, "train.eval_every_epochs", t.eval_every_epochs, ">= 0")
    _check(t.max_dispatch_s >= 0, "train.max_dispatch_s", t.max_dispatch_s, ">= 0")
    _check(
        t.checkpoint_min_interval_s >= 0,
        "train.checkpoint_min_interval_s",
        t.checkpoint_min_interval_s,
        ">= 0",
    )
    _check(t.learning_rate > 0, "train.learning_rate", t.learning_rate, "a positive number")
    _check(t.optimizer in OPTIMIZERS, "train.optimizer", t.optimizer, f"one of {OPTIMIZERS}")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, ">= 0")
    schedules = ("constant", "cosine", "exponential", "iwae")
    _check(t.lr_schedule in schedules, "train.lr_schedule", t.lr_schedule, f"one of {schedules}")
    _check(0 < t.lr_decay <= 1, "train.lr_decay", t.lr_decay, "a number in (0, 1]")
    _check(t.adam_eps > 0, "train.adam_eps", t.adam_eps, "a positive number")
    _check(
        t.early_stopping_patience >= 0,
        "train.early_stopping_patience",
        t.early_stopping_patience,
        "an integer >= 0",
    )
    if t.early_stopping_patience and not config.data.validation_size:
        raise ValueError(
            f"config train.early_stopping_patience={t.early_stopping_patience} needs a "
            "validation set: set data.validation_size > 0"
        )
    engine_lib.check_weight_decay(t.optimizer, t.weight_decay)
    _check(t.grad_clip >= 0, "train.grad_clip", t.grad_clip, ">= 0")
    e = config.eval
    _check(e.batch_size > 0, "eval.batch_size", e.batch_size, "a positive integer")
    _check(0 <= e.iwae_k <= 100_000, "eval.iwae_k", e.iwae_k, "an integer in [0, 100000]")
    _check(e.iwae_num_examples > 0, "eval.iwae_num_examples", e.iwae_num_examples, "> 0")
    _check(e.num_pictures > 0, "eval.num_pictures", e.num_pictures, "a positive integer")
    d = config.data
    names = data_lib.DATASETS
    _check(d.name in names, "data.name", d.name, f"one of {names}")
    _check(d.binarize in BINARIZE, "data.binarize", d.binarize, f"one of {BINARIZE}")
    _check(d.limit_train >= 0, "data.limit_train", d.limit_train, ">= 0")
    _check(d.limit_test >= 0, "data.limit_test", d.limit_test, ">= 0")
    m, o = config.model, config.objective
    known = tuple(sorted(models.families()))
    _check(m.kind in known, "model.kind", m.kind, f"one of {known}")
    _check(
        m.likelihood in likelihoods.names(),
        "model.likelihood",
        m.likelihood,
        f"one of {likelihoods.names()}",
    )
    _check(o.name in OBJECTIVES, "objective.name", o.name, f"one of {OBJECTIVES}")
    _check(o.estimator in ESTIMATORS, "objective.estimator", o.estimator, f"one of {ESTIMATORS}")
    # "Smaller than the training set" is checked once the data is loaded (load_dataset).
    _check(d.validation_size >= 0, "data.validation_size", d.validation_size, ">= 0")
    modes = ("auto", "always", "never")
    _check(d.stream in modes, "data.stream", d.stream, f"one of {modes}")
    _check(d.stream_threshold_mb >= 0, "data.stream_threshold_mb", d.stream_threshold_mb, ">= 0")
    _check(d.stream_workers >= 0, "data.stream_workers", d.stream_workers, "an integer >= 0")
    memory_only = d.name == "npz" or (d.name == "fashion_mnist" and d.source != "tfds")
    if d.stream == "always" and memory_only:
        raise ValueError(
            f"config data.stream='always' needs a TFDS data source; data.name={d.name!r} with "
            f"data.source={d.source!r} is read into memory (fashion_mnist: data.source='tfds')"
        )
    channels = config.model.channels
    side = 2 ** len(channels) if isinstance(channels, tuple | list) else 1
    # The real image shape is checked once data is loaded. A fixed backend: validation must not
    # start JAX's backend, which jax.distributed.initialize() has to precede.
    model = models.from_config(config, models.DataInfo((side, side, 1)), backend="cpu")
    objective = objective_spec(config)
    if objective.name != "elbo" and not model.has_likelihood:
        raise ValueError(
            f"config objective.name={objective.name!r} needs a likelihood; "
            f"model.kind={m.kind!r} has none"
        )
    if objective.estimator == "dreg" and not model.dreg_ok:
        raise ValueError(
            f"config objective.estimator='dreg' needs a generative model that shares no "
            f"parameters with q; model.kind={m.kind!r} does"
        )


def _check_types(schema, config, prefix: str) -> None:
    for key in config.keys():
        path = f"{prefix}{key}"
        if key not in schema:
            raise ValueError(f"unknown config key {path!r}")
        want, got = schema[key], config[key]
        if isinstance(want, ml_collections.ConfigDict):
            if not isinstance(got, ml_collections.ConfigDict):
                raise ValueError(f"config {path} must be a section, got {got!r}")
            _check_types(want, got, path + ".")
            continue
        if isinstance(want, bool):
            ok = isinstance(got, bool)
        elif isinstance(want, int):
            ok = isinstance(got, int) and not isinstance(got, bool)
        elif isinstance(want, float):
            ok = isinstance(got, int | float) and not isinstance(got, bool)
        elif isinstance(want, tuple | list):
            ok = isinstance(got, tuple | list)
        else:
            ok = isinstance(got, type(want))
        if not ok:
            raise ValueError(f"config {path}={got!r}: expected a {type(want).__name__}")


def resolve_conv_impl(name: str, backend: str | None = None) -> str:
    """``"auto"`` is ``"fast"`` (no convolution ops; docs/conv-formulations.md) on CPU and GPU, and
    the ``lax`` convolutions on TPU, whose own kernels are fast there. Measured on an H200 at batch
    8192 (docs/benchmarks.md): "fast" trains the conv VAE 2.7x as fast as cuDNN's convolutions.
    Both have the same parameters, so a checkpoint moves between them."""
    if name != "auto":
        return name
    return "fast" if (backend or jax.default_backend()) in ("cpu", "gpu", "cuda", "rocm") else "lax"


def objective_spec(config: ml_collections.ConfigDict) -> ObjectiveSpec:
    """The :class:`ObjectiveSpec` of ``config.objective``."""
    o = config.objective
    return ObjectiveSpec(
        name=o.name, k=o.k, estimator=o.estimator, beta=o.beta, warmup_steps=o.warmup_steps
    )


def to_json(config: ml_collections.ConfigDict) -> str:
    """A stable JSON text of the config (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """Rebuilds a config written by :func:`to_json` on top of the schema."""
    config = base_config()
    _merge(config, json.loads(text), "")
    return config


def _merge(node: ml_collections.ConfigDict, values: dict, prefix: str) -> None:
    for key, value in values.items():
        if key not in node:
            raise ValueError(f"unknown config key {prefix + key!r} in a saved config")
        if isinstance(node[key], ml_collections.ConfigDict):
            _merge(node[key], value, prefix + key + ".")
        else:
            node[key] = tuple(value) if isinstance(value, list) else value
