"""The shipped study files: each loads and expands to the grid it claims, with the papers'
protocol in every run's config, and the MNIST study (iwae_table1.py) runs end to end on a small
prepared TFDS `mnist`, its report setting the paper's value beside the run's."""

import csv
import json
import os

import pytest

from jaxvae import cli
from jaxvae.studies import expand, load_study
from tests import fake_tfds
from tests.conftest import REPO

STUDIES = os.path.join(REPO, "experiments", "studies")


def study(name):
    return load_study(os.path.join(STUDIES, f"{name}.py"))


def test_beta_sweep_grid():
    runs = expand(study("beta_sweep"))
    assert len(runs) == 30
    assert [r.name for r in runs[:6]] == [
        f"beta={b}-seed0" for b in ("0.25", "0.5", "1", "2", "4", "8")
    ]
    assert sorted({r.config.objective.beta for r in runs}) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert {r.config.data.name for r in runs} == {"fashion_mnist"}


def test_exemplar_fmnist_protocol():
    s = study("exemplar_fmnist")
    runs = expand(s)
    assert len(runs) == 9 and {r.seed for r in runs} == {0, 1, 2}
    kinds = {r.name.rsplit("-", 1)[0]: r.config.model.kind for r in runs}
    assert kinds == {"vae_gaussian": "vae", "vampprior": "vampprior", "hvae_gaussian": "hvae"}
    for r in runs:
        c = r.config
        assert c.data.name == "fashion_mnist" and c.data.binarize == "dynamic"
        assert c.data.validation_size == 10_000  # 50k train / 10k validation
        assert c.model.layer == "gated" and tuple(c.model.hidden) == (300, 300)
        assert c.model.latent_dim == 40 and c.model.likelihood == "bernoulli"
        assert tuple(c.model.log_var_range) == (-6.0, 2.0)  # the reference code's hardtanh
        assert c.train.batch_size == 100 and c.train.learning_rate == 5e-4
        assert c.objective.warmup_steps == 100 * 500  # 100 epochs of 500 steps
        assert c.train.epochs == 2000 and c.train.early_stopping_patience == 50
        assert c.eval.iwae_k == 5000 and c.eval.iwae_num_examples == 10_000
    refs = {(r.variant, r.metric): (r.value, r.std) for r in s.references}
    assert refs == {
        ("vae_gaussian", "test_nll"): (228.70, 0.15),
        ("vampprior", "test_nll"): (227.35, 0.05),
        ("hvae_gaussian", "test_nll"): (227.37, 0.1),
    }


@pytest.mark.parametrize(
    "name, dataset", [("iwae_table1", "mnist"), ("iwae_table1_fmnist", "fashion_mnist")]
)
def test_iwae_table1_protocol(name, dataset):
    runs = expand(study(name))
    assert len(runs) == 12
    for r in runs:
        c = r.config
        assert c.data.name == dataset and c.data.binarize == "dynamic"
        assert c.train.batch_size == 20 and c.train.adam_eps == 1e-4
        assert c.train.lr_schedule == "iwae" and c.train.epochs == 3280
        assert c.eval.iwae_k == 5000
        variant = r.name.rsplit("-", 1)[0]
        layers, objective, k = (part.split("=")[1] for part in variant.split(","))
        assert c.objective.k == int(k)
        assert c.objective.name == {"vae": "elbo_k", "iwae": "iwae"}[objective]
        assert c.model.kind == {"1": "vae", "2": "hvae"}[layers]


def test_iwae_table1_on_prepared_mnist(tmp_path, capsys):
    """One run of the MNIST grid (a shard of one) on a tiny prepared TFDS `mnist`, and the report
    with the paper's value beside it."""
    tfds_dir = str(tmp_path / "tfds")
    fake_tfds.prepare_random("mnist", tfds_dir)  # 23 training and 9 test images
    workdir = str(tmp_path / "study")
    args = [
        "study",
        "run",
        os.path.join(STUDIES, "iwae_table1.py"),
        "--workdir",
        workdir,
        "--shard",
        "0/12",
        f"--config.data.tfds_data_dir={tfds_dir}",
        "--config.train.epochs=2",
        "--config.eval.iwae_k=8",
        "--config.eval.num_pictures=4",
    ]
    assert cli.main(args) == 0
    assert "1 of 12 runs" in capsys.readouterr().err
    run_dir = os.path.join(workdir, "runs", "layers=1,objective=vae,k=1-seed0")
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["dataset"] == "mnist" and summary["steps"] == 2  # 23 // 20 steps per epoch
    assert summary["iwae_k"] == 8 and summary["iwae_num_examples"] == 9
    assert cli.main(["study", "report", workdir]) == 0
    capsys.readouterr()
    md = open(os.path.join(workdir, "report", "report.md")).read()
    assert "86.76" in md and "Burda" in md and "**Incomplete**" in md
    rows = list(csv.DictReader(open(os.path.join(workdir, "report", "results.csv"))))
    done = [r for r in rows if r["state"] == "done"]
    assert [r["run"] for r in done] == ["layers=1,objective=vae,k=1-seed0"]
    assert float(done[0]["test_nll"]) == pytest.approx(summary["test_nll"])
