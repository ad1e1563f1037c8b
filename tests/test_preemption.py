"""SIGTERM in the middle of `jaxvae train`: a checkpoint of the step reached, exit code 75 within
seconds, and a resumed run that ends bit-identical to an uninterrupted one; one process and two."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import pytest

import jaxvae
from jaxvae import checkpoint, preemption, sharding
from jaxvae import config as config_lib
from tests.conftest import CONFIGS, REPO

EXE = os.path.join(os.path.dirname(sys.executable), "jaxvae")
ARGS = [
    "train",
    "--config",
    os.path.join(CONFIGS, "smoke.py"),
    "--config.data.limit_train=12800",
    "--config.data.limit_test=256",
    "--config.model.hidden=64",
    "--config.train.epochs=3",
    "--config.train.max_dispatch_s=0.05",
    "--config.train.checkpoint_min_interval_s=1000",
]


def _wait_for_training(workdir, proc, timeout=240):
    """Until the first metrics line exists (compilation is over, training is under way)."""
    path = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        time.sleep(0.05)
    raise AssertionError("training did not start")


def _summary(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


def _training_lines(workdir):
    """The training lines of metrics.jsonl, without their (timing) images_per_sec."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f if '"loss"' in line]
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in lines]


def _config(*args):
    """The config of `jaxvae train` with ``args`` after ARGS, for a run in this process."""
    config = config_lib.load_config_file(ARGS[2])
    config_lib.apply_overrides(config, [a.removeprefix("--config.") for a in (*ARGS[3:], *args)])
    return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run never stopped, in this process (the same four devices as `jaxvae train`)."""
    workdir = str(tmp_path_factory.mktemp("plain"))
    jaxvae.train(_config(), workdir, stream=io.StringIO())
    return _summary(workdir) | {"lines": _training_lines(workdir)}


def test_sigterm_checkpoints_the_step_reached_and_resumes_bit_identically(tmp_path, uninterrupted):
    workdir = str(tmp_path / "run")
    proc = subprocess.Popen(
        [EXE, *ARGS, "--workdir", workdir], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    _wait_for_training(workdir, proc)
    time.sleep(0.05)  # into the second epoch's dispatches
    proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    waited = time.time() - t0
    assert proc.returncode == preemption.EXIT_PREEMPTED, err
    # Within 10 s as promised; the bound stands for "finishes the dispatch in flight, not the run".
    assert waited < 10, waited
    steps = checkpoint.steps(workdir)
    stopped_at = int(err.split("at step ")[1].split(";")[0])
    assert steps[-1] == stopped_at, (steps, err)
    per_epoch = 12800 // 64
    assert stopped_at < 3 * per_epoch  # it did stop early
    assert not os.path.exists(os.path.join(workdir, "summary.json"))
    # Resumed: the same final parameters as the run that was never stopped.
    out = subprocess.run(
        [EXE, *ARGS, "--workdir", workdir], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    resumed = _summary(workdir)
    assert resumed["resumed_from_step"] == stopped_at
    assert resumed["params_digest"] == uninterrupted["params_digest"]
    # Metrics lines: the same lines as the uninterrupted run, none twice; the interrupted
    # epoch's line averages all its steps (the sums before the stop were carried over).
    lines = _training_lines(workdir)
    assert [r["step"] for r in lines] == [r["step"] for r in uninterrupted["lines"]]
    assert lines == uninterrupted["lines"]


def test_second_signal_ends_at_once(tmp_path):
    workdir = str(tmp_path / "run")
    args = [a for a in ARGS if not a.startswith("--config.train.max_dispatch_s")]
    # One long dispatch per epoch: the first signal waits for it, the second does not.
    proc = subprocess.Popen(
        [
            EXE,
            *args,
            "--config.train.max_dispatch_s=0",
            "--config.train.epochs=50",
            "--workdir",
            workdir,
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_training(workdir, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# 300 steps of 50 ms (the two processes' all-reduce): long enough that JAX's sync protocol lands
# before the end
PAIR = ("--config.train.epochs=12", "--config.data.limit_train=1600")


def test_two_processes_agree_on_the_step_to_save(tmp_path):
    """SIGTERM to one of two processes: JAX's preemption sync point makes both save the same
    step and stop; restarted, the pair ends with the params_digest of an uninterrupted run on
    two devices (here one process: the sum of two devices' gradients is the same bits in either
    order, so one process of two devices and two of one train alike)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")

    def start(workdir):
        address = f"localhost:{_free_port()}"
        return [
            subprocess.Popen(
                [
                    EXE,
                    *ARGS,
                    *PAIR,
                    "--workdir",
                    workdir,
                    "--coordinator-address",
                    address,
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                ],
                env=env,
                cwd=REPO,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]

    two_devices = sharding.make_mesh(jax.devices()[:2])
    uninterrupted = jaxvae.train(
        _config(*PAIR), str(tmp_path / "plain"), mesh=two_devices, stream=io.StringIO()
    )
    assert uninterrupted["devices"] == 2 and uninterrupted["steps"] == 300
    workdir = str(tmp_path / "multi")
    procs = start(workdir)
    _wait_for_training(workdir, procs[0])
    time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    errs = [p.communicate(timeout=120)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [preemption.EXIT_PREEMPTED] * 2, (codes, errs)
    stopped = {int(e.split("at step ")[1].split(";")[0]) for e in errs}
    assert len(stopped) == 1, errs
    (step,) = stopped
    assert checkpoint.steps(workdir)[-1] == step
    procs = start(workdir)
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    summary = _summary(workdir)
    assert summary["resumed_from_step"] == step and summary["processes"] == 2
    assert summary["devices"] == 2 and summary["steps"] == 300
    assert summary["params_digest"] == uninterrupted["params_digest"]
