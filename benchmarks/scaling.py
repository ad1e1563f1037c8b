"""The scale-out checks of docs/scaling.md, on one machine.

Trains ``experiments/configs/peer_mlp.py`` (or ``--config``) for ``--epochs`` epochs, each in fresh
processes, as

- one process on one device;
- one process on N forced host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``);
- two processes of N/2 devices each, joined by ``jax.distributed`` on a local port;
- a run checkpointed after epoch 1 on N devices and continued to ``--epochs`` on one device.

and prints one JSON document with each run's ``test_nelbo``, training images/s and wall time, and the
largest difference of ``test_nelbo`` from the one-device run.

    .venv/bin/python benchmarks/scaling.py --epochs 1            # the 1-epoch agreement check
    .venv/bin/python benchmarks/scaling.py --epochs 2 --devices 4
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAXVAE = os.path.join(os.path.dirname(sys.executable), "jaxvae")


def _env(devices: int) -> dict:
    flags = f"--xla_force_host_platform_device_count={devices}" if devices > 1 else ""
    return dict(os.environ, XLA_FLAGS=flags)


def _train_args(config: str, workdir: str, epochs: int) -> list[str]:
    return [
        JAXVAE,
        "train",
        "--config",
        config,
        "--workdir",
        workdir,
        f"--config.train.epochs={epochs}",
        "--config.train.progress=false",
    ]


def _summary(workdir: str, wall: float) -> dict:
    s = json.load(open(os.path.join(workdir, "summary.json")))
    keys = ("test_nelbo", "train_images_per_sec", "devices", "processes", "steps")
    return {k: s[k] for k in keys} | {"wall_s": round(wall, 2)}


def _run(cmds: list[tuple[list[str], dict]]) -> float:
    t = time.perf_counter()
    procs = [
        subprocess.Popen(c, env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c, e in cmds
    ]
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"{' '.join(p.args)} failed ({p.returncode}):\n{err.decode()[-2000:]}")
    return time.perf_counter() - t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/configs/peer_mlp.py")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--devices", type=int, default=4, help="forced devices (even)")
    args = p.parse_args(argv)
    n = args.devices
    runs = {}
    with tempfile.TemporaryDirectory(prefix="jaxvae-scaling-") as tmp:
        wd = os.path.join(tmp, "one")
        wall = _run([(_train_args(args.config, wd, args.epochs), _env(1))])
        runs["1 process, 1 device"] = _summary(wd, wall)

        wd = os.path.join(tmp, "many")
        wall = _run([(_train_args(args.config, wd, args.epochs), _env(n))])
        runs[f"1 process, {n} devices"] = _summary(wd, wall)

        wd = os.path.join(tmp, "two")
        address = f"localhost:{_free_port()}"
        cmds = [
            (
                _train_args(args.config, wd, args.epochs)
                + [
                    "--coordinator-address",
                    address,
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                ],
                _env(n // 2),
            )
            for i in range(2)
        ]
        wall = _run(cmds)
        runs[f"2 processes, {n // 2} devices each"] = _summary(wd, wall)

        if args.epochs > 1:
            wd = os.path.join(tmp, "moved")
            wall = _run([(_train_args(args.config, wd, 1), _env(n))])
            wall += _run([(_train_args(args.config, wd, args.epochs), _env(1))])
            runs[f"epoch 1 on {n} devices, then 1 device"] = _summary(wd, wall)

    base = runs["1 process, 1 device"]["test_nelbo"]
    result = {
        "config": args.config,
        "epochs": args.epochs,
        "runs": runs,
        "max_abs_nelbo_difference": max(abs(r["test_nelbo"] - base) for r in runs.values()),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
