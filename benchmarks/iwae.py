"""Times the IWAE NLL evaluation of docs/benchmarks.md: k=5000 on the 10k Fashion-MNIST test images.

1. trains ``experiments/configs/peer_mlp.py`` into ``--workdir`` (unless it already holds a finished
   run), then times ``jaxvae eval --iwae-k 5000 --num-examples 10000`` from outside (the whole
   command: start-up, restore, the test ELBO and the IWAE bound);
2. trains the PyTorch reference with the same protocol and times its IWAE evaluation on the first
   ``--torch-num`` test images, extrapolated linearly to 10k images (it is the same computation
   per image);
3. takes the FLOPs per importance sample and the measured matmul peak from ``jaxvae bench``, for
   the FLOP floor: ``10,000 x 5,000 x FLOPs per sample / peak``.

    make env bench-env data
    .venv/bin/python benchmarks/iwae.py --output benchmarks/results/iwae.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchlib import REPO, emit, timed

BIN = os.path.dirname(sys.executable)
CONFIG = "experiments/configs/peer_mlp.py"


def _run(cmd: list[str]) -> tuple[float, str]:
    run = timed(cmd)
    return run["wall_s"], run["stdout"].splitlines()[-1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/peer_mlp")
    p.add_argument("--torch-python", default=os.path.join(REPO, ".venv-torch", "bin", "python"))
    p.add_argument("--torch-num", type=int, default=200)
    p.add_argument("--output", default="")
    args = p.parse_args(argv)
    jaxvae = os.path.join(BIN, "jaxvae")

    if not os.path.exists(os.path.join(REPO, args.workdir, "summary.json")):
        _run([jaxvae, "train", "--config", CONFIG, "--workdir", args.workdir])
    train = json.load(open(os.path.join(REPO, args.workdir, "summary.json")))
    wall, out = _run(
        [jaxvae, "eval", "--workdir", args.workdir, "--iwae-k", "5000", "--num-examples", "10000"]
    )
    ev = json.loads(out)
    _, out = _run([jaxvae, "bench", "--config", CONFIG, "--iwae-num", "20", "--repeats", "1"])
    bench = json.loads(out)
    flops = bench["iwae"]["flops_per_sample"]
    peak = bench["matmul_peak_gflops"]
    result = {
        "jaxvae": {
            "wall_s": wall,
            "test_nll": ev["test_nll"],
            "test_nll_se": ev["test_nll_se"],
            "test_nelbo": ev["test_nelbo"],
            "train_test_nelbo": train["test_nelbo"],
        },
        "flops_per_sample": flops,
        "matmul_peak_gflops": peak,
        "floor_s": 10_000 * 5_000 * flops / (peak * 1e9),
    }
    result["jaxvae"]["fraction_of_floor"] = result["floor_s"] / wall
    if os.access(args.torch_python, os.X_OK):
        _, out = _run(
            [
                args.torch_python,
                "benchmarks/torch_vae.py",
                "--model",
                "mlp",
                "--epochs",
                "10",
                "--iwae-k",
                "5000",
                "--iwae-num",
                str(args.torch_num),
                "--json",
            ]
        )
        t = json.loads(out)
        result["torch"] = {
            "num_images": t["iwae"]["num_images"],
            "seconds": t["iwae"]["seconds"],
            "extrapolated_s_for_10k": t["iwae"]["extrapolated_seconds_k5000_10k"],
            "nll_on_subset": t["iwae"]["nll"],
            "test_nelbo": t["test_nelbo"],
        }
    emit(result, args.output)
    return result


if __name__ == "__main__":
    main()
