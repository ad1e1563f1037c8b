"""The config layer: the schema every config file starts from, overrides, validation, and the
turning of a config into the specs and the model the core takes.

Config files are Python files with ``get_config()`` returning an ``ml_collections.ConfigDict``; they
start from :func:`base_config`, whose keys and types are the schema (it is locked, so a misspelt key
is an error). The sections ``data``, ``train`` (with the optimizer's keys), ``eval``,
``logging`` and ``objective`` are the fields of the frozen specs in :mod:`jaxvae.specs` and
:class:`~jaxvae.objectives.ObjectiveSpec`; each model family adds ``model.<kind>`` with its own
dataclass fields and their defaults. :func:`validate` checks a config once and returns its
:class:`Specs`; :func:`make_model` builds the family with its options as arguments. Only this layer,
:mod:`jaxvae.experiment`, the CLI and ``experiments/`` read ConfigDicts.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import ml_collections

from jaxvae import data as data_lib
from jaxvae import io, likelihoods, models, objectives, shipped, specs
from jaxvae.objectives import ObjectiveSpec
from jaxvae.specs import DataSpec, EvalSpec, LoggingSpec, OptimizerSpec, TrainSpec

# Keys that moved from objective.* to model.<kind>.*, with their old defaults: a saved config
# (config.json, study.json) written before the move is read with them in their new place.
MOVED_TO_MODEL = {"free_bits": 0.0, "ae_loss": "l2", "noise": "gaussian", "noise_level": 0.3}


def migrate(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config's dict with moved keys in their present place (a copy).

    Raises:
      ValueError: a moved key set to other than its old default for a family that has no such
        option (the saved run could not have used it).
    """
    saved = json.loads(json.dumps(saved))
    objective, model = saved.get("objective", {}), saved.get("model", {})
    kind = model.get("kind", "vae")
    for key in [k for k in MOVED_TO_MODEL if k in objective]:
        value = objective.pop(key)
        family = models.families().get(kind)
        if family is not None and key in family_options(family):
            model.setdefault(kind, {}).setdefault(key, value)
        elif value != MOVED_TO_MODEL[key]:
            raise ValueError(
                f"saved config key objective.{key}={value!r} does not apply to model.kind={kind!r}"
            )
    return saved


def family_options(family: type[models.Model]) -> dict[str, Any]:
    """A family's own options with their defaults: its dataclass fields beyond :class:`Model`'s."""
    shared = {f.name for f in dataclasses.fields(models.Model)}
    return {
        f.name: f.default
        for f in dataclasses.fields(family)
        if f.init and f.name not in shared and f.default is not dataclasses.MISSING
    }


def base_config(imports: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """All configuration keys with their defaults (a conv VAE on Fashion-MNIST), after importing
    ``imports``: modules where families defined outside jaxvae register, kept as the key
    ``imports`` so that every command reading the saved run imports them again."""
    models.load(imports)
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.imports = tuple(imports)
    c.data = ml_collections.ConfigDict(specs.fields(DataSpec))
    c.model = ml_collections.ConfigDict()
    c.model.kind = "vae"  # a registered family (jaxvae.models.families())
    c.model.architecture = "conv"  # conv | mlp
    c.model.latent_dim = 16
    c.model.hidden = (400,)
    c.model.channels = (32, 64)
    c.model.kernels = ()  # conv encoder kernel sizes, one per layer (empty: 3x3)
    c.model.decoder_kernels = ()  # conv decoder kernel sizes, one per layer (empty: 3x3)
    c.model.conv_hidden = ()  # dense widths between the conv map and the latent layer
    c.model.weight_init = "lecun_normal"  # the networks' weights: lecun_normal | glorot_uniform
    c.model.activation = "relu"  # MLP hidden layers: relu | tanh
    c.model.layer = "dense"  # MLP hidden layers: dense | gated
    c.model.likelihood = "bernoulli"  # bernoulli | gaussian | gaussian_learned | logistic_mixture
    c.model.gaussian_std = 0.1
    c.model.num_mixtures = 5  # logistic_mixture components
    c.model.conv_impl = "auto"  # auto (fast on CPU and GPU, lax on TPU) | fast | lax
    # (lo, hi): Gaussian heads' log-variances clipped to [lo, hi] (a hardtanh); (): unbounded
    c.model.log_var_range = ()
    for name, family in sorted(models.families().items()):
        if options := family_options(family):
            c.model[name] = ml_collections.ConfigDict(options)
    c.objective = ml_collections.ConfigDict(specs.fields(ObjectiveSpec))
    c.train = ml_collections.ConfigDict(specs.fields(TrainSpec) | specs.fields(OptimizerSpec))
    c.eval = ml_collections.ConfigDict(specs.fields(EvalSpec))
    c.logging = ml_collections.ConfigDict(specs.fields(LoggingSpec))
    c.lock()
    return c


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """Imports ``path`` and returns its ``get_config()``; a name such as ``"vae"`` is the shipped
    config of that name (:mod:`jaxvae.shipped`).

    Raises:
      ValueError: an unknown name, or the file is missing, has no ``get_config``, does not return
        a ConfigDict, or raises anything while it is imported or called (its exception type and
        message, with the line of the file where it was raised).
    """
    path = shipped.resolve(path, "config")
    config = io.call_python_file(
        path, "get_config", module_name="_jaxvae_config", what="config file"
    )
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(
            f"config file {path!r}: get_config() returned {type(config).__name__}, "
            "expected an ml_collections.ConfigDict (start from jaxvae.config.base_config())"
        )
    return config


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parse(text: str, kind: type) -> Any:
    """``text`` parsed as a ``kind`` (a tuple from a Python literal, ``32`` as ``(32,)``); the
    text itself when it does not parse."""
    text = text.strip()
    try:
        if kind is bool:
            return _BOOLS.get(text.lower(), text)
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
    if key not in flat(config):
        raise ValueError(f"unknown config key {key!r}")
    *parents, leaf = key.split(".")
    node = functools.reduce(lambda section, name: section[name], parents, config)
    kind = type(node[leaf])
    parsed = _parse(value, kind) if isinstance(value, str) and kind is not str else value
    if not _of_type(parsed, kind):
        raise ValueError(f"{flag}{key}={value!r}: expected a value of type {kind.__name__}")
    node[leaf] = (
        float(parsed) if kind is float else tuple(parsed) if kind in (tuple, list) else parsed
    )


def _of_type(value: Any, kind: type) -> bool:
    """Whether ``value`` may stand for a key of type ``kind``: an int for a float, a list for a
    tuple, and a bool only for a bool."""
    allowed = {float: (int, float), tuple: (tuple, list), list: (tuple, list)}.get(kind, (kind,))
    return isinstance(value, allowed) and (kind is bool or not isinstance(value, bool))


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """Applies ``["a.b=value", ...]`` (the command line's ``--config.a.b=value``) in place with
    :func:`set_value`; unknown keys and wrong types raise ``ValueError``."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override --config.{item} needs a value: --config.{item}=VALUE")
        key, text = item.split("=", 1)
        set_value(config, key, text, flag="--config.")


def flat(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of ``config`` (lists as tuples): :func:`jaxvae.io.flatten`
    of a ConfigDict."""
    return io.flatten(config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config)


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
    a, b = flat(migrate(saved)), flat(migrate(new))
    defaults = flat(json.loads(to_json(base_config())))
    differ = {k for k in set(a) | set(b) if a.get(k, _MISSING) != b.get(k, _MISSING)}
    return sorted(k for k in differ if k in a or k not in defaults or b[k] != defaults[k])


_MISSING = object()


class Specs(NamedTuple):
    """A validated config, as the frozen specs the core takes."""

    data: DataSpec
    train: TrainSpec
    optim: OptimizerSpec
    eval: EvalSpec
    objective: ObjectiveSpec
    logging: LoggingSpec = LoggingSpec()


def validate(config: ml_collections.ConfigDict) -> Specs:
    """Checks the types and values of every key; returns the config's :class:`Specs`.

    Raises:
      ValueError: the first bad key, named with its value and what was expected.
    """
    models.load(config.get("imports", ()), kinds=(config.model.kind,))
    _check_types(config)
    d = specs.from_section(DataSpec, config.data)
    specs.check(d.name in data_lib.DATASETS, "data.name", d.name, f"one of {data_lib.DATASETS}")
    t = specs.from_section(TrainSpec, config.train)
    if t.early_stopping_patience and not d.validation_size:
        raise ValueError(
            f"config train.early_stopping_patience={t.early_stopping_patience} needs a "
            "validation set: set data.validation_size > 0"
        )
    m = config.model
    known = tuple(sorted(models.families()))
    specs.check(m.kind in known, "model.kind", m.kind, f"one of {known}")
    names = likelihoods.names()
    specs.check(m.likelihood in names, "model.likelihood", m.likelihood, f"one of {names}")
    optim = specs.from_section(OptimizerSpec, config.train)
    evaluation = specs.from_section(EvalSpec, config.eval)
    try:
        objective = specs.from_section(ObjectiveSpec, config.objective)
    except ValueError as e:
        raise ValueError(f"config objective: {e}") from None
    out = Specs(d, t, optim, evaluation, objective, specs.from_section(LoggingSpec, config.logging))
    side = 2 ** len(m.channels)  # a tuple: the types are checked
    # The real image shape is checked once data is loaded. A fixed backend: validation must not
    # start JAX's backend, which jax.distributed.initialize() has to precede.
    model = make_model(config, models.DataInfo((side, side, 1)), backend="cpu")
    objectives.check_objective(model, out.objective)
    return out


def _check_types(config: ml_collections.ConfigDict) -> None:
    """Refuses a key the schema (:func:`base_config`) lacks, or a value not of its key's type."""
    schema = flat(base_config())
    for key, got in flat(config).items():
        if key not in schema:
            raise ValueError(f"unknown config key {key!r}")
        if not _of_type(got, type(schema[key])):
            raise ValueError(f"config {key}={got!r}: expected a {type(schema[key]).__name__}")


def resolve_conv_impl(name: str, backend: str | None = None) -> str:
    """``"auto"`` is ``"fast"`` (no convolution ops; docs/conv-formulations.md) on CPU and GPU, and
    the ``lax`` convolutions on TPU, whose own kernels are fast there. Measured on an H200 at batch
    8192 (docs/benchmarks.md): "fast" trains the conv VAE 2.7x as fast as cuDNN's convolutions.
    Both have the same parameters, so a checkpoint moves between them."""
    if name != "auto":
        return name
    return "fast" if (backend or jax.default_backend()) in ("cpu", "gpu", "cuda", "rocm") else "lax"


def make_model(
    config: ml_collections.ConfigDict, info: models.DataInfo, *, backend: str | None = None
) -> models.Model:
    """The family of ``model.kind`` for data described by ``info``, its options as arguments:
    the shared backbone keys of ``model`` and the family's own section ``model.<kind>``."""
    m = config.model
    image_shape = tuple(int(v) for v in info.image_shape)
    options = {
        k: m[k] for k in ("latent_dim", "architecture", "activation", "layer", "weight_init")
    }
    options |= {k: tuple(m[k]) for k in ("hidden", "channels", "kernels", "decoder_kernels")}
    options["conv_hidden"] = tuple(m.conv_hidden)
    options["log_var_range"] = tuple(m.log_var_range)
    options |= {"conv_impl": resolve_conv_impl(m.conv_impl, backend), "image_shape": image_shape}
    pixels = {"gaussian_std": m.gaussian_std, "num_mixtures": m.num_mixtures}
    options["likelihood"] = likelihoods.make(m.likelihood, image_shape=image_shape, **pixels)
    options |= {"num_classes": int(info.num_classes), "num_train": int(info.num_train)}
    if m.kind in m:
        options |= {k: tuple(v) if isinstance(v, list) else v for k, v in m[m.kind].items()}
    family = models.get(m.kind)
    for name in getattr(family, "derived_options", ()):
        options.pop(name)
    try:
        return family(**options)
    except ValueError as e:
        raise ValueError(f"config model ({m.kind}): {e}") from None


def to_json(config: ml_collections.ConfigDict) -> str:
    """A stable JSON text of the config (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """Rebuilds a config written by :func:`to_json` on top of the schema, after importing its
    ``imports`` and loading the entry points of the families it names (:func:`models.load`)."""
    saved = json.loads(text)
    m = saved.get("model", {})
    kinds = [m.get("kind", "vae"), *(k for k, v in m.items() if isinstance(v, dict))]
    models.load(saved.get("imports", ()), kinds=kinds)
    config = base_config()
    _merge(config, migrate(saved), "")
    return config


_UNREGISTERED = "name its module in the config's imports, or as a jaxvae.models entry point"


def _merge(node: ml_collections.ConfigDict, values: dict, prefix: str) -> None:
    for key, value in values.items():
        if key not in node:
            family = prefix == "model." and isinstance(value, dict)
            hint = f": no model family {key!r} is registered ({_UNREGISTERED})" if family else ""
            raise ValueError(f"unknown config key {prefix + key!r} in a saved config{hint}")
        if isinstance(node[key], ml_collections.ConfigDict):
            _merge(node[key], value, prefix + key + ".")
        else:
            node[key] = tuple(value) if isinstance(value, list) else value
