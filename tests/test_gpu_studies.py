"""experiments/gpu_studies.sh rehearsed on CPU: its dry run (JAXVAE_GPU_STUDIES_DRY_RUN=1) runs
every command line of the script at a tiny budget, so that a typo or a broken stage fails here
rather than in a GPU's first minutes. To keep it short: the first of the Exemplar study's three
shards (one variant, its two seeds vectorized), and none of the IWAE table's twelve (its stage
runs the same `jaxvae study run` line with another file and overrides; the whole dry run, IWAE
runs included, is a documented command of docs/studies.md)."""

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from jaxvae.studies import progress
from tests.conftest import REPO


def test_the_gpu_script_rehearses_on_cpu(tmp_path):
    out, tarball = tmp_path / "gpu", tmp_path / "gpu.tgz"
    env = dict(
        os.environ,
        XLA_FLAGS="",
        PYTHON=sys.executable,
        JAXVAE_GPU_STUDIES_DRY_RUN="1",
        JAXVAE_GPU_EXEMPLAR_PROCS="1",
        JAXVAE_GPU_IWAE_PROCS="0",
        JAXVAE_GPU_TARBALL=str(tarball),
    )
    proc = subprocess.run(
        ["bash", "experiments/gpu_studies.sh", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text()
    # 1. The vectorized seeds' speed-up, from its medians.
    vmap = json.load(open(out / "vmap_seeds.json"))
    assert vmap["seeds"] == 2 and vmap["backend"] == "cpu"
    speedup = vmap["median_sequential_s"] / vmap["median_vectorized_s"]
    assert vmap["speedup"] == pytest.approx(speedup)
    assert (
        f"vmap_seeds (exit 0): speed-up of 2 vectorized seeds over sequential runs: {speedup:.2f}x"
        in summary
    )
    # 2. The Exemplar study's first shard: one variant's two seeds in one program, at the dry
    # run's overrides, ended by itself (exit 0); 3. the IWAE table: none asked for.
    assert re.search(r"exemplar_fmnist: exit codes 0 \(", summary)
    assert "iwae_table1_fmnist: not started (0 processes asked for" in summary
    assert "2 seeds in one program" in (out / "exemplar_fmnist.log").read_text()
    workdir = str(out / "exemplar_fmnist")
    assert json.load(open(out / "exemplar_fmnist" / "study.json"))["identity"]["overrides"] == {
        "data.limit_test": "64",
        "data.limit_train": "300",
        "data.validation_size": "100",
        "eval.iwae_k": "3",
        "eval.iwae_num_examples": "32",
        "eval.num_pictures": "4",
        "objective.warmup_steps": "4",
        "train.epochs": "2",
    }
    assert [s.state for s in progress.progress(workdir)] == ["done", "pending", "pending"] * 2
    # The report of what has finished, and where the study stands: the other variants' runs
    # planned from the finished ones' training images (2 epochs of 300 // 100 steps).
    assert "report (exit code at its end)" in summary and summary.count("\nexit 0\n") == 1
    assert "**Incomplete**" in (out / "exemplar_fmnist" / "report" / "report.md").read_text()
    assert "6 runs: 2 done, 0 running, 0 failed, 4 pending" in summary
    assert re.search(r"^vae_gaussian-seed1\s+done\s+6/6$", summary, re.M)
    assert re.search(r"^vampprior-seed0\s+pending\s+0/6\s+-\s+-$", summary, re.M)
    assert (
        "total: 12 of 36 steps (33.3 %) (+ 4 run(s) of model families not measured yet)" in summary
    )
    assert re.search(r"gpu_studies: done in \d+ s\n$", summary)
    # The tarball: everything but checkpoints and the compilation cache.
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "./exemplar_fmnist/runs/vae_gaussian-seed1/summary.json" in names
    assert "./summary.txt" in names and "./vmap_seeds.json" in names
    assert not [n for n in names if "checkpoints" in n or "xla-cache" in n]
