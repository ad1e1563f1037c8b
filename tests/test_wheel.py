"""The built wheel, installed into a fresh virtualenv outside the repository: from an empty
directory, ``jaxvae train --config vae`` trains on Fashion-MNIST, and ``eval``, ``sample``, a
shipped study chosen by name (one shard), ``configs`` and ``--version`` work; a model family of another
package, found through its ``jaxvae.models`` entry point, trains and is evaluated.

The wheel is built once (``python -m build --wheel``, offline: ``--no-isolation``) from a copy of
the repository's files; the virtualenv reaches this interpreter's packages (jax, flax, ...) after
its own, so ``jaxvae`` is the wheel's, never ``src/``.
"""

import ast
import glob
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv

import numpy as np
import pytest

from jaxvae import plots
from tests.conftest import REPO

# Tiny data and one epoch: 2 training steps of 64 images, 64 test images.
SMALL = (
    "--config.data.limit_train=128",
    "--config.data.limit_test=64",
    "--config.train.batch_size=64",
    "--config.eval.batch_size=64",
    "--config.eval.num_pictures=4",
)

EVAL = ("--iwae-k", "2", "--num-examples", "64")  # the test figures' programs are training's


class Installed:
    def __init__(self, root):
        self.root = root
        self.bin = os.path.join(root, "venv", "bin")
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env["PATH"] = self.bin + os.pathsep + os.environ.get("PATH", "")

    def run(self, *args, cwd, check=True, pythonpath=None):
        env = dict(self.env, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
        proc = subprocess.run(
            [os.path.join(self.bin, args[0]), *args[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check:
            assert proc.returncode == 0, (args, proc.stderr[-3000:])
        return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("wheel"))
    source = os.path.join(root, "source")
    os.makedirs(source)
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "experiments"):  # src/jaxvae/experiments links to ../../experiments
        shutil.copytree(os.path.join(REPO, name), os.path.join(source, name), True, ignore)
    dist = os.path.join(root, "dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, source],
        check=True,
        capture_output=True,
    )
    (wheel,) = glob.glob(os.path.join(dist, "jaxvae-*.whl"))
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(os.path.join(root, "venv"))
    out = Installed(root)
    python = os.path.join(out.bin, "python")
    purelib = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
    ).strip()
    with open(os.path.join(purelib, "test_dependencies.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")  # plain paths: their .pth files unread
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
        env=out.env,
    )
    return out


def _repo_version():
    tree = ast.parse(open(os.path.join(REPO, "src", "jaxvae", "__init__.py")).read())
    (value,) = [
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and n.targets[0].id == "__version__"
    ]
    return value


def _names(directory):
    return sorted(
        os.path.basename(p)[:-3]
        for p in glob.glob(os.path.join(REPO, "experiments", directory, "*.py"))
    )


def test_the_wheel_trains_evaluates_samples_and_runs_a_shipped_study(installed, tmp_path):
    cwd = str(tmp_path / "empty")
    os.makedirs(cwd)
    # the wheel's files, not src/; a config, --version and configs in one interpreter start
    info = installed.run(
        "python",
        "-c",
        "import jaxvae, jaxvae.shipped as s, jaxvae.cli as c; print(jaxvae.__file__); "
        "print(s.ROOT); print(jaxvae.load_config_file('factorvae').model.kind); "
        "c.main(['--version']); c.main(['configs'])",
        cwd=cwd,
    ).stdout.splitlines()
    venv_dir = os.path.join(installed.root, "venv") + os.sep
    assert info[0].startswith(venv_dir) and info[1].startswith(venv_dir), info[:2]
    assert info[2] == "factorvae"  # a shipped config that loads another (dsprites) by name
    assert info[3].split() == ["jaxvae", _repo_version()]
    rows = [line[2:].split("  ")[0] for line in info[4:] if line.startswith("  ")]
    shown = {name for row in rows for name in row.split(", ")}
    assert shown == set(_names("configs")) | set(_names("studies")) | {"vae"}
    assert any(line.startswith("  vae, default  Default run: a conv VAE") for line in info)

    installed.run(
        "jaxvae", "train", "--config", "vae", "--workdir", "runs/a", "--config.train.epochs=1",
        *SMALL, cwd=cwd,
    )  # fmt: skip
    run = os.path.join(cwd, "runs", "a")
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["model"]["kind"] == "vae" and config["model"]["architecture"] == "conv"
    assert config["model"]["latent_dim"] == 16 and tuple(config["model"]["channels"]) == (32, 64)
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["steps"] == 128 // 64 and np.isfinite(summary["test_nelbo"])

    installed.run("jaxvae", "eval", *EVAL, "--workdir", "runs/a", cwd=cwd)
    result = json.load(open(os.path.join(run, "eval.json")))
    assert result["num_examples"] == 64 and result["step"] == 2 and result["iwae_k"] == 2
    # the test figures of the final state, as training computed them (the same batches and keys)
    assert result["test_nelbo"] == pytest.approx(summary["test_nelbo"], rel=1e-5)
    assert np.isfinite(result["test_nll"])

    installed.run("jaxvae", "sample", "--workdir", "runs/a", "--num", "4", cwd=cwd)
    height, width = plots.read_grid(os.path.join(run, "samples.png")).shape[:2]
    assert width > 3 * height  # one row of four samples (the grid, without its title)

    # a shipped study by name: the shard of beta_sweep whose run is this config at beta = 1
    installed.run(
        "jaxvae", "study", "run", "beta_sweep", "--workdir", "study", "--shard", "2/6",
        "--seeds", "1", "--config.train.epochs=1", *SMALL, cwd=cwd,
    )  # fmt: skip
    assert sorted(os.listdir(os.path.join(cwd, "study", "runs"))) == ["beta=1-seed0"]
    done = os.path.join(cwd, "study", "runs", "beta=1-seed0")
    assert json.load(open(os.path.join(done, "config.json")))["objective"]["beta"] == 1.0
    study_summary = json.load(open(os.path.join(done, "summary.json")))
    assert study_summary["steps"] == 2
    # the same config, seed and data as runs/a: the same training
    assert study_summary["test_nelbo"] == pytest.approx(summary["test_nelbo"], rel=1e-5)


USER_FAMILY = '''
"""A family defined outside jaxvae: the VAE under another name, with an option of its own."""

import dataclasses

from jaxvae.models.vae import VAE


@dataclasses.dataclass(frozen=True)
class UserVAE(VAE):
    tag: str = "mine"
'''


def test_a_family_of_another_package_is_found_through_its_entry_point(installed, tmp_path):
    site_dir = tmp_path / "site"
    (site_dir / "userfam").mkdir(parents=True)
    (site_dir / "userfam" / "__init__.py").write_text(USER_FAMILY)
    info = site_dir / "userfam-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: userfam\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[jaxvae.models]\nuserfam = userfam:UserVAE\n")
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "user.py").write_text(
        textwrap.dedent('''
        """The default VAE config with the user's family."""
        from jaxvae.config import load_config_file


        def get_config():
            config = load_config_file("vae")
            config.model.kind = "userfam"
            return config
        ''')
    )
    installed.run(
        "jaxvae", "train", "--config", "user.py", "--workdir", "runs/u", "--config.train.epochs=1",
        *SMALL, cwd=cwd, pythonpath=str(site_dir),
    )  # fmt: skip
    assert json.load(open(cwd / "runs" / "u" / "config.json"))["model"]["kind"] == "userfam"
    # without the package the saved run names an unknown family: one line, exit 2
    failed = installed.run("jaxvae", "eval", "--workdir", "runs/u", cwd=cwd, check=False)
    assert failed.returncode == 2 and "'userfam'" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    installed.run("jaxvae", "eval", *EVAL, "--workdir", "runs/u", cwd=cwd, pythonpath=str(site_dir))
    result = json.load(open(cwd / "runs" / "u" / "eval.json"))
    assert result["step"] == 2 and np.isfinite(result["test_nll"])
