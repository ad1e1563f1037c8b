"""jaxvae against the PyTorch reference, timed from outside (docs/benchmarks.md).

Each round runs four fresh processes, taking turns: ``jaxvae train`` for 1 epoch, the PyTorch
reference for 1 epoch, ``jaxvae train`` for 4 epochs, the PyTorch reference for 4 epochs. The
training speed of each is ``3 epochs x 59,904 images / (wall of the 4-epoch run - wall of the
1-epoch run)``: start-up, data loading, compilation and the final evaluation cancel out; what
remains is everything a user waits for per epoch: training and the test negative ELBO after each
epoch for both (as pytorch/examples does), plus jaxvae's metrics line and checkpoint. Each figure uses the median wall time over the
rounds of each run (``3 x 59,904 / (median 4-epoch wall - median 1-epoch wall)``), which a single
disturbed run cannot move much; the per-round figures and their ratios are reported beside it.

    make env bench-env data
    .venv/bin/python benchmarks/compare.py --model mlp --rounds 3
    .venv/bin/python benchmarks/compare.py --model conv --rounds 3
    .venv/bin/python benchmarks/compare.py --pool A.json B.json   # several series together

On a GPU machine whose python3 holds both JAX and PyTorch (benchmarks/gpu.sh):

    python3 benchmarks/compare.py --model mlp --torch-python python3 --torch-device cuda

Prints one JSON document on stdout (and to ``--output``), progress on stderr. Each run records
``other_cpu``, the mean number of CPUs other processes kept busy meanwhile (from /proc/stat), so a
contended measurement can be told from a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

from benchlib import REPO, emit, timed

CONFIGS = {"mlp": "experiments/configs/peer_mlp.py", "conv": "experiments/configs/peer_conv.py"}
IMAGES_PER_EPOCH = (60_000 // 128) * 128


def _jaxvae(model: str, epochs: int, workdir: str) -> dict:
    run = timed(
        [
            sys.executable,
            "-m",
            "jaxvae",
            "train",
            "--config",
            CONFIGS[model],
            "--workdir",
            workdir,
            f"--config.train.epochs={epochs}",
            "--config.train.progress=false",
        ]
    )
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    return {"wall_s": run["wall_s"], "other_cpu": run["other_cpu"], "nelbo": summary["test_nelbo"]}


def _torch(python: str, model: str, epochs: int, device: str) -> dict:
    run = timed(
        [
            python,
            "benchmarks/torch_vae.py",
            "--model",
            model,
            f"--epochs={epochs}",
            "--test-every-epoch",
            "--json",
            f"--device={device}",
        ]
        # TensorFloat-32 matrix products on a GPU, as JAX's default precision uses there.
        + (["--tf32"] if device == "cuda" else [])
    )
    out = json.loads(run["stdout"].splitlines()[-1])
    return {"wall_s": run["wall_s"], "other_cpu": run["other_cpu"], "nelbo": out["test_nelbo"]}


def summarize(rounds: list[dict]) -> dict:
    """Each framework's speed from the median wall time of each run length over ``rounds``."""

    def rate(name: str) -> float:
        walls = {
            e: statistics.median(r["runs"][f"{name}{e}"]["wall_s"] for r in rounds) for e in (1, 4)
        }
        return 3 * IMAGES_PER_EPOCH / (walls[4] - walls[1])

    jax_rate, torch_rate = rate("jax"), rate("torch")
    return {
        "jaxvae_images_per_sec": jax_rate,
        "torch_images_per_sec": torch_rate,
        "speedup": jax_rate / torch_rate,
        "median_of_round_speedups": statistics.median(r["speedup"] for r in rounds),
        "speedup_all": [round(r["speedup"], 3) for r in rounds],
        "jaxvae_4_epoch_nelbo": [r["runs"]["jax4"]["nelbo"] for r in rounds],
        "torch_4_epoch_nelbo": [r["runs"]["torch4"]["nelbo"] for r in rounds],
        "max_other_cpu": max(run["other_cpu"] for r in rounds for run in r["runs"].values()),
    }


def pool(paths: list[str]) -> dict:
    """The same figures over the rounds of several result files of one model."""
    results = [json.load(open(p)) for p in paths]
    models = {r["model"] for r in results}
    if len(models) != 1:
        sys.exit(f"--pool needs results of one model, got {sorted(models)}")
    rounds = [r for result in results for r in result["per_round"]]
    return {"model": models.pop(), "pooled": paths, "rounds": len(rounds)} | summarize(rounds)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(CONFIGS), default="mlp")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--torch-python", default=os.path.join(REPO, ".venv-torch", "bin", "python"))
    p.add_argument("--torch-device", default="cpu", help="cpu, or cuda on a GPU machine")
    p.add_argument("--output", default="")
    p.add_argument("--pool", nargs="+", default=[], help="summarize these result files together")
    args = p.parse_args(argv)
    if args.pool:
        result = pool(args.pool)
        emit(result, args.output)
        return result
    if os.sep in args.torch_python and not os.access(args.torch_python, os.X_OK):
        sys.exit(f"no PyTorch interpreter at {args.torch_python}: run `make bench-env` first")

    rounds = []
    with tempfile.TemporaryDirectory(prefix="jaxvae-compare-") as tmp:
        for r in range(args.rounds):
            runs = {
                "jax1": _jaxvae(args.model, 1, os.path.join(tmp, f"j1-{r}")),
                "torch1": _torch(args.torch_python, args.model, 1, args.torch_device),
                "jax4": _jaxvae(args.model, 4, os.path.join(tmp, f"j4-{r}")),
                "torch4": _torch(args.torch_python, args.model, 4, args.torch_device),
            }
            jax_rate = 3 * IMAGES_PER_EPOCH / (runs["jax4"]["wall_s"] - runs["jax1"]["wall_s"])
            torch_rate = (
                3 * IMAGES_PER_EPOCH / (runs["torch4"]["wall_s"] - runs["torch1"]["wall_s"])
            )
            rounds.append(
                {
                    "jaxvae_images_per_sec": jax_rate,
                    "torch_images_per_sec": torch_rate,
                    "speedup": jax_rate / torch_rate,
                    "runs": runs,
                }
            )
            print(
                f"round {r}: jaxvae {jax_rate:,.0f} img/s, torch {torch_rate:,.0f} img/s, "
                f"x{jax_rate / torch_rate:.2f}",
                file=sys.stderr,
                flush=True,
            )

    result = {"model": args.model, "config": CONFIGS[args.model], "rounds": args.rounds}
    result |= summarize(rounds) | {"torch_device": args.torch_device, "per_round": rounds}
    emit(result, args.output)
    return result


if __name__ == "__main__":
    main()
