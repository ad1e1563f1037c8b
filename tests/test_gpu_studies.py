"""experiments/gpu_studies.sh rehearsed on CPU: its dry run (JAXVAE_GPU_STUDIES_DRY_RUN=1) runs
every command line of the script at a tiny budget, so that a typo or a broken stage fails here
rather than in a GPU's first minutes. To keep it short: the first of the Exemplar study's three
shards (one variant, its two seeds vectorized) and the first run of the IWAE table."""

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from jaxvae.studies import report
from tests.conftest import REPO


def test_the_gpu_script_rehearses_on_cpu(tmp_path):
    out, tarball = tmp_path / "gpu", tmp_path / "gpu.tgz"
    env = dict(
        os.environ,
        XLA_FLAGS="",
        PYTHON=sys.executable,
        JAXVAE_GPU_STUDIES_DRY_RUN="1",
        JAXVAE_GPU_EXEMPLAR_PROCS="1",
        JAXVAE_GPU_IWAE_PROCS="1",
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
    # run's overrides; 3. the IWAE table's first run. Every stage ended by itself (exit 0).
    assert re.search(r"exemplar_fmnist: exit codes 0 \(", summary)
    assert re.search(r"iwae_table1_fmnist: exit codes 0 \(", summary)
    assert "2 seeds in one program" in (out / "exemplar_fmnist.log").read_text()
    states = {}
    for name in ("exemplar_fmnist", "iwae_table1_fmnist"):
        study = json.load(open(out / name / "study.json"))["identity"]
        assert study["overrides"]["eval.iwae_k"] == "3"
        states[name] = [s.state for s in report.status(str(out / name))]
    assert states == {
        "exemplar_fmnist": ["done", "pending", "pending"] * 2,
        "iwae_table1_fmnist": ["done"] + ["pending"] * 11,
    }
    # The reports of what has finished, and where each study stands.
    assert summary.count("report (exit code at its end)") == 2 and summary.count("\nexit 0\n") == 2
    for name, done in (("exemplar_fmnist", 2), ("iwae_table1_fmnist", 1)):
        assert "**Incomplete**" in (out / name / "report" / "report.md").read_text()
        total = len(states[name])
        assert f"{total} runs: {done} done, 0 running, 0 failed, {total - done} pending" in summary
    assert re.search(r"^vae_gaussian-seed1\s+done\s+6/6$", summary, re.M)  # 2 epochs of 3 steps
    assert re.search(r"gpu_studies: done in \d+ s\n$", summary)
    # The tarball: everything but checkpoints and the compilation cache.
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "./exemplar_fmnist/runs/vae_gaussian-seed1/summary.json" in names
    assert "./summary.txt" in names and "./vmap_seeds.json" in names
    assert not [n for n in names if "checkpoints" in n or "xla-cache" in n]
