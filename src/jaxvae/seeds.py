"""Seeds in one compiled program: the runs of one config but the seed, trained at once with vmap.

The runs' train states, keys and data orders are stacked on a leading seed axis and the engine
(:func:`jaxvae.engine.engine_fn`) is vmapped over it, the training set shared. Each seed draws its
initial parameters, epoch permutations and step keys from its own seed exactly as its own run
would, and each run has its own :class:`jaxvae.runner.Session`: config.json, metrics.jsonl,
TensorBoard events, checkpoints, early stopping, pictures and summary.json are those of ``jaxvae
train`` with that config, up to the rounding of batched arithmetic (``tests/test_seeds.py``:
within 1e-4 nats). The runs resume together from their checkpoints; one run's checkpoint is an
ordinary one (``jaxvae train`` resumes it alone). A seed that stops early is finished there and
its slot idles until the group ends.

Not vectorized (trained one by one instead, with the reason on the progress stream): static
binarization (each seed's training images differ), streamed training data, and runs resuming
from different steps.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvae import config as config_lib
from jaxvae import data as data_lib
from jaxvae import engine as engine_lib
from jaxvae import experiment as build_lib
from jaxvae import runner, sharding, streaming

# Seeds per compiled program when none is asked for, by JAX backend: the measurement of
# benchmarks/vmap_seeds.py (docs/studies.md). A backend not listed was not measured: 1.
BACKEND_DEFAULT = {"cpu": 1}


def default_group_size(backend: str | None = None) -> int:
    """Seeds per compiled program on ``backend`` (default: JAX's) when none is asked for."""
    return BACKEND_DEFAULT.get(backend or jax.default_backend(), 1)


def without_seed(config: ml_collections.ConfigDict) -> str:
    """``config`` as canonical JSON, its seed left out: equal for runs that can share a program."""
    d = json.loads(config_lib.to_json(config))
    d.pop("seed", None)
    return json.dumps(d, sort_keys=True)


def why_not(configs: Sequence[ml_collections.ConfigDict]) -> str | None:
    """Why ``configs`` cannot be trained as one vectorized group (a sentence), or ``None``."""
    if len(configs) < 2:
        return "a single run"
    seeds = [int(c.seed) for c in configs]
    if len(set(seeds)) != len(seeds):
        return f"repeated seeds {seeds}"
    first = config_lib.flat(configs[0])
    for c in configs[1:]:
        if without_seed(c) != without_seed(configs[0]):
            other = config_lib.flat(c)
            keys = sorted(
                k for k in set(first) | set(other) if k != "seed" and first.get(k) != other.get(k)
            )
            return f"the configs differ in more than the seed: {keys}"
    if configs[0].data.binarize == "static":
        return "data.binarize='static' gives each seed its own training images"
    return None


def groups(configs: Sequence[ml_collections.ConfigDict], size: int) -> list[list[int]]:
    """Indices of ``configs`` in groups of at most ``size`` that can share a program (same
    config but the seed), in the order of their first member; the rest alone."""
    if size < 1:
        raise ValueError(f"seeds per program must be >= 1, got {size}")
    buckets: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        buckets.setdefault(without_seed(c), []).append(i)
    out = []
    for members in buckets.values():
        for j in range(0, len(members), size):
            chunk = members[j : j + size]
            if len(chunk) > 1 and why_not([configs[i] for i in chunk]) is not None:
                out.extend([i] for i in chunk)
            else:
                out.append(chunk)
    return sorted(out, key=lambda g: g[0])


def stack(trees: Sequence[Any]) -> Any:
    """The trees stacked on a new leading (seed) axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def part(tree: Any, i: int) -> Any:
    """Seed ``i``'s part of a stacked tree (device arrays or host sums)."""
    return jax.tree.map(lambda a: a[i], tree)


class SeedsFeed:
    """:class:`jaxvae.engine.DeviceFeed` for a stacked state: ``run(state, n, sums)`` runs the
    next ``n`` steps of every seed, the engine vmapped over state, train key, data key and sums."""

    def __init__(self, exps: Sequence[build_lib.Experiment]):
        exp = exps[0]
        train = exp.split("train")
        self.data = jax.tree.map(lambda a: sharding.put_replicated(a, exp.mesh), train)
        self.train_step = exp.train_step()
        self.batch_size = exp.config.train.batch_size
        run = engine_lib.engine_fn(
            self.train_step,
            num_examples=train["image"].shape[0],
            batch_size=self.batch_size,
            mesh=exp.mesh,
        )
        replicated = sharding.replicated(exp.mesh)
        self.engine = jax.jit(
            jax.vmap(run, in_axes=(0, None, 0, 0, None, 0)),
            donate_argnums=(0,),
            out_shardings=(replicated, replicated),
        )
        self.key = jax.device_put(stack([e.keys["train"] for e in exps]), replicated)
        self.data_key = jax.device_put(stack([e.keys["data"] for e in exps]), replicated)
        self.num_seeds = len(exps)
        self.compiled = None

    def compile(self, state) -> float:
        """Compiles the engine for the stacked ``state``; returns the seconds it took."""
        t = time.time()
        first = jax.tree.map(lambda a: a[: self.batch_size], self.data)
        one = engine_lib.zero_metrics(self.train_step, part(state, 0), first, self.key[0])
        self.zeros = jax.tree.map(lambda z: np.stack([z] * self.num_seeds), one)
        args = (state, self.data, self.key, self.data_key, jnp.int32(1), self.zeros)
        self.compiled = self.engine.lower(*args).compile()
        return time.time() - t

    def run(self, state, n: int, sums=None):
        sums = self.zeros if sums is None else sums
        return self.compiled(state, self.data, self.key, self.data_key, jnp.int32(n), sums)


def train_seeds(
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[str],
    *,
    mesh=None,
    stream=None,
) -> list[dict[str, Any]]:
    """Trains (or resumes) the runs of ``configs`` (one config but the seed) in ``workdirs`` in
    one vectorized program; returns their summaries, in order.

    Where they cannot share a program (:func:`why_not`, streamed data, different resume steps)
    they are trained one by one with :func:`jaxvae.runner.train`, which gives the same runs.

    Raises:
      ValueError: as :func:`jaxvae.runner.train`, or ``configs`` and ``workdirs`` of different
        lengths or with a workdir twice.
    """
    stream = sys.stderr if stream is None else stream
    if len(configs) != len(workdirs) or len(set(workdirs)) != len(workdirs):
        raise ValueError(
            f"train_seeds needs one distinct workdir per config: {len(configs)} configs, "
            f"workdirs {list(workdirs)}"
        )

    def one_by_one(reason: str) -> list[dict[str, Any]]:
        if len(configs) > 1:
            print(f"seeds trained one by one: {reason}", file=stream)
        return [
            runner.train(c, w, mesh=mesh, stream=stream)
            for c, w in zip(configs, workdirs, strict=True)
        ]

    reason = why_not(configs)
    if reason is None and streaming.open_train_source(configs[0]) is not None:
        reason = "the training data is streamed"
    if reason is not None:
        return one_by_one(reason)
    for c in configs:
        config_lib.validate(c)
    dataset = data_lib.load_from_config(configs[0].data, configs[0].seed)  # not seed-dependent
    exps = [build_lib.build(c, mesh=mesh, dataset=dataset) for c in configs]
    sessions: list[runner.Session] = []
    try:
        for exp, workdir in zip(exps, workdirs, strict=True):
            sessions.append(runner.Session(exp, workdir, stream, label=f"seed {exp.config.seed}"))
        starts = [s.start_step for s in sessions]
        if len(set(starts)) > 1:
            for s in sessions:
                s.close()
            return one_by_one(f"they resume from different steps {starts}")
        replicated = sharding.replicated(exps[0].mesh)
        state = jax.device_put(stack([s.state for s in sessions]), replicated)
        for s in sessions:
            s.state = None
        feed = SeedsFeed(exps)
        compile_s = feed.compile(state)
    except BaseException:
        for s in sessions:
            s.close()
        raise
    for s in sessions:
        s.compile_s = compile_s
    if len(sessions) > 1:
        sessions[0].progress.say(f"{len(sessions)} seeds in one program: {list(workdirs)}")
    return runner.drive(sessions, feed, state, part=part)
