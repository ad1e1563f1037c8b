"""A run resumed in the middle of an epoch ends as if it had never stopped: the same parameters
and the same metrics lines, each step once. (tests/test_cli.py kills a real process mid-epoch.)"""

import json
import os
import shutil

import pytest

import jaxvae
from jaxvae import config as config_lib
from tests.conftest import CONFIGS

PER_EPOCH, EPOCHS, EVERY = 512 // 64, 3, 5  # smoke.py: 8 steps per epoch; a checkpoint every 5


def _config():
    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))
    config.train.epochs = EPOCHS
    config.train.checkpoint_every_steps = EVERY
    config.train.keep_checkpoints = 10
    return config


def _records(workdir):
    """metrics.jsonl without the one timing figure, which differs from run to run."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in lines]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("resume") / "whole")
    return workdir, jaxvae.train(_config(), workdir)


def _killed_copy(whole, target, last_checkpoint):
    """``whole`` as a run killed after step ``last_checkpoint`` was saved would have left it: no
    later checkpoint, no summary or pictures, metrics lines past the checkpoint (they are written
    before it is saved) and a last line torn by the kill."""
    shutil.copytree(whole, target)
    for step in os.listdir(os.path.join(target, "checkpoints")):
        if int(step) > last_checkpoint:
            shutil.rmtree(os.path.join(target, "checkpoints", step))
    for name in os.listdir(target):
        if name.endswith(".png") or name == "summary.json":
            os.remove(os.path.join(target, name))
    with open(os.path.join(target, "metrics.jsonl"), "a") as f:
        f.write('{"elbo": -300.1, "epoch": 2.')


def test_expected_checkpoints_and_lines(uninterrupted):
    whole, summary = uninterrupted
    total = EPOCHS * PER_EPOCH
    assert summary["steps"] == total
    expected_ckpts = [s for s in range(1, total + 1) if s % EVERY == 0 or s == total]
    assert sorted(map(int, os.listdir(os.path.join(whole, "checkpoints")))) == expected_ckpts
    # a training line at every return to the host: checkpoint steps and epoch ends
    dispatches = sorted(set(expected_ckpts) | set(range(PER_EPOCH, total + 1, PER_EPOCH)))
    records = _records(whole)
    assert [r["step"] for r in records if "loss" in r] == dispatches
    assert [r["step"] for r in records if "test_nelbo" in r] == list(
        range(PER_EPOCH, total + 1, PER_EPOCH)
    )


@pytest.mark.parametrize("last_checkpoint", [10, 15])
def test_resume_mid_epoch_matches_the_uninterrupted_run(uninterrupted, tmp_path, last_checkpoint):
    whole, summary = uninterrupted
    assert last_checkpoint % PER_EPOCH != 0  # in the middle of an epoch
    killed = str(tmp_path / "killed")
    _killed_copy(whole, killed, last_checkpoint)
    resumed = jaxvae.train(_config(), killed)
    assert resumed["resumed_from_step"] == last_checkpoint
    assert resumed["steps"] == summary["steps"]
    assert resumed["params_digest"] == summary["params_digest"]
    assert resumed["test_nelbo"] == summary["test_nelbo"]
    # the same lines: the kept ones of the killed attempt, then the continuation; none twice,
    # none missing, the torn one gone
    records = _records(killed)
    assert records == _records(whole)
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == sorted(set(train_steps))
    files = lambda d: sorted(f for f in os.listdir(d) if not f.startswith("events.out.tfevents"))
    assert files(killed) == files(whole)  # (TensorBoard files are named by their start time)


def test_a_stop_inside_a_log_interval_carries_its_sums(uninterrupted, tmp_path, monkeypatch):
    """A stop request between two log lines (here after 3 one-step dispatches of a 5-step
    interval) saves the running sums with the checkpoint; the resumed run's line at the end of
    that interval averages all 5 steps, as the uninterrupted run's does, bit for bit."""
    from jaxvae import preemption, runner

    whole, summary = uninterrupted
    workdir = str(tmp_path / "stopped")
    monkeypatch.setattr(runner.DispatchPacer, "steps", lambda self, remaining: 1)
    calls = {"n": 0}

    def due(self):
        calls["n"] += 1
        return calls["n"] == 3

    monkeypatch.setattr(preemption.StopRequest, "due", due)
    with pytest.raises(preemption.Preempted):
        jaxvae.train(_config(), workdir)
    assert os.path.exists(os.path.join(workdir, "carried_sums.json"))
    monkeypatch.undo()
    resumed = jaxvae.train(_config(), workdir)
    assert resumed["resumed_from_step"] == 3  # inside the interval [0, 5)
    assert resumed["params_digest"] == summary["params_digest"]
    assert _records(workdir) == _records(whole)
