"""How jaxvae's programs are lowered for the CPU.

JAX lowers the Threefry hash behind ``jax.random`` on the CPU as a rolled loop of its five
four-round blocks (its other backends get the straight-line form), which saves compile time but
keeps the hash out of the fusions that use its bits: each block becomes a separate pass over the
random bits. jaxvae draws a fresh binarization of every training batch (78,400 Bernoulli bits per
step of the Exemplar VAE) and millions of normals in an importance-sampled evaluation, so it
registers JAX's own straight-line lowering for the CPU too. The bits are the same (the same
function, written out); the Exemplar VAE's training step runs 3-5 % faster (docs/benchmarks.md).

:func:`install` is called when :mod:`jaxvae` is imported; it affects every program lowered for the
CPU afterwards in the process, and does nothing where a JAX version lacks these internals.

:func:`compiler_options` are the XLA options the training engine is compiled with: on the CPU, the
scheduler that orders a step's operations for concurrency is turned off. A step of these small
models is a chain of dependent operations, each of which XLA already spreads over the cores; the
Exemplar VAE's and the VampPrior's steps ran 3-5 % faster without it (each program's numbers are
the same: it changes the order of independent operations, not what they compute).
"""

from __future__ import annotations


def compiler_options(devices) -> dict:
    """The engine's XLA compile options for a program on ``devices`` (an iterable of devices)."""
    cpu = all(d.platform == "cpu" for d in devices)
    return {"xla_cpu_enable_concurrency_optimized_scheduler": False} if cpu else {}


def install() -> bool:
    """Registers the straight-line Threefry lowering for the CPU (again: the same registration);
    returns whether it is active."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random.threefry2x32 import _threefry2x32_lowering_rule, threefry2x32_p
    except ImportError:  # a JAX whose internals moved: keep its default lowering
        return False
    mlir.register_lowering(threefry2x32_p, _threefry2x32_lowering_rule, platform="cpu")
    return True
