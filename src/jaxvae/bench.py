"""``jaxvae bench``: steady-state training speed, compile time, memory and the IWAE evaluation rate.

Times the same engine ``jaxvae train`` runs (device-resident data, many steps per dispatch), after a
warm-up dispatch, as the median of several repeats.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvae import config as config_lib
from jaxvae import data as data_lib
from jaxvae import evaluate, runner, sharding
from jaxvae import train as train_lib
from jaxvae.models import make_model, num_params


def _flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        return float(cost["flops"]) if cost and "flops" in cost else None
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return None


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matrix-product rate of the default device (median of ``repeats``), GFLOP/s.

    The reference for "fraction of peak": what this JAX/XLA reaches on a large square product.
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    reps = 8
    f = jax.jit(lambda a: jax.lax.fori_loop(0, reps, lambda i, x: (x @ a) * (1.0 / n), a))
    jax.block_until_ready(f(a))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a))
        times.append(time.perf_counter() - t)
    return 2.0 * n**3 * reps / statistics.median(times) / 1e9


def _program_memory_mb(compiled) -> dict[str, float] | None:
    """Device memory of the compiled training program (arguments, outputs, scratch), per device,
    from XLA's buffer assignment: available on every backend, CPU included."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None
    if m is None:
        return None
    mb = lambda b: b / 2**20
    out = {
        "arguments_mb": mb(m.argument_size_in_bytes),
        "outputs_mb": mb(m.output_size_in_bytes),
        "aliased_mb": mb(m.alias_size_in_bytes),
        "temp_mb": mb(m.temp_size_in_bytes),
    }
    out["total_mb"] = out["arguments_mb"] + out["outputs_mb"] - out["aliased_mb"] + out["temp_mb"]
    return out


def _device_peak_bytes() -> int | None:
    stats = [d.memory_stats() for d in jax.local_devices()]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s]
    return int(max(peaks)) if peaks and all(p is not None for p in peaks) else None


def run(
    config: ml_collections.ConfigDict,
    *,
    steps: int = 0,
    repeats: int = 3,
    iwae_k: int = 5000,
    iwae_num: int = 20,
) -> dict[str, Any]:
    """Measures ``config``'s training engine and IWAE evaluation; returns a JSON-able dict."""
    if steps < 0 or repeats <= 0 or iwae_k < 0 or iwae_num < 0:
        raise ValueError(
            f"bench needs --steps >= 0, --repeats > 0, --iwae-k >= 0 and --iwae-num >= 0, got "
            f"{steps}, {repeats}, {iwae_k}, {iwae_num}"
        )
    config_lib.validate(config)
    dataset = data_lib.load_from_config(config.data, config.seed)
    spec = config_lib.model_spec(config, dataset.image_shape)
    model = make_model(spec)
    mesh = sharding.make_mesh()
    batch = config.train.batch_size
    sharding.check_batch_size(batch, mesh)
    n = dataset.train_images.shape[0]
    per_epoch = train_lib.steps_per_epoch(n, batch)
    steps = min(steps or per_epoch, per_epoch)
    tx = train_lib.make_optimizer(config.train)
    step_fn = train_lib.make_train_step(model, config_lib.objective_spec(config), tx)
    keys = runner.run_keys(config.seed)
    init = jax.jit(
        lambda k: train_lib.init_state(model, tx, k), out_shardings=sharding.replicated(mesh)
    )
    state = init(keys["init"])
    images = sharding.put_replicated(dataset.train_images, mesh)
    engine = train_lib.make_engine(step_fn, num_examples=n, batch_size=batch, mesh=mesh)

    t = time.perf_counter()
    compiled = engine.lower(state, images, keys["train"], keys["data"], jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t
    one_step = jax.jit(step_fn).lower(state, images[:batch], keys["train"]).compile()
    flops_per_image = (_flops(one_step) or 0.0) / batch or None

    def dispatch(state, count):
        """Runs ``count`` steps from an epoch start; returns the state and the seconds taken."""
        state = jax.device_put(state._replace(step=jnp.int32(0)), sharding.replicated(mesh))
        t = time.perf_counter()
        state, sums = compiled(state, images, keys["train"], keys["data"], jnp.int32(count))
        jax.block_until_ready(sums)
        return state, time.perf_counter() - t

    state, _ = dispatch(state, min(steps, 20))  # warm-up
    rates = []
    for _ in range(repeats):
        state, seconds = dispatch(state, steps)
        rates.append(steps * batch / seconds)
    result: dict[str, Any] = {
        "config": {
            "model": f"{spec.kind}/{spec.architecture}",
            "dataset": dataset.name,
            "batch_size": batch,
            "num_params": num_params(state.params),
            "conv_impl": spec.conv_impl,
        },
        "backend": jax.default_backend(),
        "devices": mesh.devices.size,
        "device_kind": jax.devices()[0].device_kind,
        "timed_steps": steps,
        "repeats": repeats,
        "train_images_per_sec": statistics.median(rates),
        "train_images_per_sec_all": rates,
        "compile_s": compile_s,
        "flops_per_image": flops_per_image,
        "train_gflops_per_sec": (
            statistics.median(rates) * flops_per_image / 1e9 if flops_per_image else None
        ),
    }
    peak = matmul_peak_gflops()
    result["matmul_peak_gflops"] = peak
    if result["train_gflops_per_sec"]:
        result["train_fraction_of_matmul_peak"] = result["train_gflops_per_sec"] / peak
    if iwae_k and iwae_num and spec.stochastic:
        x = dataset.test_images[:iwae_num]
        bs = 10 if iwae_num >= 10 else iwae_num
        evaluate.evaluate_iwae(model, state.params, x[:bs], keys["eval"], k=iwae_k, batch_size=bs)
        chunk = min(500, iwae_k)
        one = evaluate.iwae_cost(model, state.params, x[:bs], keys["eval"], k=chunk, chunk=chunk)
        flops_per_sample = (_flops(one) or 0.0) / (bs * chunk) or None
        t = time.perf_counter()
        iw = evaluate.evaluate_iwae(
            model, state.params, x, keys["eval"], k=iwae_k, batch_size=bs, mesh=mesh
        )
        dt = time.perf_counter() - t
        result["iwae"] = {
            "k": iwae_k,
            "num_examples": int(x.shape[0]),
            "seconds": dt,
            "images_per_sec": x.shape[0] / dt,
            "samples_per_sec": x.shape[0] * iwae_k / dt,
            "estimated_s_for_10k_images": 10_000 * dt / x.shape[0],
            "nll": iw["nll"],
            "flops_per_sample": flops_per_sample,
        }
        if flops_per_sample:
            floor = 10_000 * iwae_k * flops_per_sample / (peak * 1e9)
            result["iwae"]["floor_s_for_10k_images_at_matmul_peak"] = floor
            result["iwae"]["fraction_of_matmul_peak"] = floor / (10_000 * dt / x.shape[0])
    result["train_program_memory"] = _program_memory_mb(compiled)
    result["peak_host_memory_mb"] = runner._peak_rss_mb()
    result["peak_device_memory_mb"] = (
        _device_peak_bytes() / 2**20 if _device_peak_bytes() is not None else None
    )
    result["train_data_mb"] = float(np.asarray(dataset.train_images).nbytes / 2**20)
    return result
