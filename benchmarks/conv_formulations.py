"""Training speed of the conv VAE under each convolution formulation (docs/conv-formulations.md).

Times the full training step of the benchmarks' conv VAE (experiments/configs/peer_conv.py):
forward, backward and Adam update, batch 128, many steps inside one `jax.lax.scan` (as jaxvae's
training loop runs an epoch per dispatch), on random images in [0, 1]. Compilation is excluded;
each variant is timed ``--repeats`` times, the variants taking turns so that slow drifts in the
load of a shared machine hit them alike, and the median is reported. Variants:

- ``fast``: `jaxvae.convs` with ``impl="fast"``;
- ``lax``: `jaxvae.convs` with ``impl="lax"`` (`lax.conv_general_dilated` / `lax.conv_transpose`,
  what flax's ``nn.Conv`` and ``nn.ConvTranspose`` run); slow inside a scan on XLA:CPU, so it is
  timed over ``--lax-steps`` steps;
- ``im2col``: an earlier conv-free formulation, kept for comparison: patches from nine strided
  slices joined by one concatenation, transposed convolutions as a matrix product over each
  pixel's 2x2 neighbourhood followed by depth-to-space, backward passes by autodiff;
- ``fast-flat-gather`` and ``fast-wide-left``: ``fast`` with one of its choices undone (patches
  joined by one flat concatenation; weight gradients with the wider operand on the left).

    .venv/bin/python benchmarks/conv_formulations.py       # all variants -> benchmarks/results/
    .venv/bin/python benchmarks/conv_formulations.py --variants fast,lax --output /tmp/c.json

Prints a table on stderr and one JSON document on stdout, and writes that document to ``--output``
(default ``benchmarks/results/conv_formulations.json``; ``--output ''`` writes none). Each run also
records ``other_cpu``: the mean number of CPUs that other processes kept busy during it
(from /proc/stat), to tell a quiet measurement from a contended one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxvae import convs

LATENTS = 16
IMAGE = (28, 28, 1)
VARIANTS = ("fast", "lax", "im2col", "fast-flat-gather", "fast-wide-left")
DEFAULT_OUTPUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "conv_formulations.json"
)


# --------------------------------------------------------------------------- formulations


def _im2col_conv(x, kernel, bias, stride):
    """Patches from kh*kw strided slices of the padded input, joined by one concatenation."""
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    taps = [
        lax.slice(
            xp,
            (0, i, j, 0),
            (n, i + stride * (oh - 1) + 1, j + stride * (ow - 1) + 1, cin),
            (1, stride, stride, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(taps, -1) @ kernel.reshape(-1, cout) + bias


def _im2col_conv_transpose(x, kernel, bias, stride):
    """3x3 stride-2 'SAME' transposed conv: 2x2-neighbourhood matrix product, depth-to-space.

    Output pixel ``2a + p`` gets tap 1 of input ``a`` when ``p = 1``, and taps 0 and 2 of
    inputs ``a - 1`` and ``a`` when ``p = 0``.
    """
    if stride != 2 or kernel.shape[:2] != (3, 3):
        raise ValueError(
            f"the im2col transposed conv needs a 3x3 kernel and stride 2, got kernel shape "
            f"{kernel.shape} and stride {stride}"
        )
    n, h, w, cin = x.shape
    cout = kernel.shape[3]
    taps = {(0, 0): 0, (0, 1): 2, (1, 1): 1}  # (output phase, neighbour) -> kernel tap
    big = jnp.zeros((2, 2, cin, 2, 2, cout), kernel.dtype)
    for (pi, di), ti in taps.items():
        for (pj, dj), tj in taps.items():
            big = big.at[di, dj, :, pi, pj, :].set(kernel[ti, tj])
    xp = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    nbrs = [xp[:, :h, :w], xp[:, :h, 1:], xp[:, 1:, :w], xp[:, 1:, 1:]]
    y = jnp.concatenate(nbrs, -1) @ big.reshape(4 * cin, 4 * cout)
    y = y.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, cout) + bias


def _flat_gather(x, ah, aw):
    """`convs._gather` with the tap windows joined by one flat concatenation."""
    return jnp.concatenate(convs._tap_windows(x, ah, aw), -1)


def _wide_left(a, b):
    """`convs._contract_rows` without the operand swap: ``a^T b`` as written."""
    return lax.dot_general(a, b, (((0,), (0,)), ((), ())))


@contextlib.contextmanager
def _patched(variant: str) -> Iterator[None]:
    """Swaps one helper of `jaxvae.convs` while a ``fast-*`` variant is traced."""
    patches = {
        "fast-flat-gather": ("_gather", _flat_gather),
        "fast-wide-left": ("_contract_rows", _wide_left),
    }
    if variant not in patches:
        yield
        return
    with mock.patch.object(convs, *patches[variant]):
        yield


def _layers(variant: str) -> tuple[Callable, Callable]:
    """(conv, conv_transpose) functions ``f(x, kernel, bias, stride)`` of a variant."""
    if variant == "im2col":
        return _im2col_conv, _im2col_conv_transpose
    impl = "lax" if variant == "lax" else "fast"

    def conv(x, k, b, stride):
        return convs.conv2d(x, k, b, stride=stride, impl=impl)

    def conv_transpose(x, k, b, stride):
        return convs.conv_transpose2d(x, k, b, stride=stride, impl=impl)

    return conv, conv_transpose


# --------------------------------------------------------------------------- the VAE


def init_params(seed: int) -> dict[str, jax.Array]:
    """The conv VAE's parameters: LeCun-normal weights (flax's default), zero biases."""
    rng = np.random.default_rng(seed)
    shapes = {
        "enc1": (3, 3, 1, 32),
        "enc2": (3, 3, 32, 64),
        "enc_dense": (7 * 7 * 64, 2 * LATENTS),
        "dec_dense": (LATENTS, 7 * 7 * 64),
        "dec1": (3, 3, 64, 32),
        "dec2": (3, 3, 32, 1),
    }
    params = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1]))
        params[name] = jnp.asarray(rng.normal(size=shape) / np.sqrt(fan_in), jnp.float32)
        params[name + "_b"] = jnp.zeros(shape[-1], jnp.float32)
    return params


def make_loss(conv: Callable, conv_transpose: Callable) -> Callable:
    """Negative ELBO per image (batch mean): Bernoulli log-likelihood of the logits and the
    analytic KL of the diagonal Gaussian posterior to N(0, I); one reparameterised sample."""

    def loss(p, x, key):
        n = x.shape[0]
        h = jax.nn.relu(conv(x, p["enc1"], p["enc1_b"], 2))
        h = jax.nn.relu(conv(h, p["enc2"], p["enc2_b"], 2))
        stats = h.reshape(n, -1) @ p["enc_dense"] + p["enc_dense_b"]
        mean, log_var = stats[:, :LATENTS], stats[:, LATENTS:]
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
        h = jax.nn.relu(z @ p["dec_dense"] + p["dec_dense_b"]).reshape(n, 7, 7, 64)
        h = jax.nn.relu(conv_transpose(h, p["dec1"], p["dec1_b"], 2))
        logits = conv_transpose(h, p["dec2"], p["dec2_b"], 2).reshape(n, -1)
        log_lik = jnp.sum(x.reshape(n, -1) * logits - jax.nn.softplus(logits), axis=1)
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)
        return jnp.mean(kl - log_lik)

    return loss


def make_epoch(variant: str, steps: int, learning_rate: float = 1e-3) -> tuple[Callable, Callable]:
    """A jitted ``epoch(params, opt_state, data, key) -> (params, opt_state, losses)`` running
    ``steps`` Adam steps in one `lax.scan` (batch ``i`` is ``data[i % len(data)]``), and the
    optimizer's ``init``."""
    loss = make_loss(*_layers(variant))
    opt = optax.adam(learning_rate)

    def epoch(params, opt_state, data, key):
        def step(carry, i):
            params, opt_state = carry
            x = lax.dynamic_index_in_dim(data, i % data.shape[0], keepdims=False)
            value, grads = jax.value_and_grad(loss)(params, x, jax.random.fold_in(key, i))
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), losses = lax.scan(step, (params, opt_state), jnp.arange(steps))
        return params, opt_state, losses

    return jax.jit(epoch), opt.init


# --------------------------------------------------------------------------- timing


def _busy_cpus() -> float | None:
    """CPU-seconds spent busy by the whole machine so far, or None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:8]]
    except OSError:
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _timed(fn: Callable[[], object]) -> tuple[float, float | None]:
    """Wall seconds of ``fn()`` (blocked until ready) and other processes' mean busy CPUs."""
    busy0, own0 = _busy_cpus(), time.process_time()
    start = time.perf_counter()
    jax.block_until_ready(fn())
    wall = time.perf_counter() - start
    busy1, own1 = _busy_cpus(), time.process_time()
    if busy0 is None or busy1 is None:
        return wall, None
    return wall, max(0.0, (busy1 - busy0) - (own1 - own0)) / wall


def run(
    variants: list[str], steps: int, lax_steps: int, repeats: int, batch: int, seed: int
) -> dict:
    """Compiles every variant, then times them in turns; returns the JSON-ready results."""
    data = jax.random.uniform(jax.random.key(seed), (16, batch, *IMAGE), jnp.float32)
    key = jax.random.key(seed + 1)
    params = init_params(seed)
    runs = {}
    for variant in variants:
        n = lax_steps if variant == "lax" else steps
        with _patched(variant):
            epoch, opt_init = make_epoch(variant, n)
            args = (params, opt_init(params), data, key)
            start = time.perf_counter()
            _, _, losses = jax.block_until_ready(epoch(*args))
            first_call = time.perf_counter() - start
        runs[variant] = dict(fn=lambda e=epoch, a=args: e(*a), steps=n, first_call=first_call)
        runs[variant]["losses"] = np.asarray(losses)
        print(f"compiled {variant} ({first_call:.1f} s with the first run)", file=sys.stderr)
    times = {v: [] for v in variants}
    other = {v: [] for v in variants}
    for _ in range(repeats):
        for variant in variants:
            wall, busy = _timed(runs[variant]["fn"])
            times[variant].append(wall)
            other[variant].append(busy)
    common = min(r["steps"] for r in runs.values())
    results = {}
    for variant in variants:
        n = runs[variant]["steps"]
        median = statistics.median(times[variant])
        results[variant] = {
            "images_per_s": batch * n / median,
            "ms_per_step": 1000 * median / n,
            "steps_per_run": n,
            "run_seconds": times[variant],
            "other_cpu": other[variant],
            "first_call_seconds": runs[variant]["first_call"],
            f"loss_after_{common}_steps": float(runs[variant]["losses"][common - 1]),
        }
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"from {VARIANTS}")
    parser.add_argument("--steps", type=int, default=300, help="scan length of a timed run")
    parser.add_argument("--lax-steps", type=int, default=20, help="scan length for 'lax'")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (>= 3)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help="write the JSON document here (default: benchmarks/results/conv_formulations.json)",
    )
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; choose from {VARIANTS}")
    if args.repeats < 3:
        parser.error(f"--repeats must be at least 3, got {args.repeats}")
    if args.steps < 1 or args.lax_steps < 1:
        parser.error(
            f"--steps and --lax-steps must be positive, got {args.steps}, {args.lax_steps}"
        )

    results = run(variants, args.steps, args.lax_steps, args.repeats, args.batch, args.seed)
    doc = {
        "benchmark": "conv VAE training step (forward, backward, Adam) inside lax.scan",
        "batch": args.batch,
        "repeats": args.repeats,
        "statistic": "median",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "results": results,
    }
    print(f"{'variant':18s} {'images/s':>9s} {'ms/step':>8s}  other CPUs busy", file=sys.stderr)
    for variant, r in results.items():
        busy = [b for b in r["other_cpu"] if b is not None]
        load = f"{max(busy):.2f} max" if busy else "n/a"
        print(
            f"{variant:18s} {r['images_per_s']:9.0f} {r['ms_per_step']:8.2f}  {load}",
            file=sys.stderr,
        )
    text = json.dumps(doc, indent=2)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")
        print(f"written to {args.output}", file=sys.stderr)
    return doc


if __name__ == "__main__":
    main()
