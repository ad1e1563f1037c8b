"""The Exemplar-VAE study's models: jaxvae's engine against the PyTorch reference, alternating.

Each round runs, in turns, ``jaxvae bench`` on the shipped config ``exemplar`` (the Gaussian-prior
VAE: gated MLP 784-300-300-40, batch 100) and on it with ``model.kind=vampprior`` (500
pseudo-inputs through the encoder at every step), and ``benchmarks/torch_vae.py --model gated`` and
``--model vampprior`` (the same networks, protocol and parameter count in PyTorch). jaxvae's figure
is the engine's median over its timed dispatches, PyTorch's the median over its epochs after the
first (``MODELS`` gives the steps of each: an epoch of 500 for the VAE, 200 for the VampPrior); each is the training step alone
(forward, backward, Adam, the batch's dynamic binarization). ``jaxvae bench`` also measures the
matmul peak in the same process, so every round gives the fraction of peak beside the ratio.

    make env bench-env data
    .venv/bin/python benchmarks/exemplar_speed.py --rounds 5 --output benchmarks/results/exemplar_speed.json

Prints one JSON document (medians over the rounds, and every round) on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from benchlib import REPO, emit, timed

# name -> (the PyTorch model, jaxvae's overrides, steps per timed dispatch / epoch)
MODELS = {
    "vae": ("gated", [], 500),
    "vampprior": ("vampprior", ["--config.model.kind=vampprior"], 200),
}


def _jaxvae(overrides: list[str], steps: int) -> dict:
    cmd = [sys.executable, "-m", "jaxvae", "bench", "--config", "exemplar", *overrides]
    run = timed(cmd + [f"--steps={steps}", "--repeats=3", "--iwae-k=0"])
    out = json.loads(run["stdout"].splitlines()[-1])
    return {
        "images_per_sec": out["train_images_per_sec"],
        "fraction_of_matmul_peak": out["train_fraction_of_matmul_peak"],
        "matmul_peak_gflops": out["matmul_peak_gflops"],
        "flops_per_image": out["flops_per_image"],
        "other_cpu": run["other_cpu"],
    }


def _torch(python: str, model: str, steps: int) -> dict:
    cmd = [python, "benchmarks/torch_vae.py", "--model", model, "--epochs=3", "--json"]
    run = timed(cmd + [f"--max-steps={steps}"])
    out = json.loads(run["stdout"].splitlines()[-1])
    return {"images_per_sec": out["median_images_per_sec"], "other_cpu": run["other_cpu"]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    p.add_argument("--torch-python", default=os.path.join(REPO, ".venv-torch", "bin", "python"))
    p.add_argument("--output", default="")
    args = p.parse_args(argv)
    if not os.access(args.torch_python, os.X_OK):
        sys.exit(f"no PyTorch interpreter at {args.torch_python}: run `make bench-env` first")
    rounds = []
    for r in range(args.rounds):
        row = {}
        for name in args.models:
            torch_model, overrides, steps = MODELS[name]
            jax_run = _jaxvae(overrides, steps)
            torch_run = _torch(args.torch_python, torch_model, steps)
            ratio = jax_run["images_per_sec"] / torch_run["images_per_sec"]
            row[name] = {"jaxvae": jax_run, "torch": torch_run, "speedup": ratio}
            print(
                f"round {r} {name}: jaxvae {jax_run['images_per_sec']:,.0f} img/s "
                f"({jax_run['fraction_of_matmul_peak']:.0%} of {jax_run['matmul_peak_gflops']:.0f}"
                f" GFLOP/s), torch {torch_run['images_per_sec']:,.0f}, x{ratio:.2f}",
                file=sys.stderr,
                flush=True,
            )
        rounds.append(row)
    med = statistics.median
    result = {"rounds": args.rounds, "models": {}}
    for name in args.models:
        runs = [row[name] for row in rounds]
        result["models"][name] = {
            "jaxvae_images_per_sec": med(r["jaxvae"]["images_per_sec"] for r in runs),
            "torch_images_per_sec": med(r["torch"]["images_per_sec"] for r in runs),
            "median_of_round_speedups": med(r["speedup"] for r in runs),
            "fraction_of_matmul_peak": med(r["jaxvae"]["fraction_of_matmul_peak"] for r in runs),
            "matmul_peak_gflops": med(r["jaxvae"]["matmul_peak_gflops"] for r in runs),
            "steps": MODELS[name][2],
            "flops_per_image": runs[0]["jaxvae"]["flops_per_image"],
            "speedup_all": [round(r["speedup"], 3) for r in runs],
            "max_other_cpu": max(
                max(r["jaxvae"]["other_cpu"], r["torch"]["other_cpu"]) for r in runs
            ),
        }
    result["per_round"] = rounds
    emit(result, args.output)
    return result


if __name__ == "__main__":
    main()
