"""benchmarks/gpu_roofline.py: the GPU figures' FLOP counts and roofline, checked without a GPU."""

import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_RESULTS = os.path.join(REPO, "benchmarks", "results", "gpu")


def test_fills_missing_flops_with_the_cpu_count_and_places_the_step_on_the_roofline(tmp_path):
    # A GPU bench result whose FLOPs the GPU's cost analysis could not count, and its PyTorch peer.
    bench = json.load(open(os.path.join(GPU_RESULTS, "bench_mlp_b128.json")))
    bench["flops_per_image"] = bench["iwae"]["flops_per_sample"] = None
    with open(tmp_path / "bench_mlp_b128.json", "w") as f:
        json.dump(bench, f)
    shutil.copy(os.path.join(GPU_RESULTS, "torch_mlp_b128.json"), tmp_path)
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "gpu_roofline.py"), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| mlp_b128 |" in proc.stdout
    (row,) = json.load(open(tmp_path / "summary.json"))["rows"]
    # matmul FLOPs of the 784-400-20 MLP VAE: forward F, backward 2F minus the input gradient of
    # the first layer, which is not needed
    f = 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)
    assert 3 * f - 2 * 784 * 400 <= row["flops_per_image"] <= 1.1 * 3 * f
    assert 2 * (20 * 400 + 400 * 784) <= row["iwae_flops_per_sample"] <= 1.1 * 2 * f
    peak, bw = bench["matmul_peak_gflops"] * 1e9, bench["memory_bandwidth_gbs"] * 1e9
    flop_s, byte_s = row["flops_per_image"] / peak, bench["bytes_per_image"] / bw
    assert row["bound"] == ("memory" if byte_s > flop_s else "compute")
    assert row["roofline_images_per_sec"] == pytest.approx(1 / max(flop_s, byte_s))
    assert row["fraction_of_roofline"] == pytest.approx(
        bench["train_images_per_sec"] * max(flop_s, byte_s)
    )
    torch_ips = json.load(open(tmp_path / "torch_mlp_b128.json"))["median_images_per_sec"]
    assert row["speedup"] == pytest.approx(bench["train_images_per_sec"] / torch_ips)


def test_python_dash_m_jaxvae_is_the_command():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxvae", "bench", "--config", "missing.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("jaxvae bench: error:")
