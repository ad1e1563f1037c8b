"""A disk that fills up while a checkpoint is written, for real: a 2 MB tmpfs filled to the brim
(ENOSPC), and a per-file size limit set with RLIMIT_FSIZE in a subprocess (EFBIG). The save fails
with one clear line, the previous checkpoint stays the newest and restores bit for bit, nothing
half-written is left, and the same manager saves again once there is room."""

import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from jaxvae import checkpoint, layout, models, sharding
from jaxvae import engine as train_lib

# The failed save's own background writes end in errors that Orbax never collects; asyncio reports
# them when their event loop is gone. They are Orbax's, after the failure was reported.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MODEL = dict(architecture="mlp", hidden=(16,), latent_dim=3)  # about 400 KB of state


def _states(mesh, n):
    model = models.get("vae")(**MODEL)
    tx = optax.adam(1e-3)
    init = jax.jit(
        lambda k: train_lib.init_state(model, tx, k), out_shardings=sharding.replicated(mesh)
    )
    states = [init(jax.random.key(i))._replace(step=jnp.int32(i)) for i in range(1, n + 1)]
    return states, train_lib.abstract_state(model, tx, mesh)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (mounting needs root, as on the project's machines and CI)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here: {mount.stderr.strip() or mount.returncode}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)]).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk, *, leave):
    """Fills ``disk`` with a file until a write fails with ENOSPC, then frees ``leave`` bytes."""
    path = disk / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == 28  # ENOSPC: the disk is full
    finally:
        os.close(fd)
    os.truncate(path, max(0, os.path.getsize(path) - leave))
    return path


def _listing(workdir):
    return sorted(os.listdir(os.path.join(workdir, layout.CHECKPOINTS)))


@pytest.mark.parametrize(
    "wait, leave", [(True, 0), (False, 64 * 1024)], ids=["sync-full", "async-fills-during-save"]
)
def test_disk_full_during_save(small_disk, one_device_mesh, wait, leave):
    workdir = str(small_disk / "run")
    (s1, s2, s3), abstract = _states(one_device_mesh, 3)
    manager = checkpoint.make_manager(workdir, keep=3)
    checkpoint.save(manager, 1, s1, wait=True)
    filler = _fill(small_disk, leave=leave)

    with pytest.raises(ValueError) as info:
        checkpoint.save(manager, 2, s2, wait=wait)
        checkpoint.finish(manager)  # an asynchronous save's failure shows here
    message = str(info.value)
    assert "\n" not in message
    directory = os.path.join(workdir, layout.CHECKPOINTS)
    assert message.startswith(f"checkpoint at step 2 could not be written to {directory}: ")
    assert "No space left on device" in message
    assert message.endswith("; the previous checkpoints are kept (steps 1)")

    assert _listing(workdir) == ["1"]  # the half-written step 2 is gone, not "the newest"
    assert checkpoint.steps(workdir) == [1]
    restored, step = checkpoint.restore_newest(workdir, abstract, warn=pytest.fail)
    assert step == 1
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(s1))

    os.remove(filler)  # room again: the same manager saves, and nothing stale resurfaces
    checkpoint.save(manager, 3, s3, wait=wait)
    checkpoint.finish(manager)
    manager.close()
    assert checkpoint.steps(workdir) == [1, 3]
    restored, step = checkpoint.restore_newest(workdir, abstract, warn=pytest.fail)
    assert step == 3
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(s3))


def test_async_failure_is_reported_under_its_own_step(small_disk, one_device_mesh):
    workdir = str(small_disk / "run")
    (s1, s2, s3), _ = _states(one_device_mesh, 3)
    manager = checkpoint.make_manager(workdir, keep=3)
    checkpoint.save(manager, 1, s1, wait=True)
    _fill(small_disk, leave=64 * 1024)
    with pytest.raises(ValueError, match=r"^checkpoint at step 2 could not be written"):
        checkpoint.save(manager, 2, s2)  # asynchronous: may return before the write fails
        checkpoint.save(manager, 3, s3)  # then the failure shows here, still as step 2's
    assert checkpoint.steps(workdir) == [1]
    manager.close()


def test_a_failed_best_save_names_the_best_states_kept(small_disk, one_device_mesh):
    """The best state's directory fails on its own: the message lists its steps, not those of
    ``checkpoints/``."""
    workdir = str(small_disk / "run")
    (s1, s2), _ = _states(one_device_mesh, 2)
    newest = checkpoint.make_manager(workdir, keep=3)
    best = checkpoint.make_manager(workdir, keep=1, name=layout.BEST)
    for step, state in ((1, s1), (2, s2)):
        checkpoint.save(newest, step, state, wait=True)
    checkpoint.save(best, 1, s1, wait=True)
    _fill(small_disk, leave=0)
    with pytest.raises(ValueError) as info:
        checkpoint.save(best, 2, s2, wait=True)
    directory = os.path.join(workdir, layout.BEST)
    assert str(info.value).startswith(f"checkpoint at step 2 could not be written to {directory}")
    assert str(info.value).endswith("; the previous checkpoints are kept (steps 1)")
    assert checkpoint.steps(workdir, layout.BEST) == [1]
    newest.close()
    best.close()


def test_no_previous_checkpoint(small_disk, one_device_mesh):
    workdir = str(small_disk / "run")
    (s1,), abstract = _states(one_device_mesh, 1)
    manager = checkpoint.make_manager(workdir, keep=3)
    _fill(small_disk, leave=0)
    with pytest.raises(ValueError, match=r"; there is no previous checkpoint$"):
        checkpoint.save(manager, 1, s1, wait=True)
    assert checkpoint.restore_newest(workdir, abstract) is None
    manager.close()


# RLIMIT_FSIZE needs no privilege; it must be set in a process of its own (pytest writes files).
_FILE_SIZE_LIMIT_SCRIPT = """
import json, os, resource, signal, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
import chex, jax, jax.numpy as jnp, numpy as np
from jaxvae import checkpoint, sharding
from tests.test_disk_full import _states

workdir = sys.argv[1]
mesh = sharding.make_mesh(jax.devices()[:1])
(s1, s2), abstract = _states(mesh, 2)
manager = checkpoint.make_manager(workdir, keep=3)
checkpoint.save(manager, 1, s1, wait=True)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard))  # below the parameters' data file
try:
    checkpoint.save(manager, 2, s2, wait=True)
    error = None
except ValueError as e:
    error = str(e)
listing = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
restored, step = checkpoint.restore_newest(workdir, abstract)
same = bool(jax.tree.all(jax.tree.map(
    lambda a, b: np.array_equal(a, b), jax.device_get(restored), jax.device_get(s1))))
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
checkpoint.save(manager, 2, s2, wait=True)
manager.close()
print(json.dumps({"error": error, "listing": listing, "step": step, "same": same,
                  "after": checkpoint.steps(workdir)}))
"""


def test_file_size_limit_during_save(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo] + [p for p in sys.path if p]))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FILE_SIZE_LIMIT_SCRIPT), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    directory = os.path.join(str(tmp_path / "run"), layout.CHECKPOINTS)
    assert result["error"] == (
        f"checkpoint at step 2 could not be written to {directory}: File too large; "
        "the previous checkpoints are kept (steps 1)"
    )
    assert result["listing"] == ["1"]
    assert result["step"] == 1 and result["same"]
    assert result["after"] == [1, 2]
