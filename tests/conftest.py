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
# out one by one.
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
    def module(item):
        return os.path.basename(item.nodeid.split("::")[0])[:-3]

    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: file order kept
    for item in items:
        if module(item) not in SPLIT:
            item.add_marker(pytest.mark.xdist_group(module(item)))
