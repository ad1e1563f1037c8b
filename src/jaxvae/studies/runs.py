"""A study's runs: :func:`expand` turns a :class:`~jaxvae.studies.definition.Study` into its runs,
one per (seed, variant), in a canonical order (seed major, so that the first seed of every variant
comes first), each with the complete config it trains; :func:`canonical` is the JSON that
identifies the expanded study in ``study.json``; :func:`shard` splits the runs over machines.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import json
import re
from collections.abc import Sequence
from typing import Any

import ml_collections

from jaxvae.studies.definition import Study, Variant


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of an expanded study.

    Attributes:
      index: its position in the canonical order (what ``--shard`` splits).
      name: ``<variant>-seed<seed>``, also its directory under ``runs/``.
      variant: the variant.
      seed: the seed.
      config: the complete config it trains.
    """

    index: int
    name: str
    variant: Variant
    seed: int
    config: ml_collections.ConfigDict


def expand(
    study: Study, *, seeds: int | None = None, overrides: Sequence[str] = ()
) -> list[RunSpec]:
    """The runs of ``study``: seed-major, then variants in grid order.

    Args:
      seeds: keep only the first ``seeds`` seeds (``None``: all).
      overrides: ``"KEY=VALUE"`` texts (the CLI's ``--config.KEY=VALUE``) applied to every run
        after the variant's own overrides; a key that the grid varies is refused.

    Raises:
      ValueError: a bad seed count, an unknown key or a wrong type anywhere, a config that does not
        validate, or an override of a key the grid varies.
    """
    from jaxvae import config as config_lib

    if seeds is not None and not (type(seeds) is int and 1 <= seeds <= len(study.seeds)):
        raise ValueError(
            f"--seeds {seeds!r}: expected 1..{len(study.seeds)} (the study has {len(study.seeds)} seeds)"
        )
    variants = study.grid()
    varied = {k for v in variants for k in v.overrides}
    for key in (item.split("=", 1)[0] for item in overrides):
        if key == "seed":
            raise ValueError("--config.seed: a study sets each run's seed; use --seeds N")
        if key in varied:
            raise ValueError(f"--config.{key}: the study varies {key!r} itself")
    configs = {}
    for v in variants:
        config = copy.deepcopy(study.base_config)
        try:
            for key, value in v.overrides.items():
                config_lib.set_value(config, key, value)
        except ValueError as e:
            raise ValueError(f"study {study.name!r}, variant {v.name!r}: {e}") from None
        config_lib.apply_overrides(config, list(overrides))
        configs[v.name] = config
    runs = []
    for seed in study.seeds[:seeds]:
        for v in variants:
            config = copy.deepcopy(configs[v.name])
            config.seed = seed
            try:
                config_lib.validate(config)
            except ValueError as e:
                raise ValueError(f"study {study.name!r}, variant {v.name!r}: {e}") from None
            runs.append(RunSpec(len(runs), f"{v.name}-seed{seed}", v, seed, config))
    return runs


def shard(runs: Sequence[RunSpec], index: int, count: int) -> list[RunSpec]:
    """The runs of shard ``index`` of ``count``: those whose canonical index is ``index`` mod
    ``count``. The shards are disjoint, together hold every run, and depend only on the study."""
    if not (type(index) is type(count) is int and 0 <= index < count):
        raise ValueError(f"shard {index!r}/{count!r}: expected I/N with 0 <= I < N")
    return [r for r in runs if r.index % count == index]


def select(runs: Sequence[RunSpec], patterns: str | None) -> list[RunSpec]:
    """The runs whose name matches one of the comma-separated shell patterns ``patterns``
    (``fnmatch``, e.g. ``"dipvae_*-seed0,btcvae.*"``); every run when ``patterns`` is
    ``None``. A pattern that matches no run is a mistake (a typo would train nothing)."""
    if patterns is None:
        return list(runs)
    wanted = [p.strip() for p in patterns.split(",")]
    if not all(wanted):
        raise ValueError(f"--runs {patterns!r}: an empty pattern")
    for pattern in wanted:
        if not any(fnmatch.fnmatchcase(r.name, pattern) for r in runs):
            names = ", ".join(r.name for r in runs[:3])
            raise ValueError(
                f"--runs: {pattern!r} matches no run of the study (runs: {names}, ...)"
            )
    return [r for r in runs if any(fnmatch.fnmatchcase(r.name, p) for p in wanted)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``."""
    if not (match := re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")):
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N")
    return index, count


def _jsonable(value: Any) -> Any:
    default = lambda o: list(o) if isinstance(o, tuple) else str(o)
    return json.loads(json.dumps(value, default=default))


def canonical(
    study: Study, runs: Sequence[RunSpec], *, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON of the expanded study kept in ``study.json``.

    ``identity`` decides whether a directory holds this study: the name, the command-line
    overrides, the seeds and every run's complete config. ``report`` holds what only the report
    reads (metrics, references, figures, curves, description); it may change without a rerun.
    """
    from jaxvae import config as config_lib

    given = dict(item.partition("=")[::2] for item in overrides)  # KEY=VALUE -> {KEY: VALUE}
    identity = {
        "name": study.name,
        "overrides": dict(sorted(given.items())),
        "seeds": list(dict.fromkeys(r.seed for r in runs)),
        "axes": [{"name": a.name, "values": _jsonable(list(a.values))} for a in study.axes],
        "variants": [
            {"name": v.name, "overrides": _jsonable(v.overrides), "coords": _jsonable(v.coords)}
            for v in study.grid()
        ],
        "runs": [
            dict(index=r.index, name=r.name, variant=r.variant.name, seed=r.seed)
            | {"config": json.loads(config_lib.to_json(r.config))}
            for r in runs
        ],
    }
    report = {
        "description": study.description,
        "metrics": list(study.metrics),
        "curves": list(study.curves),
        "references": [dataclasses.asdict(r) for r in study.references],
        "figures": [dataclasses.asdict(f) for f in study.figures],
    }
    return {"format": 1, "identity": identity, "report": report}
