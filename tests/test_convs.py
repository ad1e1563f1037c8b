"""Tests for jaxvae.convs: both formulations against flax's Conv and ConvTranspose."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import convs

# Errors are compared relative to the largest reference magnitude of each array.
RTOL = 2e-5


def _rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def _draw(rng, shape, scale=1.0):
    return jnp.asarray(scale * rng.normal(size=shape), jnp.float32)


def _flax_module(transpose, kernel_shape, stride):
    kh, kw, _, cout = kernel_shape
    cls = nn.ConvTranspose if transpose else nn.Conv
    return cls(features=cout, kernel_size=(kh, kw), strides=(stride, stride), padding="SAME")


def _outputs_and_grads(fn, x, kernel, bias, cotangent):
    """``fn``'s output and the gradients of <output, cotangent> w.r.t. x, kernel and bias."""

    def loss(x, kernel, bias):
        y = fn(x, kernel, bias)
        return jnp.sum(y * cotangent), y

    (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(x, kernel, bias)
    return (y, *grads)


def _compare(transpose, x_shape, kernel_shape, stride, seed=0):
    """Forward pass and gradients of impl="fast" and impl="lax" against flax's module."""
    rng = np.random.default_rng(seed)
    x = _draw(rng, x_shape)
    kernel = _draw(rng, kernel_shape, 1.0 / np.sqrt(np.prod(kernel_shape[:3])))
    bias = _draw(rng, kernel_shape[-1:], 0.1)
    module = _flax_module(transpose, kernel_shape, stride)

    def flax_fn(x, kernel, bias):
        return module.apply({"params": {"kernel": kernel, "bias": bias}}, x)

    op = convs.conv_transpose2d if transpose else convs.conv2d
    out_shape = jax.eval_shape(flax_fn, x, kernel, bias).shape
    cotangent = _draw(rng, out_shape)

    @jax.jit
    def everything(x, kernel, bias, cotangent):
        results = {"flax": _outputs_and_grads(flax_fn, x, kernel, bias, cotangent)}
        for impl in convs.IMPLS:
            fn = lambda x, k, b, impl=impl: op(x, k, b, stride=stride, impl=impl)
            results[impl] = _outputs_and_grads(fn, x, kernel, bias, cotangent)
        return results

    results = everything(x, kernel, bias, cotangent)
    names = ("y", "dx", "dkernel", "dbias")
    for impl in convs.IMPLS:
        for name, got, ref in zip(names, results[impl], results["flax"], strict=True):
            assert got.shape == ref.shape, (impl, name)
            err = _rel_err(got, ref)
            assert err < RTOL, f"{impl} {name}: relative error {err:.2e}"
    return results


# The conv VAE of experiments/configs/peer_conv.py, at a small batch.
ARCHITECTURE = [
    (False, (4, 28, 28, 1), (3, 3, 1, 32), 2),
    (False, (4, 14, 14, 32), (3, 3, 32, 64), 2),
    (True, (4, 7, 7, 64), (3, 3, 64, 32), 2),
    (True, (4, 14, 14, 32), (3, 3, 32, 1), 2),
]

OTHERS = [
    (False, (1, 7, 9, 3), (3, 3, 3, 5), 2),  # odd sizes, batch 1
    (False, (2, 5, 5, 1), (3, 3, 1, 4), 2),  # odd, single input channel
    (False, (2, 6, 7, 4), (3, 3, 4, 8), 1),  # stride 1
    (False, (2, 8, 8, 2), (1, 1, 2, 3), 1),  # 1x1 kernel
    (False, (2, 9, 8, 3), (2, 3, 3, 2), 2),  # even, non-square kernel
    (False, (2, 10, 11, 3), (5, 5, 3, 4), 3),  # large kernel, stride 3
    (False, (1, 2, 3, 2), (5, 4, 2, 3), 2),  # kernel larger than the image
    (False, (2, 7, 7, 3), (3, 3, 3, 4), 4),  # stride larger than the kernel
    (True, (1, 5, 7, 3), (3, 3, 3, 5), 2),  # odd sizes, batch 1
    (True, (2, 6, 5, 4), (3, 3, 4, 8), 1),  # stride 1
    (True, (2, 4, 4, 6), (3, 3, 6, 1), 2),  # single output channel
    (True, (2, 3, 4, 2), (2, 3, 2, 3), 2),  # non-square kernel
    (True, (2, 3, 3, 1), (4, 4, 1, 2), 3),  # even kernel, stride 3
    (True, (2, 4, 3, 2), (1, 1, 2, 3), 2),  # 1x1 kernel, stride 2
    (True, (1, 2, 2, 3), (5, 5, 3, 2), 1),  # kernel larger than the image
]


@pytest.mark.parametrize("transpose,x_shape,kernel_shape,stride", ARCHITECTURE + OTHERS)
def test_matches_flax(transpose, x_shape, kernel_shape, stride):
    _compare(transpose, x_shape, kernel_shape, stride)


def test_bias_is_optional():
    rng = np.random.default_rng(1)
    x, kernel = _draw(rng, (2, 6, 6, 3)), _draw(rng, (3, 3, 3, 4))
    for op in (convs.conv2d, convs.conv_transpose2d):
        ys = [op(x, kernel, stride=2, impl=impl) for impl in convs.IMPLS]
        assert _rel_err(ys[0], ys[1]) < RTOL


def test_fast_path_has_no_convolution():
    x = jnp.ones((2, 14, 14, 8))
    k_conv, k_tr = jnp.ones((3, 3, 8, 4)), jnp.ones((3, 3, 4, 8))

    def loss(x, k_conv, k_tr):
        h = convs.conv2d(x, k_conv, stride=2)
        return jnp.sum(convs.conv_transpose2d(h, k_tr, stride=2))

    hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, k_conv, k_tr).as_text()
    assert "convolution" not in hlo


def test_inside_scan():
    """A few gradient steps inside lax.scan agree between the two formulations."""
    rng = np.random.default_rng(2)
    xs = _draw(rng, (3, 2, 16, 16, 1))
    params = {
        "c1": _draw(rng, (3, 3, 1, 8), 0.3),
        "b1": _draw(rng, (8,), 0.1),
        "c2": _draw(rng, (3, 3, 8, 4), 0.2),
        "t1": _draw(rng, (3, 3, 4, 8), 0.2),
        "t2": _draw(rng, (3, 3, 8, 1), 0.2),
        "b2": _draw(rng, (1,), 0.1),
    }

    def loss(p, x, impl):
        h = jax.nn.relu(convs.conv2d(x, p["c1"], p["b1"], stride=2, impl=impl))
        h = jax.nn.relu(convs.conv2d(h, p["c2"], stride=2, impl=impl))
        h = jax.nn.relu(convs.conv_transpose2d(h, p["t1"], stride=2, impl=impl))
        y = convs.conv_transpose2d(h, p["t2"], p["b2"], stride=2, impl=impl)
        return jnp.mean((y - x) ** 2)

    @jax.jit
    def train(p):
        def step(impl):
            def body(p, x):
                value, g = jax.value_and_grad(loss)(p, x, impl)
                return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), value

            return jax.lax.scan(body, p, xs)

        return step("fast"), step("lax")

    (p_fast, l_fast), (p_lax, l_lax) = train(params)
    assert _rel_err(l_fast, l_lax) < 1e-5
    for name in params:
        assert _rel_err(p_fast[name], p_lax[name]) < 1e-5, name


@pytest.mark.parametrize("op", [convs.conv2d, convs.conv_transpose2d])
def test_second_order_gradients(op):
    rng = np.random.default_rng(4)
    x, kernel = _draw(rng, (2, 7, 6, 3)), _draw(rng, (3, 3, 3, 4), 0.3)

    def grad_norm(impl):
        def f(x, k):
            return jnp.sum(jnp.sin(op(x, k, stride=2, impl=impl)))

        def g(x, k):
            return jnp.sum(jax.grad(f, argnums=(0, 1))(x, k)[1] ** 2)

        return jax.grad(g, argnums=(0, 1))(x, kernel)

    for got, want in zip(grad_norm("fast"), grad_norm("lax"), strict=True):
        assert _rel_err(got, want) < RTOL


def test_jit_and_vmap():
    rng = np.random.default_rng(3)
    x, kernel = _draw(rng, (3, 2, 5, 5, 2)), _draw(rng, (3, 3, 2, 3))
    for op in (convs.conv2d, convs.conv_transpose2d):
        fast = jax.jit(jax.vmap(lambda x, op=op: op(x, kernel, stride=2)))(x)
        ref = jnp.stack([op(xi, kernel, stride=2, impl="lax") for xi in x])
        assert _rel_err(fast, ref) < RTOL


@pytest.mark.parametrize("op", [convs.conv2d, convs.conv_transpose2d])
def test_bad_inputs_raise(op):
    x, kernel, bias = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4)), jnp.ones(4)
    bad = [
        (dict(x=jnp.ones((6, 6, 3))), "x must have shape"),
        (dict(x=jnp.ones((2, 0, 6, 3))), "x must have shape"),
        (dict(kernel=jnp.ones((3, 3, 3))), "kernel must have shape"),
        (dict(kernel=jnp.ones((3, 3, 2, 4))), "kernel input channels 2"),
        (dict(bias=jnp.ones(3)), r"bias must have shape \(4,\)"),
        (dict(stride=0), "stride must be a positive int, got 0"),
        (dict(stride=2.0), "stride must be a positive int, got 2.0"),
        (dict(stride=True), "stride must be a positive int, got True"),
        (dict(impl="cudnn"), "impl must be one of .* got 'cudnn'"),
        (dict(x=jnp.ones((2, 6, 6, 3), jnp.int32)), "x must be floating point"),
    ]
    for change, message in bad:
        args = dict(x=x, kernel=kernel, bias=bias, stride=2, impl="fast") | change
        with pytest.raises(ValueError, match=message):
            op(args.pop("x"), args.pop("kernel"), args.pop("bias"), **args)
