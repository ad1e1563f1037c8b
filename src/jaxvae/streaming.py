"""Training data streamed from a TFDS data source, for training sets that do not fit on the device.

The device-resident engine (:func:`jaxvae.engine.make_engine`) puts the whole training set on
every device; that is right for MNIST-sized data. A TFDS dataset whose training images, as
float32, exceed ``data.stream_threshold_mb`` (``data.stream="auto"``), or any TFDS-backed dataset
with ``data.stream="always"``, is streamed instead: the training records stay in their
array_record files and Grain reads each step's batch with ``data.stream_workers`` threads, a few
chunks ahead, while the devices run the previous chunk (:func:`jaxvae.engine.make_stream_engine`).
The test and validation sets stay in memory as before (they are small).

**Order.** The batch of step ``s`` is a function of the seed and ``s`` alone: with
``per_epoch = N // B``, it holds the examples at positions ``[(s % per_epoch) * B, +B)`` of the
epoch permutation ``engine.epoch_permutation(data_key, s // per_epoch, N)``, the very permutation
the device-resident engine draws on the device, computed here on the host's CPU backend. So a
streamed run reads exactly the batches of the device-resident run of the same config, and its
result is the same (bit for bit on CPU, where the tests check it). We derive the position from
the step rather than save Grain's iterator state: Grain's random-access ``MapDataset`` makes this
natural (``MapDataset.range(start_step, total).map(read_step)``), a resumed run needs nothing
beyond the Orbax checkpoint of the train state (whose ``step`` it already holds), and a
checkpoint cannot disagree with the data files it is resumed against; the cost is one permutation
of ``N`` int32 per epoch on the host (5 MB and well under a second for ImageNet's 1.28M).

**Processes.** Each process reads only the rows of every global batch that its own devices hold
(from the mesh's batch sharding, :func:`local_rows`), and the chunk is assembled with
``jax.make_array_from_process_local_data``. Grain's ``ShardByJaxProcess`` would give each
process a disjoint part of the whole dataset instead; slicing each global batch keeps the global
batch, hence the result, the same whatever the number of processes.

The chunks hold the records' uint8 images (a quarter of float32's bytes); the compiled step turns
each batch into floats (:func:`jaxvae.data.to_unit_float`), as it does the device-resident uint8
training set. Dynamic binarization and every other per-step transform stay inside the compiled
step (the experiment's ``preprocess``): streaming changes only where batches come from. Static binarization
(the whole training split binarized once, in file order) is not offered for streamed data.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxvae import data as data_lib
from jaxvae import engine as engine_lib
from jaxvae import sharding
from jaxvae.specs import DataSpec

CHUNK_BYTES = 64 * 2**20  # host batches stacked into one device transfer: at most about this
MAX_CHUNK_STEPS = 32


@dataclasses.dataclass(frozen=True)
class TrainSource:
    """A streamed training split and the in-memory dataset that goes with it.

    Attributes:
      dataset: the run's :class:`~jaxvae.data.Dataset`: test and validation splits in memory;
        its training split is a :class:`~jaxvae.data.tfds.RecordColumn` (records left unread,
        with the true size), so that the model and the runner see the training-set size.
      records: the TFDS random-access data source of the ``train`` split.
      num_train: the training examples: the first ``num_train`` records (after the validation
        split and ``limit_train``).
      workers: Grain reader threads.
    """

    dataset: data_lib.Dataset
    records: Sequence[Any]
    num_train: int
    workers: int


def open_train_source(d: DataSpec, seed: int) -> TrainSource | None:
    """The streamed training split of the data ``d``, or ``None`` when it is to live on the device.

    ``data.stream``: ``"never"``; ``"always"`` (TFDS-backed data: fashion_mnist with
    ``data.source="tfds"``, mnist, binarized_mnist, cifar10, celeb_a; and an image folder,
    streamed from its memory-mapped cache, or without one from its files, each decoded when
    read); ``"auto"``: stream such a dataset whose training images take more than
    ``data.stream_threshold_mb`` MiB as float32.
    The dataset goes through the one preparation step (:func:`jaxvae.data.load_dataset` with
    ``lazy_train``): the same validation split, limits, binarization and protocol as in memory.

    Raises:
      ValueError: static binarization of streamed data, or data that is missing or malformed.
    """
    records = data_lib.SOURCES_BY_NAME[d.name].train_records  # (N, (H, W, C)) from metadata
    sized = records(data_lib.source_request(d)) if records and d.stream != "never" else None
    if sized is None:
        return None  # not streamed (DataSpec refuses stream='always' for data that cannot)
    n_all, shape = sized
    n_train = n_all - d.validation_size
    if d.limit_train:
        n_train = min(n_train, d.limit_train)
    mb = n_train * math.prod(shape) * 4 / 2**20
    if d.stream == "auto" and mb <= d.stream_threshold_mb:
        return None
    if d.binarize == "static":
        raise ValueError(
            "config data.binarize='static' binarizes the whole training split once in memory; "
            f"streamed data ({d.name}, {mb:.0f} MiB as float32) takes 'none' or 'dynamic'"
        )
    dataset = data_lib.load_from_config(d, seed, lazy_train=True)
    column = dataset.train_images
    protocol = dict(dataset.protocol)
    origin = getattr(column.records, "origin", "the TFDS data source")
    protocol["train"] += f"; streamed from {origin} ({mb:.0f} MiB as float32)"
    dataset = dataclasses.replace(dataset, protocol=protocol)
    workers = d.stream_workers or min(8, os.cpu_count() or 1)
    return TrainSource(dataset, column.records, len(column), workers)


def step_indices(order: np.ndarray, step: int, *, per_epoch: int, batch_size: int) -> np.ndarray:
    """The record indices of step ``step``'s global batch, from its epoch's permutation."""
    start = (step % per_epoch) * batch_size
    return order[start : start + batch_size]


def local_rows(mesh, batch_size: int) -> slice:
    """The rows of a global batch that this process's devices hold under the batch sharding
    (one contiguous block: the mesh lists each process's devices together)."""
    shape = (batch_size,)
    index = sharding.batch_sharded(mesh).addressable_devices_indices_map(shape)
    starts = sorted({s[0].indices(batch_size)[:2] for s in index.values()})
    lo, hi = starts[0][0], starts[-1][1]
    if sum(b - a for a, b in starts) != hi - lo:
        raise ValueError(f"this process's rows of the batch are not contiguous: {starts}")
    return slice(lo, hi)


class StreamFeed(engine_lib.CompiledFeed):
    """Training batches read by Grain from a TFDS data source: the engine's batches come from
    chunks of host batches (:func:`jaxvae.engine.chunk_prepare`). ``run(state, n)`` runs the
    next ``n`` steps, taken in order from ``start_step``.
    """

    def __init__(
        self,
        train_step,
        source: TrainSource,
        key,
        data_key,
        *,
        batch_size,
        mesh,
        image_shape,
        start_step: int,
        total_steps: int,
    ):
        b = batch_size
        self.batch_size, self.source, self.image_shape = b, source, tuple(image_shape)
        self.per_epoch = engine_lib.steps_per_epoch(source.num_train, b)
        self.rows = local_rows(mesh, b)
        row_bytes = math.prod(self.image_shape) * (self.rows.stop - self.rows.start)  # uint8
        self.chunk = max(1, min(MAX_CHUNK_STEPS, CHUNK_BYTES // max(row_bytes, 1)))
        self._cpu = jax.local_devices(backend="cpu")[0]
        self._data_key = jax.device_put(data_key, self._cpu)
        self._orders: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self.chunk_sharding = engine_lib.chunk_sharding(mesh)
        self._iter = self._batches(start_step, total_steps)
        prepare = engine_lib.chunk_prepare(batch_size=b, mesh=mesh)
        super().__init__(train_step, prepare, mesh, key)

    def _order(self, epoch: int) -> np.ndarray:
        with self._lock:
            if epoch not in self._orders:
                with jax.default_device(self._cpu):
                    perm = engine_lib.epoch_permutation(
                        self._data_key, epoch, self.source.num_train
                    )
                self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
                self._orders[epoch] = np.asarray(perm)
            return self._orders[epoch]

    def read_step(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of step ``step``'s batch, as host arrays (uint8 images, turned
        into floats by the train step)."""
        order = self._order(step // self.per_epoch)
        idx = step_indices(order, step, per_epoch=self.per_epoch, batch_size=self.batch_size)
        records = self.source.records.__getitems__(idx[self.rows].tolist())
        image = np.stack([r["image"] for r in records])
        if image.dtype != np.uint8:
            raise ValueError(f"streamed records hold {image.dtype} images; expected uint8")
        label = np.asarray([r.get("label", 0) for r in records], np.int32)
        return {"image": image, "label": label}

    def _batches(self, start: int, stop: int):
        import grain

        options = grain.ReadOptions(
            num_threads=self.source.workers, prefetch_buffer_size=2 * self.chunk
        )
        ds = grain.MapDataset.range(start, max(stop, start)).map(self.read_step)
        return iter(ds.to_iter_dataset(options))

    def _put(self, batches: list[dict[str, np.ndarray]]) -> dict[str, jax.Array]:
        """Stacks up to ``chunk`` host batches (padded with the last to ``chunk``) into global
        arrays ``[chunk, B, ...]`` with the batch axis sharded over the mesh."""
        pad = [batches[-1]] * (self.chunk - len(batches))
        out = {}
        for name in batches[0]:
            local = np.stack([b[name] for b in batches + pad])
            shape = (self.chunk, self.batch_size, *local.shape[2:])
            out[name] = jax.make_array_from_process_local_data(self.chunk_sharding, local, shape)
        return out

    def one_batch(self):
        b = self.batch_size
        return {
            "image": jax.ShapeDtypeStruct((b, *self.image_shape), np.uint8),
            "label": jax.ShapeDtypeStruct((b,), np.int32),
        }

    def abstract_inputs(self):
        sharding = self.chunk_sharding
        return {
            k: jax.ShapeDtypeStruct((self.chunk, *v.shape), v.dtype, sharding=sharding)
            for k, v in self.one_batch().items()
        }

    def dispatches(self, n: int):
        for start in range(0, n, self.chunk):
            k = min(self.chunk, n - start)
            yield self._put([next(self._iter) for _ in range(k)]), k
