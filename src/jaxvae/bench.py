"""``jaxvae bench``: steady-state training speed, compile time, memory and the IWAE evaluation rate.

Times the same engine ``jaxvae train`` runs (device-resident data, many steps per dispatch), after a
warm-up dispatch, as the median of several repeats.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import engine as engine_lib
from jaxvae import evaluate, sharding, summary
from jaxvae import experiment as build_lib
from jaxvae.models import capabilities as caps
from jaxvae.models import num_params


def _cost(compiled, name: str) -> float | None:
    """One entry of XLA's cost analysis of ``compiled`` ("flops", "bytes accessed"), or None."""
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        return float(cost[name]) if cost and name in cost else None
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return None


def cpu_flops(fn, *args) -> float | None:
    """FLOPs of ``fn(*args)`` as XLA's CPU compiler counts them, whatever the default device.

    The same program is counted on every backend: a GPU's cost analysis leaves out the FLOPs of
    the library calls (cuBLAS, cuDNN) its compiler turns products and convolutions into.
    """
    cpu = jax.devices("cpu")[0]
    return _cost(jax.jit(fn).lower(*jax.device_put(args, cpu)).compile(), "flops")


def _steps_per_second(step, x, repeats: int) -> float:
    """Steps ``y -> step(y, x)`` from ``y = x`` per second, 8 in each compiled dispatch: the
    median of ``repeats`` dispatches, after a warm-up one."""
    f = jax.jit(lambda x: jax.lax.fori_loop(0, 8, lambda i, y: step(y, x), x))
    jax.block_until_ready(f(x))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - t)
    return 8 / statistics.median(times)


def matmul_peak_gflops(n: int | None = None, repeats: int = 5) -> float:
    """Measured float32 matrix-product rate of the default device (median of ``repeats``), GFLOP/s.

    The reference for "fraction of peak": what this JAX/XLA reaches on a large square product
    (2048 x 2048 on CPU, 8192 x 8192 on an accelerator), at the same default matmul precision the
    training step uses.
    """
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    return 2.0 * n**3 * _steps_per_second(lambda x, a: (x @ a) * (1.0 / n), a, repeats) / 1e9


def memory_bandwidth_gbs(n: int | None = None, repeats: int = 5) -> float:
    """Measured memory bandwidth of the default device, GB/s, counting bytes read and written.

    Streams an array of ``n`` float32 (64 MiB on CPU, 1 GiB on an accelerator) through an
    elementwise update several times per dispatch, median of ``repeats``.
    """
    n = n or (2**24 if jax.default_backend() == "cpu" else 2**28)
    x = jnp.zeros((n,), jnp.float32)
    return 2 * 4 * n * _steps_per_second(lambda y, _: y * 0.5 + 1.0, x, repeats) / 1e9


def _program_memory_mb(compiled) -> dict[str, float] | None:
    """Device memory of the compiled training program (arguments, outputs, scratch), per device,
    from XLA's buffer assignment: available on every backend, CPU included."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None
    if m is None:
        return None
    names = {"arguments": "argument", "outputs": "output", "aliased": "alias", "temp": "temp"}
    out = {f"{k}_mb": getattr(m, f"{v}_size_in_bytes") / 2**20 for k, v in names.items()}
    out["total_mb"] = out["arguments_mb"] + out["outputs_mb"] - out["aliased_mb"] + out["temp_mb"]
    return out


def _device_peak_mb() -> float | None:
    stats = [d.memory_stats() for d in jax.local_devices()]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s]
    return int(max(peaks)) / 2**20 if peaks and all(p is not None for p in peaks) else None


def run(
    config,
    *,
    steps: int = 0,
    repeats: int = 3,
    iwae_k: int = 5000,
    iwae_num: int = 20,
    iwae_batch: int = 10,
) -> dict[str, Any]:
    """Measures ``config``'s training engine and IWAE evaluation; returns a JSON-able dict.

    Besides images/s it places the step on the device's roofline: FLOPs and bytes per image from
    XLA's cost analysis of one step, against the measured matmul rate and memory bandwidth.
    """
    if steps < 0 or repeats <= 0 or iwae_k < 0 or iwae_num < 0 or iwae_batch <= 0:
        raise ValueError(
            f"bench needs --steps >= 0, --repeats > 0, --iwae-k >= 0, --iwae-num >= 0 and "
            f"--iwae-batch > 0, got {steps}, {repeats}, {iwae_k}, {iwae_num}, {iwae_batch}"
        )
    exp = build_lib.build(config, stream=False)
    dataset, model, mesh, keys = exp.dataset, exp.model, exp.mesh, exp.keys
    batch = exp.train.batch_size
    n = dataset.train_images.shape[0]
    per_epoch = engine_lib.steps_per_epoch(n, batch)
    if per_epoch < 1:
        raise ValueError(f"train.batch_size={batch} is larger than the {n} training images")
    steps = min(steps or per_epoch, per_epoch)
    state = exp.init_state()
    feed = exp.feed(0, per_epoch)  # the very feed `jaxvae train` runs
    compile_s = feed.compile(state)
    one_step = (state, feed.one_batch(), keys["train"])
    flops_per_image = (cpu_flops(feed.train_step, *one_step) or 0.0) / batch or None
    # Bytes from the program compiled for this device, whose fusions decide what goes through memory.
    compiled_step = jax.jit(feed.train_step).lower(*one_step).compile()
    bytes_per_image = (_cost(compiled_step, "bytes accessed") or 0.0) / batch or None

    def dispatch(state, count):
        """Runs ``count`` steps from an epoch start; returns the state and the seconds taken."""
        state = jax.device_put(state._replace(step=jnp.int32(0)), sharding.replicated(mesh))
        t = time.perf_counter()
        state, sums = feed.run(state, count)
        jax.block_until_ready(sums)
        return state, time.perf_counter() - t

    state, _ = dispatch(state, min(steps, 20))  # warm-up
    rates = []
    for _ in range(repeats):
        state, seconds = dispatch(state, steps)
        rates.append(steps * batch / seconds)
    train_device_peak_mb = _device_peak_mb()  # before the measurements below allocate their own
    result: dict[str, Any] = {
        "config": {
            "model": f"{model.name}/{model.architecture}",
            "dataset": dataset.name,
            "batch_size": batch,
            "num_params": num_params(state.params),
            "conv_impl": model.conv_impl,
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
    peak, bandwidth = matmul_peak_gflops(), memory_bandwidth_gbs()
    result |= {"matmul_peak_gflops": peak, "memory_bandwidth_gbs": bandwidth}
    result["bytes_per_image"] = bytes_per_image
    if result["train_gflops_per_sec"]:
        result["train_fraction_of_matmul_peak"] = result["train_gflops_per_sec"] / peak
    if flops_per_image and bytes_per_image:
        # Roofline: the step can go no faster than its FLOPs at the matmul rate or its bytes at
        # the memory bandwidth, whichever takes longer.
        floor_s = max(flops_per_image / (peak * 1e9), bytes_per_image / (bandwidth * 1e9))
        result["arithmetic_intensity"] = flops_per_image / bytes_per_image
        result["roofline_images_per_sec"] = 1.0 / floor_s
        result["train_fraction_of_roofline"] = result["train_images_per_sec"] * floor_s
    if iwae_k and iwae_num and caps.has(model, caps.ImportanceWeighted):
        x = {k: v[:iwae_num] for k, v in exp.split("test").items()}
        n_x = x["image"].shape[0]
        bs = min(iwae_batch, n_x)
        head = {k: v[:bs] for k, v in x.items()}
        trained = (model, state.params, state.model_state)
        iwae = functools.partial(evaluate.evaluate_iwae, *trained, k=iwae_k, batch_size=bs)
        iwae(head, keys["eval"])  # compiled here, outside the timing
        chunk = min(500, iwae_k)
        log_px = functools.partial(evaluate.iwae_log_px, model, k=chunk, chunk=chunk)
        one = cpu_flops(log_px, *trained[1:], head, keys["eval"])
        flops_per_sample = (one or 0.0) / (bs * chunk) or None
        t = time.perf_counter()
        iw = iwae(x, keys["eval"], mesh=mesh)
        dt = time.perf_counter() - t
        result["iwae"] = {
            "k": iwae_k,
            "num_examples": int(n_x),
            "seconds": dt,
            "images_per_sec": n_x / dt,
            "samples_per_sec": n_x * iwae_k / dt,
            "estimated_s_for_10k_images": 10_000 * dt / n_x,
            "nll": iw["nll"],
            "flops_per_sample": flops_per_sample,
        }
        if flops_per_sample:
            floor = 10_000 * iwae_k * flops_per_sample / (peak * 1e9)
            result["iwae"]["floor_s_for_10k_images_at_matmul_peak"] = floor
            result["iwae"]["fraction_of_matmul_peak"] = floor / (10_000 * dt / n_x)
    result["train_program_memory"] = _program_memory_mb(feed.compiled)
    result["peak_host_memory_mb"] = summary.peak_rss_mb()
    result["peak_device_memory_mb"] = train_device_peak_mb
    result["train_data_mb"] = float(np.asarray(dataset.train_images).nbytes / 2**20)
    return result
