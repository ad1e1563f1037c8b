"""Early stopping on the validation negative ELBO: the stop step follows from the logged figures,
the best epoch's state is kept and evaluated, and a rerun of a stopped run takes the same
decision without training."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import jaxvae
from jaxvae import checkpoint, layout, sharding, storage
from jaxvae import config as config_lib
from tests.conftest import CONFIGS


def _config(**train):
    config = config_lib.load_config_file(os.path.join(CONFIGS, "smoke.py"))
    config_lib.apply_overrides(
        config,
        [
            "data.limit_train=256",
            "data.validation_size=2000",
            "train.learning_rate=0.01",
            "train.checkpoint_min_interval_s=0",
        ]
        + [f"train.{k}={v}" for k, v in train.items()],
    )
    return config


def test_stopper_against_a_hand_computed_sequence(tmp_path):
    values = [5.0, 4.0, 4.5, 3.0, 3.5, 3.6, 3.7]
    stopper = checkpoint.EarlyStopping(patience=3, metric="val_nelbo")
    decisions = []
    for step, v in enumerate(values, start=1):
        stopper.update(step, v)
        decisions.append(stopper.stop)
    assert decisions == [False] * 6 + [True]
    assert (stopper.best, stopper.best_step, stopper.bad_epochs) == (3.0, 4, 3)
    # Rebuilt from a metrics log (with a torn last line), up to a step.
    lines = [json.dumps({"step": s, "val_nelbo": v}) for s, v in enumerate(values, 1)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines[:5]) + '\n{"step": 6, "val_')
    again = checkpoint.EarlyStopping.from_log(
        str(tmp_path), upto_step=4, patience=3, metric="val_nelbo"
    )
    assert (again.best, again.best_step, again.bad_epochs) == (3.0, 4, 0)


def test_early_stopped_run_keeps_the_best_epoch(tmp_path):
    mesh = sharding.make_mesh(jax.devices()[:1])
    workdir = str(tmp_path / "es")
    summary = jaxvae.train(_config(epochs=30, early_stopping_patience=1), workdir, mesh=mesh)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        val = [json.loads(line) for line in f if "val_nelbo" in line]
    figures = [r["val_nelbo"] for r in val]
    # The stop: the first epoch whose figure is not below every earlier one (patience 1).
    first_bad = next(i for i in range(1, len(figures)) if figures[i] >= min(figures[:i]))
    assert len(val) == first_bad + 1 and summary["stopped_early"]
    best = int(np.argmin(figures))
    assert summary["best_step"] == val[best]["step"]
    assert summary["best_val_nelbo"] == figures[best]
    assert summary["trained_steps"] == val[-1]["step"] < 30 * 4
    # The best state is the state of a run trained exactly that long without early stopping.
    plain = jaxvae.train(
        _config(epochs=summary["best_step"] // 4), str(tmp_path / "plain"), mesh=mesh
    )
    assert plain["params_digest"] == summary["params_digest"]
    assert plain["test_nelbo"] == summary["test_nelbo"]
    # Started again: the logged figures say it stopped; nothing more is trained.
    again = jaxvae.train(_config(epochs=30, early_stopping_patience=1), workdir, mesh=mesh)
    assert again["params_digest"] == summary["params_digest"]
    assert again["trained_steps"] == summary["trained_steps"]


def test_early_stopping_needs_a_validation_set():
    config = _config(early_stopping_patience=3)
    config_lib.apply_overrides(config, ["data.validation_size=0"])
    try:
        config_lib.validate(config)
    except ValueError as e:
        assert "data.validation_size" in str(e)
    else:
        raise AssertionError("accepted early stopping without a validation set")


def test_resume_behind_the_best_checkpoint(tmp_path):
    """A kill after the best state was written but before the regular checkpoint of that step:
    the resumed run reaches the step again and replaces the best state; nothing is refused, and
    the run ends as one that was never stopped."""
    mesh = sharding.make_mesh(jax.devices()[:1])
    config = _config(epochs=3, early_stopping_patience=5)
    whole = jaxvae.train(config, str(tmp_path / "whole"), mesh=mesh)
    workdir = str(tmp_path / "killed")
    jaxvae.train(config, workdir, mesh=mesh)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        figures = [json.loads(line)["val_nelbo"] for line in f if "val_nelbo" in line]
    assert figures[-1] < min(figures[:-1]), "the last epoch is not the best; nothing to test"
    last = whole["trained_steps"]
    assert checkpoint.steps(workdir, "checkpoints-best") == [last]
    # The state a kill leaves between the two saves of the last epoch's end.
    storage.rmtree(os.path.join(workdir, "checkpoints", str(last)))
    os.remove(os.path.join(workdir, "summary.json"))
    again = jaxvae.train(config, workdir, mesh=mesh)
    assert again["resumed_from_step"] == last - last // 3
    assert again["best_step"] == whole["best_step"] == last
    assert again["params_digest"] == whole["params_digest"]
    assert again["test_nelbo"] == whole["test_nelbo"]
    assert checkpoint.steps(workdir, "checkpoints-best") == [last]


def test_the_best_state_is_written_with_the_next_checkpoint(tmp_path):
    """An improving epoch keeps a copy of its state, written just before the next regular
    checkpoint: the copy outlives the engine's donation of the live state, and a best that no
    checkpoint followed yet is not on disk (a kill loses it with the training it came from)."""
    workdir = str(tmp_path)
    ckpts = checkpoint.Checkpoints(
        workdir, keep=3, every_steps=0, min_interval_s=1e9, per_epoch=10, total=100,
        resumed=False, best=True,
    )  # fmt: skip
    replicated = sharding.replicated(sharding.make_mesh(jax.devices()[:1]))

    def best():
        like = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), state
        )
        restored, step = checkpoint.restore_newest(workdir, like, name=layout.BEST)
        return step, np.asarray(restored["w"])

    state = {"w": jnp.arange(4.0)}
    assert ckpts.after(10, lambda: state)  # the first epoch's end: nothing saved yet
    ckpts.save_best(20, state)
    state = jax.jit(lambda s: jax.tree.map(lambda a: a + 1, s), donate_argnums=0)(state)
    assert not ckpts.after(20, lambda: state)  # within min_interval_s: no checkpoint
    assert checkpoint.steps(workdir, layout.BEST) == []
    assert ckpts.after(30, lambda: state, force=True)
    assert checkpoint.steps(workdir) == [10, 30]
    step, w = best()
    assert step == 20
    np.testing.assert_array_equal(w, np.arange(4.0))
    ckpts.save_best(40, state)
    ckpts.now(45, state)  # a stop request writes the kept best first
    assert checkpoint.steps(workdir) == [10, 30, 45]
    step, w = best()
    assert step == 40
    np.testing.assert_array_equal(w, np.arange(4.0) + 1)
    ckpts.close()


def test_updates_skipped_after_the_best_epoch_are_reported(tmp_path, monkeypatch):
    """A run whose loss turns non-finite after its best epoch: every later update is skipped, early
    stopping ends it, the figures are the best state's (no skipped update in it), and the summary
    says how many updates the trained state skipped."""
    from jaxvae import models
    from jaxvae.models.vae import VAE

    class NonFiniteLate(VAE):
        def loss(self, params, state, batch, key, **kw):
            loss, terms, state = super().loss(params, state, batch, key, **kw)
            return jnp.where(kw.get("step", 0) >= 8, jnp.nan, loss), terms, state

    NonFiniteLate.name = "vae_nonfinite_late"
    monkeypatch.setitem(models._FAMILIES, NonFiniteLate.name, NonFiniteLate)
    config = _config(epochs=6, early_stopping_patience=2)  # 4 steps an epoch
    config_lib.apply_overrides(config, ["model.kind=vae_nonfinite_late"])
    mesh = sharding.make_mesh(jax.devices()[:1])
    out = jaxvae.train(config, str(tmp_path), mesh=mesh)
    assert (out["best_step"], out["trained_steps"], out["stopped_early"]) == (8, 16, True)
    assert out["skipped_steps"] == 0 and out["trained_skipped_steps"] == 8
    assert np.isfinite(out["test_nelbo"])
