"""Data parallelism over every device of every process, with ``jax.jit`` and ``NamedSharding``.

One mesh axis, ``"data"``: batches are split over it, parameters and optimizer state are replicated.
The same program runs on one CPU, several GPUs or a multi-host TPU slice; with several processes,
:func:`initialize_distributed` must run before any other JAX call.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
# Variables of a cluster JAX recognises by itself: SLURM, Open MPI, a TPU slice, its own.
_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES")
_CLUSTER_ENV += ("JAX_COORDINATOR_ADDRESS",)


def initialize_distributed(
    coordinator_address: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    *,
    auto: bool = False,
) -> None:
    """Starts ``jax.distributed`` when asked, or when a cluster environment is detected.

    Args:
      coordinator_address: ``HOST:PORT`` of process 0; ``""`` lets JAX detect it (SLURM, TPU pods,
        Open MPI), and with nothing to detect, runs as a single process.
      num_processes: total number of processes (0 = detect).
      process_id: this process's index (-1 = detect).
      auto: call ``jax.distributed.initialize()`` with no arguments even when no cluster variable
        is set: JAX then finds the cluster itself (a Cloud TPU pod slice through its metadata).
    """
    if coordinator_address or num_processes > 0 or process_id >= 0:
        if not coordinator_address or num_processes <= 0 or process_id < 0:
            raise ValueError(
                "multi-process runs need all of --coordinator-address HOST:PORT, "
                f"--num-processes N and --process-id I (got {coordinator_address!r}, "
                f"{num_processes}, {process_id})"
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process-id {process_id} is not in [0, {num_processes})")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
        return
    if auto or any(os.environ.get(var) for var in _CLUSTER_ENV):
        # A cluster JAX recognises by itself (SLURM, Open MPI, a multi-host TPU slice).
        try:
            jax.distributed.initialize()
        except (ValueError, RuntimeError) as e:
            raise ValueError(
                f"JAX found no multi-process cluster to join ({str(e).splitlines()[0]}); give "
                "--coordinator-address, --num-processes and --process-id, or leave out --distributed"
            ) from None


def make_mesh(devices=None) -> Mesh:
    """A one-axis ``("data",)`` mesh over ``devices`` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters, optimizer state and the device-resident dataset."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: its leading axis split over ``"data"``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ``ValueError`` unless the global batch divides evenly over the mesh's devices."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"batch size {batch_size} does not divide by the {n} devices of the mesh; "
            f"use a multiple of {n}"
        )


def put_global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Places a host array that every process holds in full as one global array: each process
    supplies the pieces its own devices hold."""
    if jax.process_count() == 1:
        return jax.device_put(array, sharding)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def put_replicated(array: np.ndarray, mesh: Mesh) -> jax.Array:
    """Places a host array, identical on every process, replicated on all devices of ``mesh``."""
    return put_global(array, replicated(mesh))


def from_process_0(value: float) -> float:
    """Process 0's ``value`` on every process: for inputs other than the step (a clock reading)
    to decisions that must be the same everywhere (every process takes part in a checkpoint)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return float(multihost_utils.broadcast_one_to_all(np.asarray(value, np.float32)))


def host(tree):
    """Each process's copy of replicated arrays, as numpy (other leaves as numpy too)."""
    local = lambda a: np.asarray(a.addressable_data(0) if isinstance(a, jax.Array) else a)
    return jax.tree.map(local, tree)


def fetch(tree):
    """Brings a pytree of (possibly multi-process) arrays to the host as numpy, on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
