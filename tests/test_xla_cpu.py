"""jaxvae's CPU lowering of jax.random's hash: active once jaxvae is imported, the same bits."""

from __future__ import annotations

import io
import subprocess
import sys

import jax
import numpy as np

import jaxvae  # noqa: F401 - installs the lowering
from jaxvae import xla_cpu

_DRAW = "jax.random.bits(jax.random.fold_in(jax.random.key(7), 3), (3, 1000))"


def test_the_hash_is_straight_line_and_draws_the_bits_of_jax_default():
    assert xla_cpu.install()
    hlo = jax.jit(lambda k: jax.random.uniform(k, (64, 784))).lower(jax.random.key(0)).as_text()
    assert "while" not in hlo  # JAX's default CPU lowering is a rolled loop of 5 blocks
    ours = np.asarray(eval(_DRAW))  # noqa: S307 - the same expression as in the child
    code = f"import jax, numpy as np, sys; np.save(sys.stdout.buffer, np.asarray({_DRAW}))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    default = np.load(io.BytesIO(child.stdout))
    child_hlo = subprocess.run(
        [
            sys.executable,
            "-c",
            "import jax; print(jax.jit(lambda k: jax.random.uniform(k, (64, 784)))"
            ".lower(jax.random.key(0)).as_text())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "while" in child_hlo  # so the test above compares two different lowerings
    np.testing.assert_array_equal(ours, default)
