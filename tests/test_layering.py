"""The package's layering: every module imports on its own (no import circle), only the config
layer and the CLI read ConfigDicts, modules stay small, and the training loop fits a screen."""

import ast
import inspect
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SRC = os.path.join(REPO, "src")
PACKAGE = os.path.join(SRC, "jaxvae")
# The config layer and the command line: the only modules that may read a ConfigDict.
CONFIG_LAYER = ("jaxvae.config", "jaxvae.experiment", "jaxvae.cli", "jaxvae.api", "jaxvae.studies")


def _modules():
    out = []
    for root, _, files in os.walk(PACKAGE):
        for f in sorted(files):
            if f.endswith(".py") and f != "__main__.py":
                rel = os.path.relpath(os.path.join(root, f), SRC)[:-3].replace(os.sep, ".")
                out.append((rel.removesuffix(".__init__"), os.path.join(root, f)))
    return sorted(out)


def _top_level_imports(path):
    """The jaxvae modules a file imports when it is imported (not inside functions)."""
    tree = ast.parse(open(path).read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jaxvae")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxvae"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


# One interpreter imports, once, every third-party module the package uses (their names taken
# from a first child that imports the whole package), then forks a child per jaxvae module: each
# child starts with no jaxvae module loaded, so an import circle or a missing import inside the
# package fails there exactly as in a fresh interpreter, without paying jax's import 80 times.
_FORK_EACH = """
import importlib, os, sys
names = sys.argv[1:]
r, w = os.pipe()
if os.fork() == 0:
    for name in names:
        importlib.import_module(name)
    os.write(w, "\\n".join(m for m in sys.modules if not m.startswith("jaxvae")).encode())
    os._exit(0)
os.close(w)
with os.fdopen(r) as f:
    third_party = f.read().split()
for m in third_party:
    try:
        importlib.import_module(m)
    except BaseException:
        pass
assert not [m for m in sys.modules if m.startswith("jaxvae")]
failed = []
for name in names:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as e:
            print(name, type(e).__name__, e, file=sys.stderr, flush=True)
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print(failed)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    env = dict(os.environ, PYTHONPATH=SRC, JAX_PLATFORMS="cpu")
    names = [m for m, _ in _modules()]
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_EACH, *names], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_the_commands_start_without_scikit_learn():
    """`jaxvae train` and `jaxvae eval` import scikit-learn (a second or two of every start) only
    where the disentanglement metrics are asked for."""
    env = dict(os.environ, PYTHONPATH=SRC, JAX_PLATFORMS="cpu")
    code = (
        "import sys, jaxvae.api, jaxvae.cli, jaxvae.runner, jaxvae.summary; "
        "print([m for m in ('sklearn', 'jaxvae.disentangle') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_module_import_graph_has_no_cycle():
    names = {m for m, _ in _modules()}
    graph = {
        m: {
            d
            for d in _top_level_imports(p)
            if d in names and d != m and not m.startswith(d + ".")  # (its own package: a
        }  # submodule imports its siblings through it, never the package's own body)
        for m, p in _modules()
    }
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import circle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for d in sorted(graph[m]):
            visit(d, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        visit(m, [])


def test_only_the_config_layer_reads_configdicts():
    readers = [
        m
        for m, p in _modules()
        if "ml_collections" in {n.split(".")[0] for n in _imported_names(p)}
        and not m.startswith(CONFIG_LAYER)
    ]
    assert readers == []


def _imported_names(path):
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name,path", _modules())
def test_modules_stay_small(name, path):
    with open(path) as f:
        assert sum(1 for _ in f) <= 400, name


def test_the_training_loop_fits_on_one_screen():
    from jaxvae import runner

    assert len(inspect.getsource(runner.drive).splitlines()) <= 60
