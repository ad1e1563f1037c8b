"""Every registered model family through the one interface: train, evaluate, sample, pictures,
resume bit-identically, and 4 devices against 1 (tiny budgets; each family's own numbers are
tested in its test_model_<kind>.py)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

import jaxvae
from jaxvae import cli, experiment, layout, load_run, models, pictures, plots, sharding
from jaxvae import config as config_lib
from jaxvae.models import capabilities as caps
from tests.conftest import CONFIGS

# Shrinks each family's shipped config to seconds; families not listed need nothing extra.
SMALL = {
    "hvae": [
        "model.hidden=(16, 16)",
        "model.latent_dim=4",
        "model.hvae.z2_dim=2",
        "model.hvae.hidden2=(8, 8)",
    ],
    "vampprior": ["model.hidden=(16, 16)", "model.vampprior.num_pseudo=8"],
    "vqvae": ["model.vqvae.codebook_size=16", "model.vqvae.code_dim=4"],
    "factorvae": ["model.factorvae.disc_hidden=(32, 32)"],
    "annealedvae": ["model.annealedvae.iteration_threshold=16", "train.log_every_steps=4"],
}
COMMON = [
    "data.limit_train=256",
    "data.limit_test=64",
    "train.batch_size=32",
    "train.epochs=2",
    "train.progress=false",
    "train.checkpoint_min_interval_s=0",
    "eval.batch_size=64",
    "eval.num_pictures=16",
    "model.channels=(4, 8)",
]


def _config(kind: str):
    path = os.path.join(CONFIGS, f"{kind}.py")
    config = config_lib.load_config_file(
        path if os.path.exists(path) else os.path.join(CONFIGS, "smoke.py")
    )
    config_lib.apply_overrides(config, [f"model.kind={kind}", *COMMON, *SMALL.get(kind, [])])
    if config.model.architecture == "mlp" and kind not in SMALL:
        config_lib.apply_overrides(config, ["model.hidden=(32,)"])
    if config.model.kernels:  # disentanglement_lib's networks (dsprites.py), shrunk to 2 layers
        shrunk = ["model.kernels=(4, 2)", "model.decoder_kernels=(4, 4)", "model.conv_hidden=(8,)"]
        config_lib.apply_overrides(config, shrunk)
    return config


def _mesh(n):
    return sharding.make_mesh(jax.devices()[:n])


def _lines(workdir, key):
    return [line for line in map(json.loads, open(workdir / layout.METRICS)) if key in line]


# What each family's own run must show beyond the common interface, checked on the run the
# test below trains (one training per family for the whole suite).
def _factorvae(workdir, summary, config):
    assert np.isfinite(summary["test_tc"])
    lines = _lines(workdir, "disc_loss")
    assert lines and all(np.isfinite(line["disc_loss"]) for line in lines)
    assert all(0 <= line["disc_accuracy"] <= 1 for line in lines)


def _btcvae(workdir, summary, config):
    assert experiment.build(config).model.num_train == 256
    for key in ("test_mi", "test_tc", "test_dwkl"):
        assert np.isfinite(summary[key]), key


def _vqvae(workdir, summary, config):
    # The usage figures again from the saved checkpoint: the 64 test images (one eval batch)
    # quantized in numpy against the saved codebook.
    run = load_run(str(workdir))
    x = np.asarray(experiment.build(config).dataset.test_images[:64], np.float32)
    codebook = np.asarray(run.state["codebook"], np.float64)
    z_e = np.asarray(run.model.encoder_output(run.params, x)).reshape(-1, codebook.shape[1])
    codes = np.argmin(((z_e[:, None, :] - codebook[None]) ** 2).sum(-1), axis=1)
    p = np.bincount(codes, minlength=len(codebook)) / codes.size
    want = np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))
    np.testing.assert_allclose(summary["test_perplexity"], want, rtol=1e-4)
    np.testing.assert_allclose(summary["test_codes_used"], np.mean(p > 0), rtol=1e-6)
    assert "test_nelbo" not in summary and "test_nll" not in summary
    assert (workdir / "codebook.png").is_file()


def _vampprior(workdir, summary, config):
    assert (workdir / "pseudo_inputs.png").is_file()


def _dipvae(workdir, summary, config):
    assert summary["test_dip"] > 0


def _cvae(workdir, summary, config):
    height, width = plots.read_grid(str(workdir / layout.SAMPLES)).shape[:2]
    pad, scale = 2, 2  # plots.grid's defaults: a row of 8 per class
    assert height == scale * (10 * (28 + pad) + pad)
    assert width == scale * (pictures.NCOLS * (28 + pad) + pad)


def _annealedvae(workdir, summary, config):
    # Logged every 4 steps: the mean capacity over steps 0..3, 4..7, ... of 25 * step / 16.
    caps = [line["capacity"] for line in _lines(workdir, "capacity")][:4]
    np.testing.assert_allclose(caps, [25 * (s + 1.5) / 16 for s in (0, 4, 8, 12)], rtol=1e-5)


CHECKS = {
    "factorvae": _factorvae,
    "btcvae": _btcvae,
    "vqvae": _vqvae,
    "vampprior": _vampprior,
    "dipvae_i": _dipvae,
    "dipvae_ii": _dipvae,
    "cvae": _cvae,
    "annealedvae": _annealedvae,
}


# vae, ae and dae are trained end to end (pictures, eval against numpy, resume, 4 devices) in
# test_e2e_models.py, test_cli.py and test_sharding.py; every other family is tested here, so a
# new family's file is covered without touching this test.
COVERED_ELSEWHERE = {"vae", "ae", "dae"}
FAMILIES = sorted(set(models.families()) - COVERED_ELSEWHERE)


@pytest.mark.parametrize("kind", FAMILIES)
def test_family_trains_evaluates_samples_resumes_and_shards(kind, tmp_path, capsys):
    config = _config(kind)
    workdir = str(tmp_path / "a")
    straight = jaxvae.train(config, workdir, mesh=_mesh(1))
    model = load_run(workdir).model
    prior = caps.has(model, caps.Prior)
    likelihood = caps.has(model, caps.ImportanceWeighted)
    headline = f"test_{model.presentation.headline[0]}"
    assert np.isfinite(straight[headline]), straight
    assert straight["steps"] == 16 and straight["skipped_steps"] == 0
    for name in (layout.RECONSTRUCTIONS, layout.INTERPOLATIONS):
        assert os.path.getsize(tmp_path / "a" / name) > 0
    assert os.path.exists(tmp_path / "a" / layout.SAMPLES) == (prior or kind in ("ae", "dae"))
    CHECKS.get(kind, lambda *a: None)(tmp_path / "a", straight, config)

    # Resume: without the last checkpoint the run restarts from the first epoch's and ends with
    # the same parameters bit for bit (model state included).
    shutil.rmtree(os.path.join(workdir, "checkpoints", "16"))
    one_epoch = load_run(workdir).params
    resumed = jaxvae.train(config, workdir, mesh=_mesh(1))
    assert resumed["resumed_from_step"] == 8
    assert resumed["params_digest"] == straight["params_digest"]

    # Four devices: the first epoch's 8 steps again through the run's own feed (the engine
    # `train` drives), the same up to the order of the batch reductions.
    exp = experiment.build(config, mesh=_mesh(4))
    feed, state = exp.feed(0, 16), exp.init_state()
    feed.compile(state)
    state, _ = feed.run(state, 8)
    four_p = state.params
    assert all(len(leaf.devices()) == 4 for leaf in jax.tree.leaves(four_p))
    for a, b in zip(jax.tree.leaves(one_epoch), jax.tree.leaves(four_p), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)

    # The CLI: eval writes eval.json (with an NLL bound when the family has a likelihood);
    # sample draws from the prior, or refuses in one line when the family has none.
    capsys.readouterr()
    code = cli.main(
        ["eval", "--workdir", str(tmp_path / "a"), "--iwae-k", "4", "--num-examples", "16"]
    )
    assert code == 0, capsys.readouterr().err
    result = json.load(open(tmp_path / "a" / layout.EVAL))
    assert ("test_nll" in result) == likelihood
    if likelihood:
        assert np.isfinite(result["test_nll"])
        assert result["test_nll"] <= result["test_nelbo"] + 5.0
    capsys.readouterr()  # eval's lines
    out = str(tmp_path / "s.png")
    code = cli.main(["sample", "--workdir", str(tmp_path / "a"), "--num", "8", "--out", out])
    err = capsys.readouterr().err
    if prior:
        assert code == 0 and os.path.getsize(out) > 0, err
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1 and "no prior" in err
