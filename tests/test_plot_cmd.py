"""`jaxvae train` writes traversals.png and curves.png; `jaxvae plot` redraws them (and the other
pictures) from the newest checkpoint and metrics.jsonl, for a finished run or one in progress."""

import os

import numpy as np
from PIL import Image

from jaxvae import cli, layout, pictures, plots
from tests.conftest import CONFIGS


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_plot_redraws_the_pictures_and_curves(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    args = ["--config", os.path.join(CONFIGS, "smoke.py"), "--workdir", workdir]
    assert cli.main(["train", *args, "--config.model.latent_dim=3"]) == 0
    trav = plots.read_grid(os.path.join(workdir, layout.TRAVERSALS))  # without its labels
    # one row per latent dimension (3), TRAVERSAL_STEPS columns, tiles of 28 + 2 pad, scale 2
    steps = pictures.TRAVERSAL_STEPS
    assert trav.shape[:2] == (2 * (3 * 30 + 2), 2 * (steps * 30 + 2))
    rows = [trav[2 * (2 + 30 * r) : 2 * (30 + 30 * r)] for r in range(3)]
    # each row sweeps a coordinate: its first and last tiles differ
    assert all(
        np.abs(r[:, 4 : 2 * 30].astype(int) - r[:, -2 * 30 : -4].astype(int)).max() > 0
        for r in rows
    )
    curves = _png(os.path.join(workdir, layout.CURVES))
    assert (
        curves.shape[0] > 100 and len(np.unique(curves.reshape(-1, curves.shape[-1]), axis=0)) > 20
    )
    for name in (layout.TRAVERSALS, layout.CURVES, layout.RECONSTRUCTIONS):
        os.remove(os.path.join(workdir, name))
    capsys.readouterr()
    assert cli.main(["plot", "--workdir", workdir]) == 0
    printed = capsys.readouterr().out.split()
    for name in (layout.TRAVERSALS, layout.CURVES, layout.RECONSTRUCTIONS):
        assert os.path.join(workdir, name) in printed
    np.testing.assert_array_equal(plots.read_grid(os.path.join(workdir, layout.TRAVERSALS)), trav)


def test_plot_of_a_missing_run_is_one_line(tmp_path, capsys):
    assert cli.main(["plot", "--workdir", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("jaxvae plot: error:"), err
