"""A trained run scored by the disentanglement metrics: at the end of training
(``eval.disentanglement``) and by ``jaxvae eval --disentanglement``; every metric written, the
same numbers for a fixed seed, the numbers those of :func:`jaxvae.disentanglement.evaluate_all`
on the loaded run's encoder, and the pictures drawn."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

import jaxvae
from jaxvae import api, cli, data, disentangle, disentanglement, layout, models
from jaxvae.config import load_config_file, make_model
from tests.conftest import CONFIGS

POINTS = 16  # the reduced protocol (eval.disentanglement_points): 16 train / 8 test points


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A beta-VAE on the procedural dSprites, two steps, scored at the end of training."""
    config = load_config_file(os.path.join(CONFIGS, "dsprites.py"))
    config.data.limit_train = 64
    config.data.limit_test = 64
    config.model.channels = (4, 4, 4, 4)
    config.model.latent_dim = 3
    config.train.epochs = 1
    config.train.progress = False
    config.eval.batch_size = 64
    config.eval.disentanglement = True
    config.eval.disentanglement_points = POINTS
    workdir = str(tmp_path_factory.mktemp("dsprites_run"))
    summary = jaxvae.train(config, workdir)
    return workdir, summary


def _flat_keys():
    return {key for m in disentanglement.METRICS.values() for key in m.scores}


def _eval(workdir, capsys, *extra):
    argv = ["eval", "--workdir", workdir, "--disentanglement", *extra]
    assert cli.main([*argv, "--disentanglement-points", str(POINTS)]) == 0
    printed = json.loads(capsys.readouterr().out)
    with open(layout.path(workdir, layout.EVAL)) as f:
        return printed, json.load(f)


def test_scores_at_the_end_of_training_and_from_the_cli_agree(trained, capsys):
    workdir, summary = trained
    keys = _flat_keys()
    assert summary["model"] == "vae/conv" and summary["skipped_steps"] == 0
    for key in ("test_nelbo", "test_recon", "test_kl"):
        assert np.isfinite(summary[key]), key
    assert keys <= set(summary)  # every metric, as a number, in summary.json
    assert all(isinstance(summary[k], float) and np.isfinite(summary[k]) for k in keys)
    found = summary["disentanglement"]
    assert found["points"] == POINTS and found["seed"] == 0
    assert found["dci_classifier"] == "numpy"  # the default classifier, recorded
    assert found["factor_names"] == list(data.ProceduralDSprites().factor_names)
    assert np.shape(found["matrices"]["dci_importance_matrix"]) == (3, 5)
    for name in (layout.DISENTANGLEMENT_MATRICES, layout.FACTOR_TRAVERSALS):
        with Image.open(layout.path(workdir, name)) as im:
            assert im.size[0] > 200 and im.size[1] > 100

    # scored again by the CLI from the reloaded checkpoint, the same seed: the same numbers
    # (with DCI's factors fitted in two processes)
    first, written = _eval(workdir, capsys, "--disentanglement-jobs", "2")
    assert {k: first[k] for k in keys} == {k: summary[k] for k in keys}
    assert {k: written[k] for k in keys} == {k: summary[k] for k in keys}
    with open(layout.path(workdir, layout.SUMMARY)) as f:  # and merged into summary.json
        assert json.load(f)["disentanglement_step"] == summary["steps"]
    assert written["disentanglement"]["matrices"] == found["matrices"]
    # independently: evaluate_all on the loaded run's own encode / posterior
    run = api.load_run(workdir)

    def posterior(x):
        q = run.posterior(x)
        return np.asarray(q.mean()), np.asarray(q.log_var)

    cheap = [m for m in disentanglement.METRICS if m != "dci"]  # DCI: checked equal above
    direct = disentanglement.evaluate_all(
        data.ProceduralDSprites(),
        lambda x: np.asarray(run.encode(x)),
        posterior,
        0,
        metrics=cheap,
        protocol={m: p for m, p in disentangle.reduced_protocol(POINTS).items() if m in cheap},
    )
    for k in direct.scores:
        assert first[k] == pytest.approx(direct.scores[k], rel=1e-6, abs=1e-9), k


def test_captured_factor_is_the_largest_importance():
    found = {
        "factor_names": ["a", "b", "c"],
        "matrices": {
            "mig_mutual_information": [[0.1, 0.5, 0.0], [0.4, 0.0, 0.1]],
            "mig_factor_entropy": [1.0, 2.0, 1.0],
            "dci_importance_matrix": [[0.0, 0.1, 0.3], [0.2, 0.0, 0.1]],
        },
    }
    got = disentangle.captured_factors(found)
    assert [(j, name) for j, name, _, _ in got] == [(2, "c"), (0, "a")]
    assert got[0][2] == pytest.approx(0.0) and got[1][2] == pytest.approx(0.4)
    del found["matrices"]["dci_importance_matrix"]  # MIG only: the largest MI / H(factor)
    assert [j for j, *_ in disentangle.captured_factors(found)] == [1, 0]


def test_reduced_protocol_and_errors(capsys, tmp_path):
    assert disentangle.reduced_protocol(0) == {}
    p = disentangle.reduced_protocol(100)
    assert p["dci"] == {"num_train": 100, "num_test": 50}
    assert p["factor_vae"]["num_variance_estimate"] == 100
    assert set(p) == set(disentanglement.METRICS)
    with pytest.raises(ValueError, match="points=2"):
        disentangle.reduced_protocol(2)

    class Spec:
        name, tfds_data_dir = "fashion_mnist", ""

    with pytest.raises(ValueError, match="'fashion_mnist' has no ground-truth factors"):
        disentangle.ground_truth_data(Spec())
    argv = ["eval", "--workdir", str(tmp_path), "--disentanglement"]
    assert cli.main([*argv, "--disentanglement-points", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "points=3" in err


class Counted:
    """A ground-truth dataset counting the observations it renders."""

    def __init__(self, inner):
        self.inner, self.rendered = inner, 0
        self.factor_sizes, self.factor_names = inner.factor_sizes, inner.factor_names
        self.sample_factors = inner.sample_factors
        self.distinct_combinations = inner.distinct_combinations

    def sample_observations_from_factors(self, factors, rng):
        self.rendered += len(factors)
        return self.inner.sample_observations_from_factors(factors, rng)


def test_a_table_of_each_combinations_code_gives_the_same_numbers():
    """Encode once, look up: on a 192-combination sub-grid of dSprites (shuffled, as TFDS stores
    it), a conv encoder's scores with every code looked up in a table equal, bit for bit, those
    of encoding every drawn observation, and the images rendered and encoded are those ``plan``
    counts. (With 10 latents XLA's CPU rounding of the encoder depends on the batch size: without
    ``evaluate_all``'s fixed batches the total correlations would differ in the last bits.)"""
    sub = np.stack(np.unravel_index(np.arange(192), (3, 2, 2, 4, 4)), axis=1)
    values = np.array([1, 5]), np.array([0, 7]), np.array([0, 9, 21, 31]), np.array([3, 12, 20, 28])
    grid = np.concatenate(
        [sub[:, :1], *(v[sub[:, j + 1]][:, None] for j, v in enumerate(values))], 1
    )
    order = np.random.default_rng(0).permutation(192)
    images = data.render_dsprites(grid[order])
    small = data.ArrayGroundTruthData(
        images, sub[order], (3, 2, 2, 4, 4), data.dsprites.FACTOR_NAMES
    )
    config = load_config_file(os.path.join(CONFIGS, "dsprites.py"))
    config.model.channels, config.model.latent_dim = (4, 4, 4, 4), 10
    # jaxvae's 3x3 backbone: with N(0, 0.3) weights its codes keep their spread (through
    # disentanglement_lib's 256-unit layer they shrink to a near-singular covariance)
    config.model.kernels, config.model.decoder_kernels, config.model.conv_hidden = (), (), ()
    model = make_model(config, models.DataInfo(image_shape=(64, 64, 1), num_classes=3))
    shapes = jax.eval_shape(model.init, jax.random.key(0))  # random weights, init not compiled
    gen = np.random.default_rng(0)
    params, state = jax.tree.map(lambda a: gen.normal(0, 0.3, a.shape).astype(a.dtype), shapes)
    representation, posterior = disentangle.representation_fns(model, params, state)
    protocol = disentangle.reduced_protocol(32)  # every call a multiple of 16: no padding
    protocol["factor_vae"]["prune_threshold"] = 0.0  # votes drawn however small the codes
    # DCI (slow trees) left out: it sees the codes of MIG's and SAP's points (the same seed);
    # the choice by the counts (tabulate=None) on three metrics only
    runs = {False: list(protocol.keys() - {"dci"}), True: None, None: None}
    runs[True], runs[None] = runs[False], ["beta_vae", "mig", "total_correlation"]
    encoded = [0]

    def counting(fn):
        def call(x):
            encoded[0] += len(x)
            return fn(x)

        return call

    found, counts = {}, {}
    for tabulate, metrics in runs.items():
        gt, encoded[0] = Counted(small), 0
        found[tabulate] = disentanglement.evaluate_all(
            gt, counting(representation), counting(posterior), 0, metrics=metrics,
            protocol=protocol, tabulate=tabulate,
        )  # fmt: skip
        counts[tabulate] = (gt.rendered, encoded[0])
        planned = disentanglement.plan(small, metrics=metrics, protocol=protocol, tabulate=tabulate)
        assert counts[tabulate] == (planned.images, planned.images), tabulate
    draws = 2 * 64 * 48 + (32 + 64 * 48) + 32 + 2 * 48 + 32  # BetaVAE, FactorVAE, MIG, ..., TC
    assert counts == {False: (draws, draws), None: (192 + 32,) * 2, True: (2 * 192,) * 2}
    for tabulate in (None, True):
        assert found[tabulate].scores.items() <= found[False].scores.items()
        assert len(found[tabulate].scores) > 4
        for key, matrix in found[tabulate].matrices.items():
            np.testing.assert_array_equal(matrix, found[False].matrices[key])
    assert 0 < found[False].scores["beta_vae_accuracy"] <= 1
