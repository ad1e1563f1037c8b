"""Per-function XLA options, chosen by measurement (docs/benchmarks.md).

On CPU, XLA hands matrix products to YNNPACK and by default also fuses the elementwise work around
them into the same YNNPACK call. For training steps that is the fastest choice measured here; for
the forward-only evaluation functions (test ELBO, IWAE, reconstructions) it makes the transcendental
functions of the likelihood several times slower than XLA's own fused loops. ``inference_jit``
compiles such functions with YNNPACK limited to the products themselves. The options are passed to
that compilation only: nothing global (``XLA_FLAGS``) changes, and other backends are untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

_CPU_INFERENCE_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


def inference_options(backend: str | None = None) -> dict[str, str] | None:
    """The compiler options ``inference_jit`` uses on ``backend`` (default: JAX's default)."""
    return dict(_CPU_INFERENCE_OPTIONS) if (backend or jax.default_backend()) == "cpu" else None


def inference_jit(static_argnums: Sequence[int] = ()) -> Callable[[Callable], Callable]:
    """Like ``functools.partial(jax.jit, static_argnums=...)``, with :func:`inference_options`.

    The backend is looked up at the first call, not at import. Should this XLA not know an option,
    the function is compiled without the options rather than failing.
    """

    def wrap(fun: Callable) -> Callable:
        plain = jax.jit(fun, static_argnums=tuple(static_argnums))
        chosen: list[Any] = []

        def jitted():
            if not chosen:
                options = inference_options()
                chosen.append(
                    jax.jit(fun, static_argnums=tuple(static_argnums), compiler_options=options)
                    if options
                    else plain
                )
            return chosen[0]

        @functools.wraps(fun)
        def call(*args):
            f = jitted()
            try:
                return f(*args)
            except jax.errors.JaxRuntimeError as e:
                if f is plain or "xla_cpu_experimental_ynn_fusion_type" not in str(e):
                    raise
                chosen[0] = plain
                return plain(*args)

        call.lower = lambda *args: jitted().lower(*args)
        return call

    return wrap
