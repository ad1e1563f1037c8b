"""Test-set evaluation of any model family: its per-example test figures (negative ELBO and its
terms, reconstruction errors, ...), active units, and the importance-weighted NLL bound from the
family's log-weights.

All figures are nats per image (pixel-loss sums for AEs). Batches are padded to a fixed size so
each function compiles once; with a mesh, batches are split over its ``"data"`` axis. Data is a
:class:`~jaxvae.data.Dataset` (one split of it, the test split unless ``split=`` says another), a
dict ``{"image": [N, H, W, C], "label": [N]}`` or an image array (:func:`as_batch`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxvae import sharding
from jaxvae.data.base import SPLITS, Dataset, to_unit_float
from jaxvae.models import Model, Params
from jaxvae.models import capabilities as caps


def as_data(images, labels=None) -> dict[str, np.ndarray]:
    """``{"image": images, "label": int32 labels}`` (zeros when ``labels`` is None): float32
    images, or uint8 ones as they are (:func:`padded_batches` turns each batch into ``v / 255``,
    so a large 8-bit split is never held as float32 in full)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = to_unit_float(images)
    labels = np.asarray(np.zeros(images.shape[:1]) if labels is None else labels, np.int32)
    if images.ndim < 1 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"labels of shape {labels.shape} do not match images of shape {images.shape}"
        )
    return {"image": images, "label": labels}


def padded_batches(data: dict[str, np.ndarray], batch_size: int):
    """Yields ``(padded_batch, num_valid)`` of exactly ``batch_size`` examples, float32 images
    (uint8 ones read as ``v / 255``, :func:`~jaxvae.data.to_unit_float`)."""
    n = data["image"].shape[0]
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in data.items()}
        batch["image"] = to_unit_float(np.asarray(batch["image"]))
        valid = batch["image"].shape[0]
        if valid < batch_size:
            batch = {
                k: np.concatenate([v, np.zeros((batch_size - valid, *v.shape[1:]), v.dtype)])
                for k, v in batch.items()
            }
        yield batch, valid


def run_batched(fn, data, batch_size, mesh, *extra, progress=None):
    """Applies ``fn(batch, index, *extra) -> dict of [batch, ...]`` over ``data``; concatenates.
    ``progress(done, total)`` is called with the images done after each batch."""
    mesh = mesh or sharding.make_mesh()
    batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
    in_sharding = sharding.batch_sharded(mesh)
    total = data["image"].shape[0]
    out: dict[str, list] = {}
    for i, (batch, valid) in enumerate(padded_batches(data, batch_size)):
        batch = {k: sharding.put_global(v, in_sharding) for k, v in batch.items()}
        values = sharding.fetch(fn(batch, jnp.int32(i), *extra))  # host sync: one per batch
        for name, v in values.items():
            out.setdefault(name, []).append(np.asarray(v)[:valid])
        if progress is not None:
            progress(min((i + 1) * batch_size, total), total)
    return {name: np.concatenate(v) for name, v in out.items()}


def as_batch(data, *, split: str = "test") -> dict[str, np.ndarray]:
    """``data`` as a batch dict: a :class:`~jaxvae.data.Dataset` (its ``split``), a batch dict
    ``{"image", "label"?}`` or an image array ``[N, H, W, C]``.

    Raises:
      ValueError: ``data`` is none of those (naming its type), or ``split`` is not a split.
    """
    if isinstance(data, Dataset):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; expected one of {SPLITS}")
        data = {k: getattr(data, f"{split}_{k}s") for k in ("image", "label")}
    if isinstance(data, Mapping):
        if "image" not in data:
            raise ValueError(f"a batch dict needs an 'image' entry; got keys {sorted(data)}")
        return as_data(data["image"], data.get("label"))
    if isinstance(data, (np.ndarray, jax.Array)):
        return as_data(data)
    raise ValueError(
        f"data is a {type(data).__name__}; expected a jaxvae.data.Dataset, a batch dict "
        '{"image": [N, H, W, C], "label": [N]} or an image array [N, H, W, C]'
    )


def _check(model: Model, data, split: str = "test") -> dict[str, np.ndarray]:
    """Refuses images of the wrong shape, and an empty set, before anything is compiled."""
    data = as_batch(data, split=split)
    model.check_images(jax.ShapeDtypeStruct(np.shape(data["image"]), np.float32))
    if data["image"].shape[0] == 0:
        raise ValueError("no images to evaluate: got an empty array")
    return data


@functools.partial(jax.jit, static_argnums=(0,))
def _eval_terms(model: Model, params, state, batch, index, key):
    return model.eval_terms(params, state, batch, jax.random.fold_in(key, index))


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
    """Number of latent dimensions with ``Var_x(E_q[z_d | x]) > threshold`` (Burda et al.)."""
    means = np.asarray(posterior_means, np.float64)
    return int(np.sum(np.var(means, axis=0) > threshold))


def evaluate_model(
    model: Model,
    params: Params,
    state: Any,
    data,
    key: jax.Array,
    *,
    batch_size: int = 1000,
    mesh: Mesh | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """The mean of each per-example figure of ``model.eval_terms`` over ``data``.

    Args:
      state: the model state (``{}`` for most families).
      data: a :class:`~jaxvae.data.Dataset`, a batch dict or an image array (:func:`as_batch`).
      key: the evaluation key (batch ``i`` uses ``fold_in(key, i)``).
      batch_size: images per batch.
      mesh: the devices (default: all).
      split: the split of a Dataset to evaluate.

    Returns:
      ``{name: mean}`` for every ``[N]`` figure (for a VAE: ``nelbo``, ``recon``, ``kl``; for an
      AE: ``recon_l2``, ``recon_l1``, ``mse_per_pixel``, ``recon``), ``active_units`` when the
      family reports posterior means, and ``kl_per_dim`` (a list) when it reports ``kl_dims``.
    """
    data = _check(model, data, split)
    fn = lambda b, i, p, s, k: _eval_terms(model, p, s, b, i, k)
    out = run_batched(fn, data, batch_size, mesh, params, state, key)
    result: dict[str, Any] = {}
    for name, values in out.items():
        if name == "posterior_mean":
            result["active_units"] = active_units(values)
        elif name == "kl_dims":
            result["kl_per_dim"] = [float(v) for v in np.mean(values.astype(np.float64), 0)]
        elif values.ndim == 1:
            result[name] = float(np.mean(values.astype(np.float64)))
    return result


def iwae_log_px(model: Model, params, state, batch, key: jax.Array, *, k: int, chunk: int):
    """The IWAE estimate of ``log p(x)`` per image of one batch, ``log (1/k) sum_i w_i`` with
    ``w_i`` from ``model.log_weights``, drawn in chunks of ``chunk`` samples; a running
    log-sum-exp keeps memory at ``batch * chunk`` decoder outputs (unjitted: ``jaxvae bench``
    counts its FLOPs)."""
    b = batch["image"].shape[0]
    num_chunks = -(-k // chunk)

    def body(j, carry):
        run_max, run_sum = carry
        log_w = model.log_weights(params, state, batch, jax.random.fold_in(key, j), chunk)
        valid = (j * chunk + jnp.arange(chunk)) < k
        log_w = jnp.where(valid[None, :], log_w, -jnp.inf)
        new_max = jnp.maximum(run_max, jnp.max(log_w, axis=1))
        added = jnp.sum(jnp.exp(log_w - new_max[:, None]), axis=1)
        return new_max, run_sum * jnp.exp(run_max - new_max) + added

    init = (jnp.full((b,), -jnp.inf, jnp.float32), jnp.zeros((b,), jnp.float32))
    run_max, run_sum = jax.lax.fori_loop(0, num_chunks, body, init)
    return run_max + jnp.log(run_sum) - math.log(k)


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _iwae_batch(model, params, state, batch, index, k, chunk, key):
    key = jax.random.fold_in(key, index)
    return {"log_px": iwae_log_px(model, params, state, batch, key, k=k, chunk=chunk)}


def evaluate_iwae(
    model: Model,
    params: Params,
    state: Any,
    data,
    key: jax.Array,
    *,
    k: int,
    batch_size: int = 10,
    chunk: int = 500,
    mesh: Mesh | None = None,
    split: str = "test",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Importance-weighted bound on ``-log p(x)`` with ``k`` samples (Burda et al., 2016).

    Args:
      model: the model family instance (it must have a likelihood).
      data: a :class:`~jaxvae.data.Dataset`, a batch dict or an image array (:func:`as_batch`).
      key: the evaluation key (batch ``i`` uses ``fold_in(key, i)``).
      k: importance samples per image.
      batch_size: images per batch.
      chunk: samples drawn at once (memory: ``batch_size * chunk`` decoder outputs).
      mesh: the devices (default: all).
      split: the split of a Dataset to evaluate.
      progress: called as ``progress(images_done, images_total)`` after each batch.

    Returns:
      ``nll``: mean over images of ``-log p_k(x)`` (nats per image; ``k=1`` is the single-sample
      negative ELBO), ``nll_se``: its standard error over images, ``iwae_k`` and
      ``num_examples``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"IWAE k must be a positive integer, got {k!r}")
    k = int(k)
    caps.require(model, caps.ImportanceWeighted, "the IWAE bound")
    data = _check(model, data, split)
    chunk = min(chunk, k)
    fn = lambda b, i, p, s, key_: _iwae_batch(model, p, s, b, i, k, chunk, key_)
    out = run_batched(fn, data, batch_size, mesh, params, state, key, progress=progress)
    log_px = out["log_px"].astype(np.float64)
    n = log_px.shape[0]
    se = float(np.std(log_px, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"nll": float(-np.mean(log_px)), "nll_se": se, "iwae_k": k, "num_examples": n}


class EvalProgress:
    """``progress(done, total)`` of an evaluation: a bar on a terminal, else a line at each tenth
    of the images and at least every ``every_s`` seconds."""

    def __init__(self, stream, label: str, *, every_s: float = 60.0):
        from tqdm import tqdm

        self.stream, self.label, self.every_s = stream, label, every_s
        self.tty = getattr(stream, "isatty", lambda: False)()
        self.bar = tqdm(
            desc=label, unit="image", file=stream, disable=not self.tty, dynamic_ncols=True
        )
        self.last_line, self.tenths = time.time(), 0

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            return
        tenths = 10 * done // total
        if tenths > self.tenths or time.time() - self.last_line >= self.every_s:
            self.tenths, self.last_line = tenths, time.time()
            print(f"{self.label}: {done}/{total} images", file=self.stream, flush=True)

    def close(self) -> None:
        self.bar.close()
