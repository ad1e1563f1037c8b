"""Config keys that change what a run does, each exercised end to end on the smoke config:
eval.iwae_k, train.eval_every_epochs, train.steps_per_dispatch, train.log_every_steps,
train.optimizer=adamw with train.weight_decay, objective.warmup_steps and data.binarize=dynamic."""

import json
import os

import jax
import numpy as np
import pytest

import jaxvae
from jaxvae import cli
from jaxvae import config as config_lib
from tests.conftest import CONFIGS
from tests.references import numpy_nelbo_and_iwae

SMOKE = os.path.join(CONFIGS, "smoke.py")
PER_EPOCH, EPOCHS, NUM_TEST = 512 // 64, 4, 256  # smoke.py: 512 images in batches of 64


def _config(**overrides):
    """smoke.py for EPOCHS epochs, with ``section__key=value`` overrides."""
    config = config_lib.load_config_file(SMOKE)
    config.train.epochs = EPOCHS
    items = [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()]
    config_lib.apply_overrides(config, items)
    return config


def _train(tmp_path_factory, name, **overrides):
    workdir = str(tmp_path_factory.mktemp("keys") / name)
    return workdir, jaxvae.train(_config(**overrides), workdir)


def _records(workdir):
    return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def _norm(params):
    leaves = jax.tree_util.tree_leaves(params)
    return np.sqrt(sum(np.sum(np.square(p, dtype=np.float64)) for p in leaves))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The smoke config as it is (Adam, no warm-up, a dispatch and a line per epoch)."""
    return _train(tmp_path_factory, "plain")


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """The same run, dispatched every 3 steps and logged every 4, tested every 2 epochs, with an
    IWAE bound at the end: none of which may change the training."""
    return _train(
        tmp_path_factory,
        "chunked",
        train__steps_per_dispatch=3,
        train__log_every_steps=4,
        train__eval_every_epochs=2,
        eval__iwae_k=32,
        eval__iwae_num_examples=NUM_TEST,
    )


def test_dispatch_and_log_intervals_do_not_change_the_training(plain, chunked):
    assert chunked[1]["params_digest"] == plain[1]["params_digest"]
    assert chunked[1]["test_nelbo"] == plain[1]["test_nelbo"]


def test_steps_per_dispatch_and_log_every_steps_set_the_lines(plain, chunked):
    total = EPOCHS * PER_EPOCH
    # a training line where the engine returns: multiples of 3 (dispatch) and of 4 (log), epoch
    # ends and the last step
    expected = [s for s in range(1, total + 1) if s % 3 == 0 or s % 4 == 0 or s % PER_EPOCH == 0]
    lines = [r for r in _records(chunked[0]) if "loss" in r]
    assert [r["step"] for r in lines] == expected
    assert [r["epoch"] for r in lines] == [s / PER_EPOCH for s in expected]
    # each line is the mean over its own steps: weighted by their counts they give each epoch's
    # mean of the plain run, which had one line per epoch
    epoch_lines = {r["step"]: r for r in _records(plain[0]) if "loss" in r}
    previous = 0
    sums = {}
    for r in lines:
        epoch = (r["step"] - 1) // PER_EPOCH
        for name in ("loss", "recon", "kl", "elbo"):
            sums[epoch, name] = sums.get((epoch, name), 0.0) + r[name] * (r["step"] - previous)
        previous = r["step"]
    for epoch in range(EPOCHS):
        ref = epoch_lines[(epoch + 1) * PER_EPOCH]
        for name in ("loss", "recon", "kl", "elbo"):
            assert sums[epoch, name] / PER_EPOCH == pytest.approx(ref[name], rel=1e-5), (
                epoch,
                name,
            )


def test_eval_every_epochs(plain, chunked):
    def tested(workdir):
        return [r["epoch"] for r in _records(workdir) if "test_nelbo" in r]

    assert tested(plain[0]) == [1, 2, 3, 4]  # the default: every epoch
    assert tested(chunked[0]) == [2, 4]  # eval_every_epochs=2


def test_eval_every_epochs_zero_tests_only_at_the_end(tmp_path_factory):
    workdir, summary = _train(tmp_path_factory, "end", train__epochs=3, train__eval_every_epochs=0)
    tests = [r for r in _records(workdir) if "test_nelbo" in r]
    assert [r["step"] for r in tests] == [3 * PER_EPOCH]
    assert tests[0]["test_nelbo"] == summary["test_nelbo"]


def test_iwae_at_the_end_of_training(chunked, capsys):
    workdir, summary = chunked
    assert summary["iwae_k"] == 32 and summary["iwae_num_examples"] == NUM_TEST
    assert summary == json.load(open(os.path.join(workdir, "summary.json")))
    # the same bound as `jaxvae eval` computes with the same k on the same images
    argv = ["eval", "--workdir", workdir, "--iwae-k", "32", "--num-examples", str(NUM_TEST)]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_nll"] == pytest.approx(summary["test_nll"], rel=1e-6)
    assert result["test_nll_se"] == pytest.approx(summary["test_nll_se"], rel=1e-6)
    # ... and as numpy computes from the trained encoder and decoder, within its Monte Carlo
    # spread (two replicas); tighter than the ELBO
    run = jaxvae.load_run(workdir)
    x = jaxvae.load_dataset("fashion_mnist", limit_test=NUM_TEST).test_images
    nelbo, iwae = numpy_nelbo_and_iwae(run, x, samples=4, k=32, seed=0)
    _, iwae2 = numpy_nelbo_and_iwae(run, x, samples=1, k=32, seed=1)
    se = np.std(iwae - iwae2, ddof=1) / np.sqrt(NUM_TEST)
    assert abs(summary["test_nll"] - iwae.mean()) < 4 * se + 1e-3, (
        summary["test_nll"],
        iwae.mean(),
    )
    assert summary["test_nll"] < nelbo.mean()
    se_over_images = np.std(iwae, ddof=1) / np.sqrt(NUM_TEST)
    assert 0.5 * se_over_images < summary["test_nll_se"] < 2 * se_over_images


def test_no_iwae_unless_asked(plain):
    assert not any(k.startswith(("test_nll", "iwae")) for k in plain[1])


def test_kl_warmup_ramps_inside_the_engine(tmp_path_factory):
    """With a line per step, each step's loss is recon + w * kl with w = min(1, step / warmup),
    step counted from 0 (a step counter stuck at 0 would leave w at 0)."""
    warmup = 10
    workdir, _ = _train(
        tmp_path_factory,
        "warmup",
        train__epochs=2,
        train__log_every_steps=1,
        objective__warmup_steps=warmup,
    )
    lines = [r for r in _records(workdir) if "loss" in r]
    assert [r["step"] for r in lines] == list(range(1, 2 * PER_EPOCH + 1))
    weights = []
    for r in lines:
        w = min(1.0, (r["step"] - 1) / warmup)
        assert r["loss"] == pytest.approx(r["recon"] + w * r["kl"], rel=1e-6, abs=1e-4), r
        assert r["kl"] > 0.01  # so that the weight shows in the loss
        weights.append((r["loss"] - r["recon"]) / r["kl"])
    assert weights[0] == pytest.approx(0, abs=1e-3) and weights[-1] == pytest.approx(1, abs=1e-3)
    assert np.all(np.diff(weights) > -1e-3)


def test_adamw_without_decay_is_adam(plain, tmp_path_factory):
    _, summary = _train(tmp_path_factory, "adamw0", train__optimizer="adamw")
    assert summary["params_digest"] == plain[1]["params_digest"]


def test_weight_decay_shrinks_the_parameters(plain, tmp_path_factory):
    lr, wd, steps = 1e-3, 5.0, EPOCHS * PER_EPOCH
    workdir, summary = _train(
        tmp_path_factory, "adamw", train__optimizer="adamw", train__weight_decay=wd
    )
    assert summary["params_digest"] != plain[1]["params_digest"]
    decayed, adam = _norm(jaxvae.load_run(workdir).params), _norm(jaxvae.load_run(plain[0]).params)
    # decoupled decay multiplies the parameters by (1 - lr * wd) every step: over 32 steps by 0.85,
    # where Adam's own updates move them by about lr per step
    shrink = (1 - lr * wd) ** steps
    assert decayed < adam * (1 + shrink) / 2, (decayed, adam, shrink)
    assert decayed > adam * shrink * 0.9


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_needs_adamw(optimizer, tmp_path, capsys):
    config = _config(train__optimizer=optimizer, train__weight_decay=0.01)
    with pytest.raises(ValueError) as e:
        config_lib.validate(config)
    message = str(e.value)
    assert "train.weight_decay" in message and "train.optimizer" in message, message
    assert "adamw" in message and repr(optimizer) in message
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match="train.weight_decay"):
        jaxvae.train(config, workdir)
    assert not os.path.exists(workdir)
    argv = ["train", "--config", SMOKE, "--workdir", workdir]
    argv += [f"--config.train.optimizer={optimizer}", "--config.train.weight_decay=0.01"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.weight_decay" in err and "train.optimizer" in err
    assert not os.path.exists(workdir)


def test_dynamic_binarization_end_to_end(plain, tmp_path_factory):
    workdir, summary = _train(tmp_path_factory, "dynamic", data__binarize="dynamic")
    assert json.load(open(os.path.join(workdir, "config.json")))["data"]["binarize"] == "dynamic"
    # the flag reaches the training loss: the same seed, data order and steps as the plain run,
    # other parameters
    assert summary["params_digest"] != plain[1]["params_digest"]
    ours = [r for r in _records(workdir) if "loss" in r]
    theirs = [r for r in _records(plain[0]) if "loss" in r]
    assert all(a["recon"] != b["recon"] for a, b in zip(ours, theirs, strict=True))
    # binary targets resampled each step have the intensities' expected log-likelihood (it is
    # linear in x), so the model learns what the plain run learns, within noise
    assert ours[-1]["loss"] < ours[0]["loss"] - 20
    assert abs(summary["test_nelbo"] - plain[1]["test_nelbo"]) < 15
