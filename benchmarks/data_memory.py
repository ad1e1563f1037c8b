"""Host memory of a large training set: load ``dsprites_procedural``, put its training split on
the devices, and read the process's peak resident set after each (each size in a fresh process,
so each peak is its own).

    make env
    .venv/bin/python benchmarks/data_memory.py --limit-train 100000 0 \
        --output benchmarks/results/data_memory.json

``--limit-train 0`` keeps every training image (663,552). The run is the config
``experiments/configs/dsprites.py`` built by ``jaxvae.experiment.build`` (which loads the data with
the config's splits: 73,728 test images) and its device feed (``Experiment.feed``), waited for.
Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchlib import REPO, emit, timed


def peak_mib() -> float:
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return int(status["VmHWM"].split()[0]) / 1024


def measure(limit_train: int) -> dict:
    """In this process: the peak after loading and after the device feed, and the sizes."""
    import jax

    from jaxvae import config as config_lib
    from jaxvae import experiment

    config = config_lib.load_config_file(os.path.join(REPO, "experiments/configs/dsprites.py"))
    config_lib.apply_overrides(config, [f"data.limit_train={limit_train}"])
    exp = experiment.build(config)
    loaded = peak_mib()
    feed = exp.feed(0, 1)
    jax.block_until_ready(feed.data)
    d = exp.dataset
    on_device = feed.data["image"].addressable_data(0).unsafe_buffer_pointer()
    return {
        "limit_train": limit_train,
        "train_images": int(d.train_images.shape[0]),
        "train_mib": d.train_images.nbytes / 2**20,
        "test_images": int(d.test_images.shape[0]),
        "test_dtype": str(d.test_images.dtype),
        "test_mib": d.test_images.nbytes / 2**20,
        "peak_after_load_mib": loaded,
        "peak_after_device_feed_mib": peak_mib(),
        "device_uses_host_memory": on_device == d.train_images.ctypes.data,
        "backend": jax.default_backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-train", type=int, nargs="+", default=[100000, 0])
    parser.add_argument("--output", default="")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return
    runs = []
    for limit in args.limit_train:
        print(f"data_memory: limit_train={limit}", file=sys.stderr)
        out = timed([sys.executable, os.path.abspath(__file__), "--one", str(limit)])
        runs.append(json.loads(out["stdout"].splitlines()[-1]) | {"wall_s": out["wall_s"]})
    emit({"benchmark": "data_memory", "runs": runs}, args.output)


if __name__ == "__main__":
    main()
