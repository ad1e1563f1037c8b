"""Two-dimensional convolutions on NHWC images, with a fast path that uses no convolution op.

`conv2d` and `conv_transpose2d` compute what `flax.linen.Conv` and `flax.linen.ConvTranspose`
compute with ``padding="SAME"``, square strides and kernels in HWIO layout
(``[kh, kw, Cin, Cout]``, ``transpose_kernel=False`` for the transposed convolution), in one of
two formulations, `IMPLS`:

- ``"lax"``: `lax.conv_general_dilated` / `lax.conv_transpose`, the reference.
- ``"fast"``: pads, reshapes, slices, stacks and matrix products only. On XLA:CPU a
  convolution op inside `lax.scan` (the training loop runs a whole epoch per dispatch) runs
  several times slower than the same op outside a loop; these operations do not.
  ``docs/conv-formulations.md`` records the formulations tried and their measured speeds.

How the fast path works. Along one spatial axis, patch ``i`` of a stride-``s`` convolution reads
the zero-padded input at ``s * i + t`` for tap ``t``. Padding the axis up to a multiple of ``s``
and reshaping it to ``(blocks, s)`` (free) turns tap ``t`` into the unit-stride window
``[t // s, t // s + out)`` of phase ``t % s``, so no strided slice is needed. On top of that:

- gather (im2col): the ``kh * kw`` tap windows stacked into patches ``[N, oh, ow, kh*kw*C]``,
  in two levels (``kw`` taps, then ``kh`` rows), which XLA:CPU fuses into one loop; one flat
  concatenation of more than three pieces is not fused and costs a second copy;
- scatter (col2im), the adjoint of the gather: each of the ``s * s`` output phases is the sum of
  the shifted tap planes that land on it, then the phases are interleaved.

``conv2d`` is ``gather(x) @ K``; its backward pass (a custom VJP) is ``dK = patches^T g`` and
``dx = scatter(g K^T)``. With a single input channel (the first layer of an image encoder)
the forward pass is instead a sum of ``kh * kw`` broadcast products of the patch columns, an
elementwise loop rather than a matrix product with an inner dimension of ``kh * kw``.
``conv_transpose2d`` is the adjoint of a strided convolution: ``scatter(x @ K')``, where ``K'``
holds the spatially flipped kernel as a ``[Cin, kh*kw*Cout]`` matrix; its backward pass gathers
the output gradient once and uses it for both ``dx`` and ``dK'``. The weight gradients contract
over all ``N*H*W`` rows; XLA:CPU runs these products much faster with the narrower operand on
the left, and an optimization barrier keeps XLA from swapping the operands back.

Every kernel size and stride, and every image size (odd ones included), takes the fast path.
Matrix products use the default precision, as flax does.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("fast", "lax")

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
_ROWS = (((0,), (0,)), ((), ()))  # dot_general dimensions contracting the leading (row) axes


class _Axis(NamedTuple):
    """How patches are gathered along one spatial axis.

    Patch ``i`` (of ``out``) reads tap ``t`` (of ``kernel``) at index ``stride * i + t - lo``
    of an axis of length ``size``; indices outside ``[0, size)`` read zeros.
    """

    size: int
    kernel: int
    stride: int
    lo: int
    out: int

    @property
    def blocks(self) -> int:
        """Number of stride-long blocks covering the low padding and the axis."""
        return -(-(self.lo + self.size) // self.stride)


def _same_axis(size: int, kernel: int, stride: int) -> _Axis:
    """Gather geometry of a 'SAME' convolution (as `lax.padtype_to_pads` pads it)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return _Axis(size, kernel, stride, total // 2, out)


def _transpose_axis(size: int, kernel: int, stride: int) -> _Axis:
    """Geometry of the strided convolution whose adjoint is a 'SAME' transposed convolution.

    `lax.conv_transpose` pads the stride-dilated input by ``pad_a`` before correlating it with
    the kernel, so input ``i`` meets output ``stride * i + t - lo`` through the flipped tap
    ``t`` with ``lo = kernel - 1 - pad_a``; the output has ``size * stride`` elements.
    """
    pad_a = kernel - 1 if stride > kernel - 1 else -(-(kernel + stride - 2) // 2)
    return _Axis(size * stride, kernel, stride, kernel - 1 - pad_a, size)


def _pad_hw(x: jax.Array, h: tuple[int, int], w: tuple[int, int]) -> jax.Array:
    """Zero-pads (or, for negative amounts, crops) the two spatial axes of an NHWC array."""
    if h == (0, 0) and w == (0, 0):
        return x
    zero = jnp.zeros((), x.dtype)
    return lax.pad(x, zero, [(0, 0, 0), (h[0], h[1], 0), (w[0], w[1], 0), (0, 0, 0)])


def _tap_windows(x: jax.Array, ah: _Axis, aw: _Axis) -> list[jax.Array]:
    """The ``kh * kw`` tap planes ``[N, oh, ow, C]`` of a gather, row-major over the taps."""
    n, h, w, c = x.shape
    bh, bw = ah.blocks, aw.blocks
    x = _pad_hw(x, (ah.lo, bh * ah.stride - ah.lo - h), (aw.lo, bw * aw.stride - aw.lo - w))
    xr = x.reshape(n, bh, ah.stride, bw, aw.stride, c)
    windows = []
    for ti in range(ah.kernel):
        bi, pi = divmod(ti, ah.stride)
        rows = max(0, min(bh, bi + ah.out) - bi)
        for tj in range(aw.kernel):
            bj, pj = divmod(tj, aw.stride)
            cols = max(0, min(bw, bj + aw.out) - bj)
            win = xr[:, bi : bi + rows, pi, bj : bj + cols, pj, :]
            windows.append(_pad_hw(win, (0, ah.out - rows), (0, aw.out - cols)))
    return windows


def _gather(x: jax.Array, ah: _Axis, aw: _Axis) -> jax.Array:
    """im2col: ``[N, H, W, C] -> [N, oh, ow, kh*kw*C]``, columns ordered (tap row, tap col, C)."""
    n, c = x.shape[0], x.shape[3]
    windows = _tap_windows(x, ah, aw)
    rows = [jnp.stack(windows[i * aw.kernel : (i + 1) * aw.kernel], -2) for i in range(ah.kernel)]
    return jnp.stack(rows, -3).reshape(n, ah.out, aw.out, ah.kernel * aw.kernel * c)


def _scatter(p: jax.Array, ah: _Axis, aw: _Axis, c: int) -> jax.Array:
    """col2im, the adjoint of `_gather`: ``[N, oh, ow, kh*kw*C] -> [N, H, W, C]``."""
    n = p.shape[0]
    bh, bw = ah.blocks, aw.blocks
    taps = p.reshape(n, ah.out, aw.out, ah.kernel, aw.kernel, c)
    phase_rows = []
    for pi in range(ah.stride):
        phases = []
        for pj in range(aw.stride):
            acc = None
            for ti in range(pi, ah.kernel, ah.stride):
                bi = ti // ah.stride
                for tj in range(pj, aw.kernel, aw.stride):
                    bj = tj // aw.stride
                    pads = (bi, bh - ah.out - bi), (bj, bw - aw.out - bj)
                    plane = _pad_hw(taps[:, :, :, ti, tj, :], *pads)
                    acc = plane if acc is None else acc + plane
            phases.append(jnp.zeros((n, bh, bw, c), p.dtype) if acc is None else acc)
        phase_rows.append(jnp.stack(phases, 3))
    full = jnp.stack(phase_rows, 2).reshape(n, bh * ah.stride, bw * aw.stride, c)
    return lax.slice(full, (0, ah.lo, aw.lo, 0), (n, ah.lo + ah.size, aw.lo + aw.size, c))


def _contract_rows(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^T b`` for ``a [M, p]`` and ``b [M, q]``, with the narrower operand on the left.

    XLA:CPU runs a product contracting the leading axes of both operands with Eigen, which is
    much faster when the left operand is the narrow one; the barrier stops XLA from
    rewriting ``transpose(b^T a)`` back into ``a^T b``.
    """
    if a.shape[1] > b.shape[1]:
        return lax.optimization_barrier(lax.dot_general(b, a, _ROWS)).T
    return lax.dot_general(a, b, _ROWS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_fast(x: jax.Array, kernel: jax.Array, ah: _Axis, aw: _Axis) -> jax.Array:
    """Convolution without bias through patches; geometry ``ah``, ``aw`` (static)."""
    return _conv_fast_fwd(x, kernel, ah, aw)[0]


def _conv_fast_fwd(x, kernel, ah, aw):
    n, cin = x.shape[0], x.shape[3]
    cout = kernel.shape[3]
    k2 = kernel.reshape(-1, cout)
    patches = _gather(x, ah, aw)
    if cin == 1:
        # A sum of kh*kw broadcast products: an elementwise loop instead of a matrix product
        # with an inner dimension of kh*kw. XLA may recompute it inside its consumers; they
        # then read the small patch matrix, which the weight gradient needs anyway.
        y = patches[..., 0:1] * k2[0]
        for t in range(1, k2.shape[0]):
            y = y + patches[..., t : t + 1] * k2[t]
    else:
        y = (patches.reshape(-1, k2.shape[0]) @ k2).reshape(n, ah.out, aw.out, cout)
    return y, (patches, kernel)


def _conv_fast_bwd(ah, aw, res, g):
    patches, kernel = res
    cin, cout = kernel.shape[2], kernel.shape[3]
    k2 = kernel.reshape(-1, cout)
    g2 = g.reshape(-1, cout)
    dk = _contract_rows(patches.reshape(-1, k2.shape[0]), g2).reshape(kernel.shape)
    dx = _scatter((g2 @ k2.T).reshape(patches.shape), ah, aw, cin)
    return dx.astype(patches.dtype), dk.astype(kernel.dtype)


_conv_fast.defvjp(_conv_fast_fwd, _conv_fast_bwd)


def _flip(kernel: jax.Array) -> jax.Array:
    """``[kh, kw, Cin, Cout] -> [Cin, kh*kw*Cout]`` with both spatial axes reversed."""
    kh, kw, cin, cout = kernel.shape
    return kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)


def _unflip(w: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Inverse of `_flip`."""
    kh, kw, cin, cout = shape
    return w.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3)[::-1, ::-1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_transpose_fast(x: jax.Array, kernel: jax.Array, ah: _Axis, aw: _Axis) -> jax.Array:
    """Transposed convolution without bias: the scatter of per-pixel tap contributions."""
    return _conv_transpose_fast_fwd(x, kernel, ah, aw)[0]


def _conv_transpose_fast_fwd(x, kernel, ah, aw):
    n, h, w, cin = x.shape
    cout = kernel.shape[3]
    z = x.reshape(n * h * w, cin) @ _flip(kernel)
    return _scatter(z.reshape(n, h, w, -1), ah, aw, cout), (x, kernel)


def _conv_transpose_fast_bwd(ah, aw, res, g):
    x, kernel = res
    n, h, w, cin = x.shape
    wf = _flip(kernel)
    gz = _gather(g, ah, aw).reshape(n * h * w, wf.shape[1])
    dx = (gz @ wf.T).reshape(x.shape)
    dk = _unflip(_contract_rows(x.reshape(n * h * w, cin), gz), kernel.shape)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_conv_transpose_fast.defvjp(_conv_transpose_fast_fwd, _conv_transpose_fast_bwd)


def _check_args(x, kernel, bias, stride: int, impl: str) -> None:
    """Raises ValueError naming the first bad argument."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    x_shape, k_shape = jnp.shape(x), jnp.shape(kernel)
    if len(x_shape) != 4 or min(x_shape[1:]) < 1:
        raise ValueError(f"x must have shape [N, H, W, C] with H, W, C >= 1, got {x_shape}")
    if len(k_shape) != 4 or min(k_shape) < 1:
        raise ValueError(f"kernel must have shape [kh, kw, Cin, Cout] (HWIO), got {k_shape}")
    if k_shape[2] != x_shape[3]:
        raise ValueError(
            f"kernel input channels {k_shape[2]} (kernel shape {k_shape}) do not match "
            f"the {x_shape[3]} channels of x (shape {x_shape})"
        )
    if bias is not None and jnp.shape(bias) != (k_shape[3],):
        raise ValueError(f"bias must have shape ({k_shape[3]},), got {jnp.shape(bias)}")
    for name, value in (("x", x), ("kernel", kernel), ("bias", bias)):
        if value is not None and not jnp.issubdtype(jnp.result_type(value), jnp.floating):
            raise ValueError(f"{name} must be floating point, got dtype {jnp.result_type(value)}")


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int,
    impl: str = "fast",
) -> jax.Array:
    """2-D convolution with 'SAME' padding, as `flax.linen.Conv(padding="SAME")`.

    Args:
      x: images ``[N, H, W, Cin]``.
      kernel: ``[kh, kw, Cin, Cout]`` (HWIO, the layout of flax's ``kernel`` parameter).
      bias: optional ``[Cout]``, added to every output pixel.
      stride: the stride along both spatial axes.
      impl: ``"fast"`` (no convolution op) or ``"lax"`` (`lax.conv_general_dilated`).

    Returns:
      ``[N, ceil(H / stride), ceil(W / stride), Cout]``.

    Raises:
      ValueError: if an argument has the wrong rank, shape, dtype or value.
    """
    return _apply(x, kernel, bias, stride, impl, lax.conv_general_dilated, _same_axis, _conv_fast)


def conv_transpose2d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int,
    impl: str = "fast",
) -> jax.Array:
    """Transposed 2-D convolution, as `flax.linen.ConvTranspose(padding="SAME")`.

    The kernel is used as flax stores it (``transpose_kernel=False``): the result is
    `lax.conv_transpose` with 'SAME' padding, which upsamples ``H x W`` to
    ``H*stride x W*stride``.

    Args:
      x: images ``[N, H, W, Cin]``.
      kernel: ``[kh, kw, Cin, Cout]``, the layout of flax's ``ConvTranspose`` kernel.
      bias: optional ``[Cout]``, added to every output pixel.
      stride: the stride (upsampling factor) along both spatial axes.
      impl: ``"fast"`` (no convolution op) or ``"lax"`` (`lax.conv_transpose`).

    Returns:
      ``[N, H * stride, W * stride, Cout]``.

    Raises:
      ValueError: if an argument has the wrong rank, shape, dtype or value.
    """
    ops = (lax.conv_transpose, _transpose_axis, _conv_transpose_fast)
    return _apply(x, kernel, bias, stride, impl, *ops)


def _apply(x, kernel, bias, stride, impl, lax_op, axis, fast) -> jax.Array:
    """The body of :func:`conv2d` and :func:`conv_transpose2d`: ``lax_op`` ('SAME' padding) or
    ``fast`` over the two spatial ``axis(size, k, stride)`` plans, then the bias."""
    _check_args(x, kernel, bias, stride, impl)
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    if impl == "lax":
        y = lax_op(x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS)
    else:
        dtype = jnp.result_type(x, kernel)
        kh, kw = kernel.shape[:2]
        ah, aw = axis(x.shape[1], kh, stride), axis(x.shape[2], kw, stride)
        y = fast(x.astype(dtype), kernel.astype(dtype), ah, aw)
    return y if bias is None else y + bias
