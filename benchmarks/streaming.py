"""Training speed with the training set streamed from its TFDS data source vs on the device.

Trains ``experiments/configs/peer_mlp.py`` (or ``--config``) for ``--epochs`` epochs in fresh
processes, alternating the device-resident engine (Fashion-MNIST from its IDX files, on the
device) and the streamed path (the same data prepared as a TFDS array_record data source,
``--config.data.source=tfds --config.data.stream=always``), ``--rounds`` rounds, and writes one
JSON document with each run's summary ``train_images_per_sec``, the medians, the load average
around each run and whether the two paths ended with the same ``params_digest`` (they read the
same batches).

    .venv/bin/python benchmarks/streaming.py --rounds 3   # benchmarks/results/streaming.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAXVAE = os.path.join(os.path.dirname(sys.executable), "jaxvae")


def _args(config: str, epochs: int, tfds_dir: str, streamed: bool) -> list[str]:
    args = ["train", "--config", config, f"--config.train.epochs={epochs}"]
    args.append("--config.train.progress=false")
    if streamed:
        args += [
            "--config.data.source=tfds",
            "--config.data.stream=always",
            f"--config.data.tfds_data_dir={tfds_dir}",
        ]
    return args


def _run(args: list[str], workdir: str) -> dict:
    load = os.getloadavg()[0]
    t = time.perf_counter()
    subprocess.run([JAXVAE, *args, "--workdir", workdir], check=True, cwd=REPO, capture_output=True)
    wall = time.perf_counter() - t
    with open(os.path.join(workdir, "summary.json")) as f:
        s = json.load(f)
    keep = ("train_images_per_sec", "test_nelbo", "params_digest", "steps", "compile_s")
    return {k: s[k] for k in keep} | {
        "wall_s": round(wall, 2),
        "load_1min_before": load,
        "load_1min_after": os.getloadavg()[0],
        "peak_host_memory_mb": s["peak_host_memory_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(REPO, "experiments/configs/peer_mlp.py"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/streaming.json"))
    a = parser.parse_args()
    runs: dict[str, list[dict]] = {"device_resident": [], "streamed": []}
    with tempfile.TemporaryDirectory() as tmp:
        tfds_dir = os.path.join(tmp, "tfds")
        # Prepare the TFDS copy of Fashion-MNIST once, outside the timed runs.
        prep = os.path.join(tmp, "prepare")
        subprocess.run(
            [JAXVAE, *_args(a.config, 1, tfds_dir, True), "--workdir", prep,
             "--config.data.limit_train=128", "--config.train.batch_size=128"],
            check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
        for r in range(a.rounds):
            for name in runs:
                workdir = os.path.join(tmp, f"{name}-{r}")
                args = _args(a.config, a.epochs, tfds_dir, name == "streamed")
                runs[name].append(_run(args, workdir))
                print(name, r, runs[name][-1], file=sys.stderr)
    config = os.path.relpath(a.config, REPO)
    medians = {
        name: statistics.median(x["train_images_per_sec"] for x in rs) for name, rs in runs.items()
    }
    digests = {x["params_digest"] for rs in runs.values() for x in rs}
    out = {
        "config": config,
        "epochs": a.epochs,
        "rounds": a.rounds,
        "cpus": os.cpu_count(),
        "commands": {
            name: " ".join([".venv/bin/jaxvae", *_args(config, a.epochs, "DIR", s)])
            for name, s in (("device_resident", False), ("streamed", True))
        },
        "train_images_per_sec_median": medians,
        "streamed_over_resident": medians["streamed"] / medians["device_resident"],
        "same_params_digest": len(digests) == 1,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out["train_images_per_sec_median"] | {"ratio": out["streamed_over_resident"]}))


if __name__ == "__main__":
    main()
