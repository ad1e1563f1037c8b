"""Data parallelism: one device, four forced CPU devices, and two processes of two devices agree;
checkpoints move between device counts."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxvae
import jaxvae as jv
from jaxvae import config as config_lib
from jaxvae import runner, sharding
from jaxvae import summary as summary_lib
from tests.conftest import CONFIGS, REPO


def _config(epochs=1, **train):
    c = config_lib.load_config_file(os.path.join(CONFIGS, "peer_mlp.py"))
    c.data.limit_train = 2560
    c.data.limit_test = 500
    c.model.hidden = (128,)
    c.train.epochs = epochs
    c.train.progress = False
    c.eval.num_pictures = 16
    for k, v in train.items():
        c.train[k] = v
    return c


def _mesh(n):
    return sharding.make_mesh(jax.devices()[:n])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The 2-epoch run on one device that the other topologies are compared with (trained once)."""
    workdir = str(tmp_path_factory.mktemp("sharding") / "one")
    return workdir, jaxvae.train(_config(2), workdir, mesh=_mesh(1))


def assert_params_close(workdir, reference):
    """The parameters of two runs agree leaf by leaf, as far as the order of floating-point sums
    allows (measured: 4e-6 at most): 40 Adam steps of about 1e-3 each moved them by far more."""
    a, b = jv.load_run(workdir).params, jv.load_run(reference).params
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_leaves(b)
    for (path, x), y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=5e-5, err_msg=jax.tree_util.keystr(path))


def _checkpoints(workdir):
    return sorted(map(int, os.listdir(os.path.join(workdir, "checkpoints"))))


def test_four_devices_match_one(one_device, tmp_path):
    workdir, one = one_device
    four = jaxvae.train(_config(2), str(tmp_path / "four"), mesh=_mesh(4))
    assert four["devices"] == 4 and one["devices"] == 1
    # Same data order and randomness; only the order of floating-point sums differs.
    assert_params_close(str(tmp_path / "four"), workdir)
    assert abs(one["test_nelbo"] - four["test_nelbo"]) < 0.05, (one, four)
    # the first epoch's end and the last step (README), on every topology
    assert _checkpoints(workdir) == _checkpoints(str(tmp_path / "four")) == [20, 40]


def test_checkpoint_on_four_devices_continues_on_one(one_device, tmp_path):
    workdir, plain = one_device
    moved = str(tmp_path / "moved")
    jaxvae.train(_config(1), moved, mesh=_mesh(4))
    assert _checkpoints(moved) == [20]
    continued = jaxvae.train(_config(2), moved, mesh=_mesh(1))
    assert continued["resumed_from_step"] == 20 and continued["steps"] == 40
    assert_params_close(moved, workdir)
    assert abs(plain["test_nelbo"] - continued["test_nelbo"]) < 0.05


def test_batch_that_does_not_divide_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not divide by the 4 devices"):
        jaxvae.train(_config(1, batch_size=126), str(tmp_path / "x"), mesh=_mesh(4))
    assert not os.path.exists(tmp_path / "x")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_device(one_device, tmp_path):
    """Two local processes of two CPU devices each, joined by jax.distributed (gloo collectives)."""
    args = [
        "train",
        "--config",
        os.path.join(CONFIGS, "peer_mlp.py"),
        "--workdir",
        str(tmp_path / "multi"),
        "--config.data.limit_train=2560",
        "--config.data.limit_test=500",
        "--config.model.hidden=128",
        "--config.train.epochs=2",
        "--config.train.progress=false",
        "--config.eval.num_pictures=16",
    ]
    exe = os.path.join(os.path.dirname(sys.executable), "jaxvae")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    address = f"localhost:{_free_port()}"
    procs = [
        subprocess.Popen(
            [
                exe,
                *args,
                "--coordinator-address",
                address,
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    multi = str(tmp_path / "multi")
    summary = json.load(open(os.path.join(multi, "summary.json")))
    assert summary["processes"] == 2 and summary["devices"] == 4
    workdir, one = one_device
    assert abs(summary["test_nelbo"] - one["test_nelbo"]) < 0.05, (summary, one)
    # the checkpoint the two processes wrote together: the first epoch's and the last step's,
    # readable in a single process, and the same parameters as the one-device run
    assert _checkpoints(multi) == [20, 40]
    run = jv.load_run(multi)
    assert run.step == 40
    assert summary_lib.params_digest(run.params) == summary["params_digest"]
    assert_params_close(multi, workdir)


def test_a_later_process_of_a_fresh_run_does_not_resume(tmp_path, monkeypatch):
    """Process 1 of a new two-process run that opens the workdir after process 0 has written
    config.json takes process 0's answer (no run yet) and starts fresh with it, instead of
    taking the resume path alone (the two would then run different collectives and hang)."""
    from jaxvae import checkpoint, io
    from jaxvae import experiment as build_lib

    config = _config()
    exp = build_lib.build(config, mesh=_mesh(1))
    workdir = tmp_path / "run"
    workdir.mkdir()
    io.write_json(str(workdir / "config.json"), config.to_dict())  # process 0's write
    asked = []
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    monkeypatch.setattr(sharding, "from_process_0", lambda v: asked.append(v) or 0.0)

    def restore(*args, **kwargs):
        raise AssertionError("process 1 took the resume path")

    monkeypatch.setattr(checkpoint, "restore_newest", restore)
    state, start, existing = runner.open_run(exp, str(workdir), print)
    assert asked == [1.0]  # it saw config.json, and asked process 0
    assert (start, existing) == (0, False)
    assert int(state.step) == 0
