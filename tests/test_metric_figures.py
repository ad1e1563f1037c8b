"""The disentanglement study's report on a made study (no training: each run's summary.json is
written from known numbers): the distributions, the Spearman matrix (against
scipy.stats.spearmanr), the paper's findings computed from the runs."""

import csv
import dataclasses
import math
import os

import numpy as np
import pytest
from scipy import stats

from jaxvae import config as config_lib
from jaxvae import io, layout
from jaxvae.studies import Figure, execute, expand, load_study, metric_figures, report
from tests.conftest import REPO

STUDY = os.path.join(REPO, "experiments", "studies", "locatello_dsprites.py")
MODELS = ("beta_vae", "annealedvae", "factorvae")
METRICS = (
    "mig",
    "dci_disentanglement",
    "sap",
    "gaussian_total_correlation_sampled",
    "gaussian_total_correlation_mean",
)


def _made_study():
    """The shipped study cut to three models at three levels each and five metrics."""
    study = load_study(STUDY)
    keep = tuple(
        v
        for v in study.variants
        if v.coords["model"] in MODELS and v.coords["strength"] in (0, 2, 5)
    )
    return dataclasses.replace(study, variants=keep, metrics=METRICS)


def _fake_train(config, run_dir):
    """A run's summary.json from its hyperparameter and seed: TC of the samples falls with the
    regularisation, TC of the means rises, the other metrics are seeded noise."""
    flat = config_lib.flat(config)
    key = {
        "vae": "objective.beta",
        "annealedvae": "model.annealedvae.c_max",
        "factorvae": "model.factorvae.gamma",
        "dipvae_i": "model.dipvae_i.lambda_od",
        "dipvae_ii": "model.dipvae_ii.lambda_od",
        "btcvae": "model.btcvae.beta",
    }[config.model.kind]
    reg = float(flat[key])
    if config.model.kind == "annealedvae":
        reg = 1.0 / reg  # a larger capacity is weaker regularisation
    rng = np.random.default_rng(config.seed * 1000 + int(reg * 100))
    summary = {m: float(rng.uniform()) for m in METRICS}
    summary["gaussian_total_correlation_sampled"] = 5.0 / (1.0 + reg) + 0.01 * rng.uniform()
    summary["gaussian_total_correlation_mean"] = reg + 0.01 * rng.uniform()
    summary["mig"] = summary["dci_disentanglement"] ** 2  # a monotone pair: rho = 1
    summary["epochs"] = config.train.epochs
    if config.model.kind == "factorvae" and config.seed == 1:
        del summary["sap"]  # a missing value: that metric's pairs leave this run out
    os.makedirs(run_dir, exist_ok=True)
    io.write_json(layout.path(run_dir, layout.CONFIG), config.to_dict())
    io.write_json(layout.path(run_dir, layout.SUMMARY), summary)
    return summary


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("locatello"))
    outcome = execute.run_study(
        _made_study(), workdir, seeds=2, train=_fake_train, log=lambda m: None
    )
    assert len(outcome.trained) == 18 and not outcome.failed
    return workdir, report.write_report(workdir)


def test_report_figures_and_spearman_against_scipy(made):
    workdir, paths = made
    for name in ("metric_distributions", "metric_rank_correlation", "total_correlation"):
        assert os.path.getsize(paths[f"{name}.png"]) > 10_000
    # the distributions figure shows every metric of every variant: the comparison is left out
    text = open(paths["report.md"]).read()
    assert "comparison.png" not in paths and "comparison.png" not in text
    assert not os.path.exists(os.path.join(workdir, "report", "comparison.png"))
    data = report.collect(workdir)
    values = metric_figures.run_values(data, data.metrics)
    assert values.shape == (18, len(data.metrics))
    rho = metric_figures.spearman_matrix(values)
    for i in range(len(data.metrics)):
        for j in range(len(data.metrics)):
            ok = np.isfinite(values[:, i]) & np.isfinite(values[:, j])
            want = stats.spearmanr(values[ok, i], values[ok, j]).statistic
            assert rho[i, j] == pytest.approx(want, abs=1e-12)
    i, j = data.metrics.index("mig"), data.metrics.index("dci_disentanglement")
    assert rho[i, j] == pytest.approx(1.0)
    # the table in report.md holds the same numbers
    text = open(paths["report.md"]).read()
    row = next(line for line in text.splitlines() if line.startswith(f"| ({i + 1}) mig |"))
    assert row.split("|")[2 + j].strip() == f"{rho[i, j]:.2f}"
    assert sum(np.isnan(values[:, data.metrics.index("sap")])) == 3


def test_ranks_with_ties_are_scipys():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    np.testing.assert_array_equal(metric_figures.ranks(x), stats.rankdata(x))
    assert math.isnan(metric_figures.spearman([1, 2], [2, 1])[0])  # fewer than 3 pairs
    assert math.isnan(metric_figures.spearman([1, 1, 1], [1, 2, 3])[0])  # a constant side


def test_findings_are_computed_from_the_runs(made):
    workdir, paths = made
    text = open(paths["report.md"]).read()
    with open(paths["results.csv"]) as f:
        rows = list(csv.DictReader(f))
    # Finding 1: TC of the samples falls with the regularisation (AnnealedVAE: as c_max
    # shrinks), TC of the means rises; rho against scipy on results.csv
    for model in MODELS:
        mine = [r for r in rows if r["variant"].startswith(model + ".")]
        strength = [float(r["variant"].split("=")[1]) for r in mine]
        strength = [-x for x in strength] if model == "annealedvae" else strength
        want = [
            stats.spearmanr(strength, [float(r[m]) for r in mine]).statistic
            for m in ("gaussian_total_correlation_sampled", "gaussian_total_correlation_mean")
        ]
        row = next(line for line in text.splitlines() if line.startswith(f"| {model} | 6 |"))
        cells = [c.strip() for c in row.split("|")[1:-1]]
        paper = "sampled falls, mean does not"
        assert cells[2:] == [f"{want[0]:+.2f}", f"{want[1]:+.2f}", paper, "yes"], row
    # Finding 2: the standard deviations against numpy on results.csv
    by_variant = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(float(r["mig"]))
    seed = math.sqrt(np.mean([np.var(v, ddof=1) for v in by_variant.values()]))
    model_means = {}
    for name, v in by_variant.items():
        model_means.setdefault(name.split(".")[0], []).append(np.mean(v))
    hyper = math.sqrt(np.mean([np.var(m, ddof=1) for m in model_means.values()]))
    model = np.std([np.mean(m) for m in model_means.values()], ddof=1)
    got = metric_figures.variance_split(report.collect(workdir), "mig", "model")
    assert got == pytest.approx({"seed": seed, "hyperparameter": hyper, "model": model})
    row = next(line for line in text.splitlines() if line.startswith("| mig | "))
    assert row.split("|")[2].strip() == f"{seed:.3g}"


def test_a_models_exception_to_figure_1_is_held_against_the_exception(made):
    """A model the paper names as an exception (its mean representation's total correlation
    falls too) holds when both fall, and not when the mean one rises as for the others."""
    workdir, _ = made
    data = report.collect(workdir)
    spec = next(f for f in data.figures if f["kind"] == "findings")
    assert spec["exceptions"] == ["dipvae_i"]  # the shipped study's, through study.json

    def verdicts(exceptions):
        lines = metric_figures._findings_text(data, dict(spec, exceptions=exceptions))
        rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
        return {r[0]: r[4:] for r in rows if r and r[0] in MODELS}

    assert verdicts(["factorvae"])["factorvae"] == ["both fall (its exception)", "no"]
    assert verdicts(["factorvae"])["beta_vae"] == ["sampled falls, mean does not", "yes"]
    for v in data.variants:  # the mean representation's TC falls too for factorvae
        if v["coords"]["model"] == "factorvae":
            tc = data.values[v["name"]]["gaussian_total_correlation_mean"]
            tc[:] = [1.0 / x for x in tc]
    assert verdicts(["factorvae"])["factorvae"] == ["both fall (its exception)", "yes"]
    assert verdicts([])["factorvae"] == ["sampled falls, mean does not", "no"]
    with pytest.raises(ValueError, match="exceptions='dipvae_i', expected a tuple"):
        Figure("f", kind="findings", x="strength", y="model", exceptions="dipvae_i")


def test_the_shipped_grid_is_the_papers():
    study = load_study(STUDY)
    runs = expand(study, seeds=1)
    got = {}
    for r in runs:
        c = r.config
        assert c.data.name == "dsprites_procedural" and c.eval.disentanglement
        assert c.model.latent_dim == 10 and c.train.batch_size == 64 and c.train.epochs == 29
        value = {
            "vae": c.objective.beta,
            "annealedvae": c.model.annealedvae.c_max,
            "factorvae": c.model.factorvae.gamma,
            "dipvae_i": c.model.dipvae_i.lambda_od,
            "dipvae_ii": c.model.dipvae_ii.lambda_od,
            "btcvae": c.model.btcvae.beta,
        }[c.model.kind]
        if c.model.kind != "vae":
            assert c.objective.beta == 1.0
        got.setdefault(c.model.kind, []).append(value)
    assert got == {
        "vae": [1, 2, 4, 6, 8, 16],
        "annealedvae": [5, 10, 25, 50, 75, 100],
        "factorvae": [10, 20, 30, 40, 50, 100],
        "dipvae_i": [1, 2, 5, 10, 20, 50],
        "dipvae_ii": [1, 2, 5, 10, 20, 50],
        "btcvae": [1, 2, 4, 6, 8, 10],
    }
    assert len(study.seeds) == 50
