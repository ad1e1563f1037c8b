"""What a study is: a base config, a grid of variants, seeds, the metrics to report, references.

A study file (``experiments/studies/<name>.py``, or any path) defines ``get_study()`` returning a :class:`Study`.
:func:`jaxvae.studies.runs.expand` turns a study into its runs.
Every mistake in a study is a ``ValueError`` that names the bad value, raised before anything runs.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from jaxvae import io, shipped
from jaxvae.studies import figures

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # study, axis and figure names
_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")  # level labels
_VARIANT = re.compile(r"^[A-Za-z0-9_.+=,-]+$")  # variant names (in run directory names)


def _check_name(what: str, name: Any, pattern: re.Pattern = _NAME) -> None:
    if not isinstance(name, str) or not pattern.match(name):
        allowed = "".join(c for c in "_.+=,-" if c in pattern.pattern)
        raise ValueError(
            f"{what} {name!r}: expected a non-empty name of letters, digits and {' '.join(allowed)} "
            "(it names files and directories)"
        )


def format_value(value: Any) -> str:
    """A short, stable label of a config value: ``0.25``, ``1``, ``1e-05``, ``32x64``, ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "x".join(format_value(v) for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


def _check_overrides(what: str, overrides: Any) -> dict[str, Any]:
    if not isinstance(overrides, Mapping):
        raise ValueError(
            f"{what}: overrides must be a mapping of config keys to values, got {overrides!r}"
        )
    for key in overrides:
        if not isinstance(key, str) or not key:
            raise ValueError(f"{what}: config key {key!r} must be a non-empty string")
        if key == "seed":
            raise ValueError(f"{what}: the study sets each run's seed; use seeds=, not {key!r}")
    return dict(overrides)


@dataclasses.dataclass(frozen=True)
class Axis:
    """One named axis of a grid.

    ``Axis("beta", key="objective.beta", values=(0.5, 1.0))`` varies one config key; its levels are
    labelled by their values (``beta=0.5``). ``Axis("size", levels={"small": {...}, "big": {...}})``
    gives each level a label and any config overrides.

    Attributes:
      name: the axis name, used in variant names (``beta=0.5``) and figures.
      key: the config key of a one-key axis (``None`` with ``levels``).
      values: each level's value: the key's value, or the label with ``levels``.
      labels: each level's label (formatted values, or the keys of ``levels``).
      overrides: each level's config overrides.
    """

    name: str
    key: str | None = None
    values: tuple = ()
    levels: dataclasses.InitVar[Mapping[str, Mapping[str, Any]] | None] = None
    labels: tuple[str, ...] = dataclasses.field(init=False)
    overrides: tuple[Mapping[str, Any], ...] = dataclasses.field(init=False)

    def __post_init__(self, levels):
        _check_name("axis name", self.name)
        what = f"axis {self.name!r}"
        if (self.key is None) == (levels is None):
            raise ValueError(f"{what}: give either key= and values=, or levels=")
        if levels is not None:
            if self.values:
                raise ValueError(f"{what}: values= goes with key=, not with levels=")
            if not isinstance(levels, Mapping) or not levels:
                raise ValueError(f"{what}: levels must be a non-empty mapping, got {levels!r}")
            values = labels = tuple(levels)
            for label in labels:
                _check_name(f"{what}: level label", label, _LABEL)
            overrides = tuple(_check_overrides(f"{what}, level {k!r}", levels[k]) for k in labels)
        else:
            if isinstance(self.values, str | bytes) or not isinstance(self.values, Sequence):
                raise ValueError(f"{what}: values must be a sequence, got {self.values!r}")
            if not self.values:
                raise ValueError(f"{what}: values is empty")
            _check_overrides(what, {self.key: None})
            values = tuple(tuple(v) if isinstance(v, list) else v for v in self.values)
            labels = tuple(format_value(v) for v in values)
            for label, value in zip(labels, values, strict=True):
                if not _LABEL.match(label):
                    raise ValueError(
                        f"{what}: value {value!r} makes the label {label!r}, not a "
                        "usable directory name; use levels= with your own labels"
                    )
            overrides = tuple({self.key: v} for v in values)
        _unique(what, "level", labels)
        for name, value in (("values", values), ("labels", labels), ("overrides", overrides)):
            object.__setattr__(self, name, value)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One point of the grid: a name and the config overrides that make it.

    Attributes:
      name: the variant name (``beta=0.5``, or the name of an explicit variant).
      overrides: config key -> value, applied to the base config.
      coords: axis name -> the level's value, for figures against an axis (empty for explicit
        variants).
    """

    name: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    coords: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _check_name("variant name", self.name, _VARIANT)
        overrides = _check_overrides(f"variant {self.name!r}", self.overrides)
        object.__setattr__(self, "overrides", overrides)
        object.__setattr__(self, "coords", dict(self.coords))


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published (or otherwise sourced) value to compare one variant's metric with.

    Attributes:
      variant: the variant it belongs to.
      metric: the metric (a key of the runs' ``summary.json``).
      value: the reference value.
      std: its standard deviation where the source gives one, else ``None``.
      source: where it comes from: a citation with table or figure, or a file and commit.
    """

    variant: str
    metric: str
    value: float
    source: str
    std: float | None = None

    def __post_init__(self):
        what = f"reference for {self.variant!r}/{self.metric!r}"
        if not math.isfinite(figures.number(self.value)):
            raise ValueError(f"{what}: value={self.value!r} must be a finite number")
        if self.std is not None and not 0 <= figures.number(self.std) < math.inf:
            raise ValueError(f"{what}: std={self.std!r} must be a finite number >= 0 or None")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"{what}: source must say where the value comes from")


@dataclasses.dataclass(frozen=True)
class Figure:
    """An extra figure of the report, drawn by the figure kind ``kind`` (:mod:`.figures`).

    Kinds: ``"metrics"`` plots metric ``y`` against metric ``x``, one point per variant with error
    bars over seeds (a rate-distortion plane); ``"axis"`` plots metric ``y`` against the values of
    the grid axis ``x``.

    Attributes:
      name: names the file ``<name>.png`` of the report.
      kind: the figure kind.
      x, y: what the kind plots on each axis.
      title, xlabel, ylabel: text on the figure (defaults: derived from ``x`` and ``y``).
      log_x: a logarithmic x axis (base 2).
      ylim: ``(low, high)`` of the y axis (default: fitted to the points).
      exceptions: for the ``findings`` kind, the groups (values of ``y``) that the paper names
        as exceptions to its Figure 1: their mean representation's total correlation falls with
        the regularisation too (Locatello et al.: DIP-VAE-I, which penalises the covariance of
        the mean representation); their verdict is held against that.
    """

    name: str
    kind: str
    x: str
    y: str
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    log_x: bool = False
    ylim: tuple[float, float] | None = None
    exceptions: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.exceptions, str) or not all(isinstance(e, str) for e in self.exceptions):
            raise ValueError(
                f"figure {self.name!r}: exceptions={self.exceptions!r}, expected a tuple of names"
            )
        object.__setattr__(self, "exceptions", tuple(self.exceptions))
        if self.ylim is not None:
            ok = isinstance(self.ylim, tuple | list) and len(self.ylim) == 2
            low, high = map(figures.number, self.ylim) if ok else (math.nan, math.nan)
            if not -math.inf < low < high < math.inf:
                raise ValueError(f"figure {self.name!r}: ylim={self.ylim!r}, expected (low, high)")
            object.__setattr__(self, "ylim", (low, high))

        _check_name("figure name", self.name)
        if self.name in figures.STANDARD:
            raise ValueError(f"figure name {self.name!r} is taken by a standard figure")
        if self.kind not in figures.KINDS:
            raise ValueError(
                f"figure {self.name!r}: kind {self.kind!r}, expected one of {sorted(figures.KINDS)}"
            )


_PARTS = {"axes": Axis, "variants": Variant, "references": Reference, "figures": Figure}


@dataclasses.dataclass(frozen=True)
class Study:
    """A study: every run of a grid of variants and seeds, and what to report about them.

    Attributes:
      name: the study's name.
      base_config: the config every run starts from (a ``jaxvae.config`` ConfigDict).
      axes: grid axes; the variants are their Cartesian product, in order (first axis slowest).
      variants: an explicit list of variants (instead of ``axes``); a mapping name -> overrides is
        accepted. Neither: one variant, ``base``.
      seeds: the seeds of every variant (an int ``n`` means ``0..n-1``).
      metrics: keys of each run's ``summary.json`` that the report shows.
      references: values to set beside the study's.
      figures: extra figures of the report.
      curves: keys of ``metrics.jsonl`` (train terms such as ``loss``, test metrics such as
        ``test_nelbo``) drawn as learning curves; those absent from the logs are left out.
      description: a paragraph at the top of the report.
    """

    name: str
    base_config: ml_collections.ConfigDict
    axes: tuple[Axis, ...] = ()
    variants: tuple[Variant, ...] = ()
    seeds: tuple[int, ...] = (0,)
    metrics: tuple[str, ...] = ("test_nelbo",)
    references: tuple[Reference, ...] = ()
    figures: tuple[Figure, ...] = ()
    curves: tuple[str, ...] = ("loss", "test_nelbo")
    description: str = ""

    def __post_init__(self):
        _check_name("study name", self.name)
        if not isinstance(self.base_config, ml_collections.ConfigDict):
            raise ValueError(
                f"study {self.name!r}: base_config must be a ConfigDict, got {type(self.base_config).__name__}"
            )
        object.__setattr__(self, "base_config", copy.deepcopy(self.base_config))
        for field in ("axes", "references", "figures", "metrics", "curves"):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"study {self.name!r}: {field} must be a sequence, got {value!r}")
            object.__setattr__(self, field, tuple(value))
        variants, seeds = self.variants, self.seeds
        if isinstance(variants, Mapping):
            variants = [Variant(k, v) for k, v in variants.items()]
        object.__setattr__(self, "variants", tuple(variants))
        object.__setattr__(self, "seeds", tuple(range(seeds) if type(seeds) is int else seeds))
        what = f"study {self.name!r}"
        if self.axes and self.variants:
            raise ValueError(f"{what}: give axes or variants, not both")
        for field, cls in _PARTS.items():
            if bad := [x for x in getattr(self, field) if not isinstance(x, cls)]:
                raise ValueError(f"{what}: {field} must be {cls.__name__} objects, got {bad[0]!r}")
        _unique(what, "axis", [a.name for a in self.axes])
        _unique(what, "variant", [v.name for v in self.variants])
        for field in ("seeds", "metrics"):
            if not getattr(self, field):
                raise ValueError(f"{what}: {field} is empty")
        for s in self.seeds:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise ValueError(f"{what}: seed {s!r} must be an integer >= 0")
        _unique(what, "seed", self.seeds)
        for m in (*self.metrics, *self.curves):
            if not isinstance(m, str) or not m:
                raise ValueError(f"{what}: metric {m!r} must be a non-empty string")
        _unique(what, "metric", self.metrics)
        names = [v.name for v in self.grid()]
        for r in self.references:
            if r.variant not in names:
                raise ValueError(
                    f"{what}: reference for unknown variant {r.variant!r}; variants: {names}"
                )
            if r.metric not in self.metrics:
                raise ValueError(
                    f"{what}: reference for {r.metric!r}, which is not in metrics {self.metrics}"
                )
        _unique(what, "reference", [f"{r.variant}/{r.metric}" for r in self.references])
        for f in self.figures:
            figures.KINDS[f.kind].check(f, self)
        _unique(what, "figure", [f.name for f in self.figures])

    def grid(self) -> tuple[Variant, ...]:
        """The variants, in order."""
        if self.variants:
            return self.variants
        if not self.axes:
            return (Variant("base"),)
        out = []
        for combo in itertools.product(*(range(len(a.labels)) for a in self.axes)):
            overrides: dict[str, Any] = {}
            levels = list(zip(self.axes, combo, strict=True))
            for a, i in levels:
                for key, value in a.overrides[i].items():
                    if key in overrides:
                        raise ValueError(f"study {self.name!r}: two axes set {key!r}")
                    overrides[key] = value
            name = ",".join(f"{a.name}={a.labels[i]}" for a, i in levels)
            coords = {a.name: a.values[i] for a, i in levels}
            out.append(Variant(name, overrides, coords))
        return tuple(out)


def _unique(what: str, kind: str, items: Sequence) -> None:
    twice = [item for i, item in enumerate(items) if item in items[:i]]
    if twice:
        raise ValueError(f"{what}: {kind} {twice[0]!r} appears twice")


def load_study(path: str) -> Study:
    """Imports the study file ``path`` and returns its ``get_study()``; a name such as
    ``"beta_sweep"`` is the shipped study of that name (:mod:`jaxvae.shipped`)."""
    path = shipped.resolve(path, "study")
    study = io.call_python_file(path, "get_study", module_name="_jaxvae_study", what="study file")
    if not isinstance(study, Study):
        raise ValueError(
            f"study file {path!r}: get_study() returned a {type(study).__name__}, not a Study"
        )
    return study
