"""Places the GPU runs of ``benchmarks/gpu.sh`` on the roofline and against PyTorch.

Reads the ``bench_*.json`` and ``torch_*.json`` files that ``gpu.sh`` wrote; where a bench file
lacks FLOPs (``jaxvae bench`` before it counted them with the CPU compiler: a GPU's cost analysis
leaves out cuBLAS and cuDNN calls), counts them here with :func:`jaxvae.bench.cpu_flops`, for the
same config, batch size and convolution formulation. Runs anywhere; needs no GPU.

    .venv/bin/python benchmarks/gpu_roofline.py benchmarks/results/gpu

Writes ``summary.json`` into that folder and prints a markdown table.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import jax
import jax.numpy as jnp

from jaxvae import bench, evaluate, experiment, models
from jaxvae import config as config_lib
from jaxvae import engine as train_lib

CONFIGS = {"mlp": "experiments/configs/peer_mlp.py", "conv": "experiments/configs/peer_conv.py"}
IMAGE_SHAPE = (28, 28, 1)


def _counts(model_name: str, batch: int, conv_impl: str, iwae_batch: int, chunk: int):
    """(training FLOPs per image, IWAE FLOPs per importance sample), counted on the CPU."""
    config = config_lib.load_config_file(CONFIGS[model_name])
    config_lib.apply_overrides(
        config, [f"train.batch_size={batch}", f"model.conv_impl={conv_impl}"]
    )
    exp = experiment.build(config, info=models.DataInfo(IMAGE_SHAPE), load_data=False)
    model, tx = exp.model, exp.tx
    step_fn = exp.train_step()
    state = train_lib.init_state(model, tx, jax.random.key(0))
    batch_of = lambda n: {
        "image": jnp.zeros((n, *IMAGE_SHAPE), jnp.float32),
        "label": jnp.zeros((n,), jnp.int32),
    }
    train = bench.cpu_flops(step_fn, state, batch_of(batch), jax.random.key(1)) / batch
    iwae = bench.cpu_flops(
        lambda p, s, x_, k: evaluate.iwae_log_px(model, p, s, x_, k, k=chunk, chunk=chunk),
        state.params,
        state.model_state,
        batch_of(iwae_batch),
        jax.random.key(2),
    ) / (iwae_batch * chunk)
    return train, iwae


def summarize(folder: str) -> dict:
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "bench_*.json"))):
        name = os.path.basename(path)[len("bench_") : -len(".json")]
        b = json.load(open(path))
        model_name = b["config"]["model"].split("/")[1]
        batch = b["config"]["batch_size"]
        flops, iwae_flops = b["flops_per_image"], (b.get("iwae") or {}).get("flops_per_sample")
        if flops is None or ("iwae" in b and iwae_flops is None):
            flops, iwae_flops = _counts(model_name, batch, b["config"]["conv_impl"], 100, 500)
        peak, bw, nbytes = b["matmul_peak_gflops"], b["memory_bandwidth_gbs"], b["bytes_per_image"]
        ips = b["train_images_per_sec"]
        floor_s = max(flops / (peak * 1e9), nbytes / (bw * 1e9))
        row = {
            "run": name,
            "model": model_name,
            "batch_size": batch,
            "conv_impl": b["config"]["conv_impl"],
            "device_kind": b["device_kind"],
            "jaxvae_images_per_sec": ips,
            "flops_per_image": flops,
            "bytes_per_image": nbytes,
            "train_tflops_per_sec": ips * flops / 1e12,
            "matmul_peak_tflops": peak / 1e3,
            "memory_bandwidth_tbs": bw / 1e3,
            "fraction_of_matmul_peak": ips * flops / (peak * 1e9),
            "bound": "memory" if nbytes / bw > flops / peak else "compute",
            "roofline_images_per_sec": 1 / floor_s,
            "fraction_of_roofline": ips * floor_s,
            "compile_s": b["compile_s"],
            "program_memory_mb": b["train_program_memory"]["total_mb"],
            "peak_device_memory_mb": b["peak_device_memory_mb"],
        }
        torch_path = os.path.join(folder, f"torch_{model_name}_b{batch}.json")
        if os.path.exists(torch_path):
            t = json.load(open(torch_path))
            row["torch_images_per_sec"] = t["median_images_per_sec"]
            row["speedup"] = ips / t["median_images_per_sec"]
            if "iwae" in b and "iwae" in t:
                row["iwae_jaxvae_s_for_10k"] = b["iwae"]["estimated_s_for_10k_images"]
                row["iwae_torch_s_for_10k"] = t["iwae"]["extrapolated_seconds_k5000_10k"]
                row["iwae_flops_per_sample"] = iwae_flops
                row["iwae_floor_s_for_10k"] = 10_000 * 5000 * iwae_flops / (peak * 1e9)
        rows.append(row)
    return {"rows": rows}


def _table(rows: list[dict]) -> str:
    lines = [
        "| run | jaxvae img/s | PyTorch img/s | ratio | FLOPs/img | TFLOP/s | of matmul peak "
        "| bound | of roofline |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        torch_ips = r.get("torch_images_per_sec")
        torch_col = f"{torch_ips:,.0f} | {r['speedup']:.2f}" if torch_ips else "- | -"
        lines.append(
            f"| {r['run']} | {r['jaxvae_images_per_sec']:,.0f} | {torch_col} | "
            f"{r['flops_per_image'] / 1e6:.2f} M | "
            f"{r['train_tflops_per_sec']:.1f} | {100 * r['fraction_of_matmul_peak']:.1f} % | "
            f"{r['bound']} | {100 * r['fraction_of_roofline']:.0f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="benchmarks/results/gpu")
    args = p.parse_args(argv)
    result = summarize(args.folder)
    with open(os.path.join(args.folder, "summary.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(_table(result["rows"]))
    return result


if __name__ == "__main__":
    main()
