"""Test set-up: four host CPU devices, so that data-parallel code runs sharded in every test run."""

import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

# One XLA compilation cache for the whole test session, this process and the CLI processes tests
# start (their environments copy this one): the many runs of one small config compile the same
# programs, and a cached executable is the same executable (the same bits). A fresh directory
# per session, so nothing is reused across versions.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jaxvae-tests-xla-cache-")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Byte-code of the package's own sources, written beside them: the tests start many fresh
# interpreters (CLI runs, import checks), and each would otherwise compile every module again
# where the environment sets PYTHONDONTWRITEBYTECODE.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "experiments", "configs")


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real Fashion-MNIST, loaded once."""
    from jaxvae import data

    return data.load_dataset("fashion_mnist")


@pytest.fixture
def one_device_mesh():
    from jaxvae import sharding

    return sharding.make_mesh(jax.devices()[:1])


# The order the test modules are handed to pytest-xdist's workers (`make test`: --dist loadgroup
# --no-loadscope-reorder): the slowest first, so the workers finish together. Each module is one
# unit of work (its module fixtures built once), except the families test, whose families go
# out one by one. The units are made by `pytest_xdist_make_scheduler` below, not by xdist's
# `xdist_group` marks: with pytest 9.2 those marks no longer reach xdist 3.8's scheduler (it
# writes the group into a node id field pytest stopped reading, pytest-xdist issue 1386), so
# every test went out alone and a module's fixtures were built once per worker.
SLOWEST_FIRST = (
    "test_families",
    "test_preemption",
    "test_cli",
    "test_studies",
    "test_wheel",
    "test_gcs",
    "test_streaming",
    "test_sharding",
    "test_e2e_models",
    "test_disentangle",
    "test_seeds",
    "test_cifar10_tfds",
    "test_shipped_studies",
    "test_trackers",
    "test_layering",
    "test_gpu_studies",
    "test_folder",
    "test_early_stopping",
)
SPLIT = ("test_families",)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(_module(item.nodeid), len(rank)))  # stable: file order


def _module(nodeid: str) -> str:
    return os.path.basename(nodeid.split("::")[0])[:-3]


@pytest.hookimpl(optionalhook=True)  # (a hook of pytest-xdist: unknown without it)
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadgroup``: one unit of work per test module (per test in the SPLIT
    modules), in collection order."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if _module(nodeid) in SPLIT else nodeid.split("::")[0]

    return ByModule(config, log)
