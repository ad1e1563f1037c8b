"""Seeds in one compiled program: the runs of one config but the seed, trained at once with vmap.

The runs' train states, keys and data orders are stacked on a leading seed axis and the one
engine is vmapped over it (``jaxvae.engine.DeviceFeed(..., seeds=S)``), the training set shared.
Each seed draws its initial parameters, epoch permutations and step keys from its own seed exactly
as its own run would, and each run has its own :class:`jaxvae.runner.Run`: config.json,
metrics.jsonl, TensorBoard events, checkpoints, early stopping, pictures and summary.json are those
of ``jaxvae train`` with that config, up to the rounding of batched arithmetic
(``tests/test_seeds.py``: within 1e-4 nats). The runs resume together from their checkpoints; one
run's checkpoint is an ordinary one (``jaxvae train`` resumes it alone). A seed that stops early is
finished there and its slot idles until the group ends.

Not vectorized (trained one by one instead, with the reason on the progress stream): static
binarization (each seed's training images differ), streamed training data, and runs resuming
from different steps.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxvae import config as config_lib
from jaxvae import data as data_lib
from jaxvae import engine as engine_lib
from jaxvae import experiment as build_lib
from jaxvae import runner, sharding, streaming
from jaxvae import workdir as workdir_lib

# Seeds per compiled program when none is asked for, by JAX backend: the measurement of
# benchmarks/vmap_seeds.py (docs/studies.md): on 2 CPU cores 8 seeds vectorized ran 0.74x as fast
# as one after another, on one H200 16 seeds ran 6.44x as fast. A backend not listed was not
# measured: 1.
BACKEND_DEFAULT = {"cpu": 1, "gpu": 16}

stack, part = engine_lib.stack, engine_lib.part


def default_group_size(backend: str | None = None) -> int:
    """Seeds per compiled program on ``backend`` (default: JAX's) when none is asked for."""
    return BACKEND_DEFAULT.get(backend or jax.default_backend(), 1)


def why_not(configs: Sequence[Any]) -> str | None:
    """Why ``configs`` cannot be trained as one vectorized group (a sentence), or ``None``."""
    if len(configs) < 2:
        return "a single run"
    seeds = [int(c.seed) for c in configs]
    if len(set(seeds)) != len(seeds):
        return f"repeated seeds {seeds}"
    flats = [config_lib.flat(c) for c in configs]
    differ = {k for f in flats for k in f if any(g.get(k) != f[k] for g in flats)} - {"seed"}
    if differ:
        return f"the configs differ in more than the seed: {sorted(differ)}"
    if configs[0].data.binarize == "static":
        return "data.binarize='static' gives each seed its own training images"
    return None


def groups(configs: Sequence[Any], size: int) -> list[list[int]]:
    """Indices of ``configs`` in groups of at most ``size`` that can share a program (same
    config but the seed), in the order of their first member; the rest alone."""
    if size < 1:
        raise ValueError(f"seeds per program must be >= 1, got {size}")
    buckets: dict[str, list[int]] = {}
    for i, c in enumerate(configs):  # keyed by the config but the seed
        rest = sorted((k, v) for k, v in config_lib.flat(c).items() if k != "seed")
        buckets.setdefault(repr(rest), []).append(i)
    out = []
    for members in buckets.values():
        for j in range(0, len(members), size):
            chunk = members[j : j + size]
            if len(chunk) > 1 and why_not([configs[i] for i in chunk]) is not None:
                out.extend([i] for i in chunk)
            else:
                out.append(chunk)
    return sorted(out, key=lambda g: g[0])


def seeds_feed(exps: Sequence[build_lib.Experiment]) -> engine_lib.DeviceFeed:
    """The one device-resident feed, vmapped over the stacked keys of ``exps``' seeds."""
    exp = exps[0]
    keys = [stack([e.keys[name] for e in exps]) for name in ("train", "data")]
    kw = {"batch_size": exp.train.batch_size, "mesh": exp.mesh, "seeds": len(exps)}
    return engine_lib.DeviceFeed(exp.train_step(), exp.split("train"), *keys, **kw)


def train_seeds(
    configs: Sequence[Any], workdirs: Sequence[str], *, mesh=None, stream=None
) -> list[dict[str, Any]]:
    """Trains (or resumes) the runs of ``configs`` (one config but the seed) in ``workdirs`` in
    one vectorized program; returns their summaries, in order.

    Where they cannot share a program (:func:`why_not`, streamed data, different resume steps)
    they are trained one by one with :func:`jaxvae.train`, which gives the same runs.

    Raises:
      ValueError: as :func:`jaxvae.train`, or ``configs`` and ``workdirs`` of different lengths
        or with a workdir twice.
    """
    stream = sys.stderr if stream is None else stream
    if len(configs) != len(workdirs) or len(set(workdirs)) != len(workdirs):
        raise ValueError(
            f"train_seeds needs one distinct workdir per config: {len(configs)} configs, "
            f"workdirs {list(workdirs)}"
        )
    pairs = list(zip(configs, workdirs, strict=True))

    def one_by_one(reason: str) -> list[dict[str, Any]]:
        from jaxvae import api

        if len(configs) > 1:
            print(f"seeds trained one by one: {reason}", file=stream)
        return [api.train(c, w, mesh=mesh, stream=stream) for c, w in pairs]

    reason = why_not(configs)
    if reason is None and any(workdir_lib.finished_summary(w, c) is not None for c, w in pairs):
        reason = "some have finished (they are left alone)"
    if reason is None:
        specs = config_lib.validate(configs[0])
        if streaming.open_train_source(specs.data, configs[0].seed) is not None:
            reason = "the training data is streamed"
    if reason is not None:
        return one_by_one(reason)
    dataset = data_lib.load_from_config(specs.data, configs[0].seed)  # not seed-dependent
    exps = [build_lib.build(c, mesh=mesh, dataset=dataset) for c in configs]
    runs: list[runner.Run] = []
    try:
        for exp, workdir in zip(exps, workdirs, strict=True):
            runs.append(runner.Run(exp, workdir, stream, label=f"seed {exp.seed}"))
        starts = [r.start_step for r in runs]
        if len(set(starts)) > 1:
            for r in runs:
                r.close()
            return one_by_one(f"they resume from different steps {starts}")
        state = jax.device_put(stack([r.state for r in runs]), sharding.replicated(exps[0].mesh))
        feed = seeds_feed(exps)
        compile_s = feed.compile(state)
    except BaseException:
        for r in runs:
            r.close()
        raise
    for r in runs:
        r.state, r.compile_s = None, compile_s
    if len(runs) > 1:
        runs[0].progress.say(f"{len(runs)} seeds in one program: {list(workdirs)}")
    return runner.drive(
        runs, feed, state, part=part, join=lambda xs: jax.tree.map(lambda *a: np.stack(a), *xs)
    )
