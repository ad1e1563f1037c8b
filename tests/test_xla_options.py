"""Per-function compiler options of the evaluation functions."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import xla_options


def test_options_apply_to_cpu_only():
    assert xla_options.inference_options("cpu") == {
        "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
    }
    assert xla_options.inference_options("gpu") is None
    assert xla_options.inference_options("tpu") is None


def _softplus_sum(scale, x, w):
    logits = x @ w
    return scale * jnp.sum(jnp.maximum(logits, 0) + jnp.log1p(jnp.exp(-jnp.abs(logits))), -1)


def test_inference_jit_matches_plain_jit_and_keeps_static_args():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 30)).astype(np.float32)
    w = rng.standard_normal((30, 20)).astype(np.float32)
    tuned = xla_options.inference_jit(static_argnums=(0,))(_softplus_sum)
    plain = jax.jit(_softplus_sum, static_argnums=(0,))
    np.testing.assert_allclose(tuned(2.0, x, w), plain(2.0, x, w), rtol=1e-6)
    np.testing.assert_allclose(tuned(3.0, x, w), 1.5 * np.asarray(plain(2.0, x, w)), rtol=1e-6)
    assert "dot" in tuned.lower(2.0, x, w).as_text()


def test_an_option_this_xla_does_not_know_falls_back(monkeypatch):
    key = "xla_cpu_experimental_ynn_fusion_type"
    monkeypatch.setattr(
        xla_options, "_CPU_INFERENCE_OPTIONS", {key: "LIBRARY_FUSION_TYPE_NONSENSE"}
    )
    x = np.ones((4, 3), np.float32)
    w = np.ones((3, 2), np.float32)
    tuned = xla_options.inference_jit(static_argnums=(0,))(_softplus_sum)
    expected = jax.jit(_softplus_sum, static_argnums=(0,))(1.0, x, w)
    np.testing.assert_allclose(tuned(1.0, x, w), expected, rtol=1e-6)
