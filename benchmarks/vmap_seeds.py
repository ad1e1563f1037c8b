"""S seeds of one config: one vectorized program (jaxvae.seeds) against S sequential runs.

Times the training engine alone (the device-resident data, ``--steps`` steps per seed in one
dispatch, after compiling), in one process, alternating the two ways ``--rounds`` times:
sequential is S fresh states of the per-run engine (each run's ``Experiment.feed``) run one after
the other; vectorized is the S states stacked and run by ``jaxvae.seeds.seeds_feed``. Prints and
writes one JSON document: per round both wall times, the medians, the speed-up (sequential /
vectorized), the compile times, and the load average around the rounds.

    .venv/bin/python benchmarks/vmap_seeds.py --seeds 8          # benchmarks/results/vmap_seeds-cpu.json
    .venv/bin/python benchmarks/vmap_seeds.py --seeds 16 --steps 400   # on a GPU

A study sets ``jaxvae study run --seeds-at-once S`` from it; the backend's default is
``jaxvae.seeds.BACKEND_DEFAULT``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(REPO, "experiments/configs/peer_mlp.py"))
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument(
        "--steps", type=int, default=200, help="steps per seed and round (one epoch at most)"
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--out", default=None, help="default: benchmarks/results/vmap_seeds-<backend>.json"
    )
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from jaxvae import config as config_lib
    from jaxvae import data as data_lib
    from jaxvae import experiment as build_lib
    from jaxvae import seeds, sharding

    base = config_lib.load_config_file(args.config)
    dataset = data_lib.load_from_config(base.data, base.seed)
    exps = []
    for s in range(args.seeds):
        c = config_lib.from_json(config_lib.to_json(base))
        c.seed = s
        exps.append(build_lib.build(c, dataset=dataset))
    per_epoch = dataset.train_images.shape[0] // base.train.batch_size
    if args.steps > per_epoch:
        raise SystemExit(f"--steps {args.steps} is more than an epoch ({per_epoch} steps)")
    replicated = sharding.replicated(exps[0].mesh)

    t = time.time()
    # Each seed's initial state, made once: every round starts from copies of them (the engine
    # donates its state), rather than compiling each seed's initialisation again.
    initial = [e.init_state() for e in exps]
    feeds = [e.feed(0, per_epoch * e.train.epochs) for e in exps]
    compile_seq = [f.compile(s) for f, s in zip(feeds, initial, strict=True)]
    vec = seeds.seeds_feed(exps)

    def stacked():
        return jax.device_put(seeds.stack(initial), replicated)

    compile_vec = vec.compile(stacked())

    def sequential() -> float:
        states = [jax.tree.map(jnp.copy, s) for s in initial]
        jax.block_until_ready(states)
        t = time.perf_counter()
        for feed, state in zip(feeds, states, strict=True):
            jax.block_until_ready(feed.run(state, args.steps))
        return time.perf_counter() - t

    def vectorized() -> float:
        state = stacked()
        jax.block_until_ready(state)
        t = time.perf_counter()
        jax.block_until_ready(vec.run(state, args.steps))
        return time.perf_counter() - t

    sequential(), vectorized()  # warm-up
    rounds = []
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        rounds.append({"sequential_s": sequential(), "vectorized_s": vectorized()})
    load_after = os.getloadavg()
    seq = statistics.median(r["sequential_s"] for r in rounds)
    vecs = statistics.median(r["vectorized_s"] for r in rounds)
    images = args.seeds * args.steps * base.train.batch_size
    result = {
        "config": os.path.relpath(args.config, REPO),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "devices": jax.device_count(),
        "seeds": args.seeds,
        "steps_per_seed": args.steps,
        "batch_size": base.train.batch_size,
        "rounds": rounds,
        "median_sequential_s": seq,
        "median_vectorized_s": vecs,
        "speedup": seq / vecs,
        "sequential_images_per_s": images / seq,
        "vectorized_images_per_s": images / vecs,
        "compile_sequential_s": compile_seq,
        "compile_vectorized_s": compile_vec,
        "setup_s": time.time() - t,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "command": " ".join([os.path.relpath(sys.argv[0], REPO), *(argv or sys.argv[1:])]),
    }
    out = args.out or os.path.join(
        REPO, "benchmarks", "results", f"vmap_seeds-{result['backend']}.json"
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
    print(f"speed-up of {args.seeds} vectorized seeds over sequential runs: {seq / vecs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
