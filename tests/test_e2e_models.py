"""The configs users run, trained end to end on small data: the default conv VAE (on 4 devices,
through pictures, eval, sample and resume) and the AE and DAE configs; what the pictures show.

Only user-facing surfaces: config files with overrides, ``runner.train``, ``jaxvae.cli.main``,
``jaxvae.load_run`` and the files of the run directory. Reference figures are recomputed here in
numpy from ``load_run``'s encoder and decoder.
"""

import functools
import json
import os
import shutil

import jax
import numpy as np
import pytest

import jaxvae
from jaxvae import cli, plots, sharding
from jaxvae import config as config_lib
from jaxvae import summary as summary_lib
from tests.conftest import CONFIGS
from tests.references import numpy_nelbo_and_iwae

# Small but real: the default config's conv VAE with fewer channels, on 2048 images.
SMALL = {
    "model.channels": "8,16",
    "model.latent_dim": "8",
    "data.limit_train": "2048",
    "data.limit_test": "256",
    "train.batch_size": "64",
    "train.learning_rate": "0.005",
    "train.epochs": "2",
    "train.progress": "false",
    "eval.num_pictures": "16",
}
STEPS_PER_EPOCH = 2048 // 64
NUM_TEST = 256

# The layout plots.grid documents: tiles separated and framed by PAD white pixels, the whole
# picture scaled up SCALE times.
PAD, SCALE, SIDE = 2, 2, 28


def _config(name, **overrides):
    config = config_lib.load_config_file(os.path.join(CONFIGS, f"{name}.py"))
    items = SMALL | {k.replace("__", "."): str(v) for k, v in overrides.items()}
    config_lib.apply_overrides(config, [f"{k}={v}" for k, v in items.items()])
    return config


def _overrides(**extra):
    items = SMALL | extra
    return [f"--config.{k}={v}" for k, v in items.items()]


def _mesh(n):
    return sharding.make_mesh(jax.devices()[:n])


def _summary(workdir):
    return json.load(open(os.path.join(workdir, "summary.json")))


def _metrics(workdir):
    return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


@functools.cache
def _fashion_mnist():
    return jaxvae.load_dataset("fashion_mnist")


def _test_images(n=NUM_TEST):
    return _fashion_mnist().test_images[:n]


def _train_mean_image():
    """The mean of the training images the runs see (``data.limit_train``)."""
    images = _fashion_mnist().train_images[: int(SMALL["data.limit_train"])]
    return jaxvae.data.to_unit_float(images).mean(0)


# --------------------------------------------------------------------------------------------
# Picture grids read back from their PNG files.
# --------------------------------------------------------------------------------------------


def _grid_size(num, ncols):
    """(width, height) of plots.grid's picture of ``num`` tiles in ``ncols`` columns."""
    nrows = -(-num // ncols)
    return (ncols * (SIDE + PAD) + PAD) * SCALE, (nrows * (SIDE + PAD) + PAD) * SCALE


def _tiles(path, num, ncols):
    """The ``num`` tiles of a grid PNG as float images in [0, 1]; checks the size and the frame."""
    big = plots.read_grid(path).astype(np.float64) / 255  # without the title and row labels
    assert big.shape[1::-1] == _grid_size(num, ncols), (path, big.shape)
    assert big.ndim == 2, "a grid of 1-channel images is a grayscale PNG"
    # each SCALE x SCALE block holds one value
    np.testing.assert_array_equal(
        big, np.repeat(np.repeat(big[::SCALE, ::SCALE], SCALE, 0), SCALE, 1)
    )
    pic = big[::SCALE, ::SCALE]
    frame = np.ones(pic.shape, bool)
    tiles = []
    for i in range(num):
        r, c = divmod(i, ncols)
        y, x = PAD + r * (SIDE + PAD), PAD + c * (SIDE + PAD)
        tiles.append(pic[y : y + SIDE, x : x + SIDE])
        frame[y : y + SIDE, x : x + SIDE] = False
    assert np.all(pic[frame] == 1.0), f"{path}: the padding between tiles is not white"
    return np.stack(tiles)


def _reconstruction_rows(path, ncols=8, num=32):
    """reconstructions.png: rows of ``ncols`` inputs, each followed by their reconstructions."""
    tiles = _tiles(path, 2 * num, ncols)
    rows = tiles.reshape(-1, ncols, SIDE, SIDE)
    return rows[0::2].reshape(num, SIDE, SIDE), rows[1::2].reshape(num, SIDE, SIDE)


def _mean_images(run, z):
    """The decoder's mean image in [0, 1] from load_run's decode."""
    return np.asarray(run.decode(z), np.float64)[..., 0]


def check_pictures(workdir, num_samples, *, max_own_ratio=0.75):
    """What the pictures of a trained run show, checked against the data and load_run."""
    run = jaxvae.load_run(workdir)
    x = _test_images(32)[..., 0]
    inputs, recons = _reconstruction_rows(os.path.join(workdir, "reconstructions.png"))
    # the input rows are the first 32 test images, as uint8 levels
    np.testing.assert_allclose(inputs, x, atol=0.5 / 255 + 1e-6)
    # the reconstruction rows are the decoded posterior means of the newest checkpoint
    code = np.asarray(run.encode(x[..., None]))
    np.testing.assert_allclose(recons, _mean_images(run, code), atol=1.5 / 255)
    # ... and each is closer to its own input than to the other images
    d = np.sum((recons[:, None] - x[None]) ** 2, axis=(2, 3))  # [recon, input]
    own, others = np.diag(d), d[~np.eye(32, dtype=bool)].reshape(32, 31)
    assert own.mean() < max_own_ratio * others.mean(), (own.mean(), others.mean())
    assert np.mean(own[:, None] < others) > 0.65, np.mean(own[:, None] < others)

    # interpolations.png: 8 pairs (test images 0-7 to 8-15) in 10 steps; the ends are the
    # reconstructions of the pair, and each step moves part of the way
    path = os.path.join(workdir, "interpolations.png")
    lines = _tiles(path, 80, 10).reshape(8, 10, SIDE, SIDE)
    np.testing.assert_allclose(lines[:, 0], recons[:8], atol=1.5 / 255)
    np.testing.assert_allclose(lines[:, -1], recons[8:16], atol=1.5 / 255)
    step = np.sqrt(np.sum(np.diff(lines, axis=1) ** 2, axis=(2, 3)))  # [pair, 9]
    ends = np.sqrt(np.sum((lines[:, -1] - lines[:, 0]) ** 2, axis=(1, 2)))
    assert np.all(step.max(axis=1) < 0.5 * ends), (step, ends)

    # samples.png: num_samples distinct, non-constant images, shaped like the data on average
    samples = _tiles(os.path.join(workdir, "samples.png"), num_samples, 8)
    assert samples.std(axis=(1, 2)).min() > 0.02, "a sample is a flat image"
    assert samples.std(axis=0).mean() > 0.02, "the samples are all alike"
    flat = samples.reshape(num_samples, -1)
    pairwise = np.sum((flat[:, None] - flat[None]) ** 2, -1)[~np.eye(num_samples, dtype=bool)]
    assert pairwise.min() > 0.1, "two samples are the same image"
    corr = np.corrcoef(samples.mean(0).ravel(), _train_mean_image().ravel())[0, 1]
    assert corr > 0.6, corr
    assert not os.path.exists(os.path.join(workdir, "latent_map.png"))  # only for 2 latents


# --------------------------------------------------------------------------------------------
# The default conv VAE.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conv_vae(tmp_path_factory):
    """experiments/configs/default.py, smaller, trained for 2 epochs on 4 devices."""
    workdir = str(tmp_path_factory.mktemp("conv") / "vae")
    summary = jaxvae.train(_config("default"), workdir, mesh=_mesh(4))
    return workdir, summary


def test_default_conv_vae_trains_on_four_devices(conv_vae):
    workdir, summary = conv_vae
    assert summary["model"] == "vae/conv" and summary["devices"] == 4
    assert summary["steps"] == 2 * STEPS_PER_EPOCH and summary["skipped_steps"] == 0
    assert json.load(open(os.path.join(workdir, "config.json")))["model"]["channels"] == [8, 16]
    assert summary == _summary(workdir)
    records = _metrics(workdir)
    train = [r for r in records if "loss" in r]
    tests = [r for r in records if "test_nelbo" in r]
    assert [r["step"] for r in train] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert [r["step"] for r in tests] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    # 784 pixels at logit 0 cost 784 log 2 = 543 nats: the model learned well below that
    assert train[1]["loss"] < train[0]["loss"] < 784 * np.log(2)
    assert tests[1]["test_nelbo"] < tests[0]["test_nelbo"] < 784 * np.log(2) - 50
    assert tests[1]["test_nelbo"] == summary["test_nelbo"]
    assert summary["test_nelbo"] == pytest.approx(summary["test_recon"] + summary["test_kl"])
    # checkpoints: the first epoch's end (README) and the last step
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == [
        str(STEPS_PER_EPOCH),
        str(2 * STEPS_PER_EPOCH),
    ]
    run = jaxvae.load_run(workdir)
    assert run.step == 2 * STEPS_PER_EPOCH
    assert summary_lib.params_digest(run.params) == summary["params_digest"]


def test_eval_of_the_conv_vae_agrees_with_numpy(conv_vae, capsys):
    workdir, summary = conv_vae
    n, k = 64, 32
    code = cli.main(["eval", "--workdir", workdir, "--iwae-k", str(k), "--num-examples", str(n)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result == json.load(open(os.path.join(workdir, "eval.json")))
    assert result["step"] == 2 * STEPS_PER_EPOCH and result["num_examples"] == n
    assert result["params_digest"] == summary["params_digest"]

    run = jaxvae.load_run(workdir)
    x = _test_images(n)
    nelbo, iwae = numpy_nelbo_and_iwae(run, x, samples=16, k=k, seed=0)
    _, iwae2 = numpy_nelbo_and_iwae(run, x, samples=1, k=k, seed=1)
    # jaxvae's single-sample estimate on the same images differs from the mean over 16 samples
    # by Monte Carlo noise only: 4 standard errors
    mc_se = np.sqrt(np.mean(np.var(nelbo, axis=0, ddof=1)) / n)
    assert abs(result["test_nelbo"] - nelbo.mean()) < 4 * mc_se * np.sqrt(1 + 1 / 16)
    # two numpy replicas of the IWAE bound give its Monte Carlo spread
    iwae_se = np.std(iwae - iwae2, ddof=1) / np.sqrt(n)
    assert abs(result["test_nll"] - iwae.mean()) < 4 * iwae_se + 1e-3, (result, iwae.mean())
    assert result["test_nll"] < nelbo.mean()  # the IWAE bound is tighter than the ELBO


def test_sample_of_the_conv_vae(conv_vae, tmp_path, capsys):
    workdir, _ = conv_vae
    paths = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths[name] = str(tmp_path / f"{name}.png")
        argv = ["sample", "--workdir", workdir, "--num", "12", "--out", paths[name]]
        assert cli.main([*argv, "--seed", str(seed)]) == 0
        assert capsys.readouterr().out.strip() == paths[name]
    a, b, c = (_tiles(paths[name], 12, 8) for name in "abc")  # 8 columns, 2 rows
    np.testing.assert_array_equal(a, b)  # a function of the seed
    assert np.abs(a - c).mean() > 0.01  # another seed, other samples
    assert a.std(axis=0).mean() > 0.02


def test_pictures_of_the_conv_vae(conv_vae):
    check_pictures(conv_vae[0], num_samples=16)


def test_conv_vae_resumes_bit_for_bit_on_four_devices(conv_vae, tmp_path):
    whole, summary = conv_vae
    resumed = str(tmp_path / "resumed")
    first = jaxvae.train(_config("default", train__epochs=1), resumed, mesh=_mesh(4))
    assert first["steps"] == STEPS_PER_EPOCH
    assert os.listdir(os.path.join(resumed, "checkpoints")) == [str(STEPS_PER_EPOCH)]
    second = jaxvae.train(_config("default"), resumed, mesh=_mesh(4))
    assert second["resumed_from_step"] == STEPS_PER_EPOCH
    assert second["steps"] == 2 * STEPS_PER_EPOCH
    assert second["params_digest"] == summary["params_digest"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "images_per_sec"} for r in rs]
    assert strip(_metrics(resumed)) == strip(_metrics(whole))


def test_conv_vae_on_one_device_matches_four(conv_vae, tmp_path):
    workdir, _ = conv_vae
    one = str(tmp_path / "one")
    assert jaxvae.train(_config("default"), one, mesh=_mesh(1))["devices"] == 1
    p1, p4 = jaxvae.load_run(one).params, jaxvae.load_run(workdir).params
    # only the order of the gradient sums differs: far below what 64 steps moved the parameters
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(p1)[0], jax.tree_util.tree_leaves(p4), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4, err_msg=jax.tree_util.keystr(path))


# --------------------------------------------------------------------------------------------
# Autoencoders: experiments/configs/ae.py and dae.py.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def autoencoders(tmp_path_factory):
    """ae.py and dae.py, smaller, trained through the command line (in this process: 4 devices)."""
    root = tmp_path_factory.mktemp("ae")
    workdirs = {}
    for name in ("ae", "dae"):
        workdirs[name] = str(root / name)
        argv = ["train", "--config", os.path.join(CONFIGS, f"{name}.py")]
        assert cli.main([*argv, "--workdir", workdirs[name], *_overrides()]) == 0
    return workdirs


@pytest.mark.parametrize("name", ["ae", "dae"])
def test_autoencoder_trains_and_reports_its_reconstruction_error(autoencoders, name):
    workdir = autoencoders[name]
    summary = _summary(workdir)
    assert summary["model"] == f"{name}/conv" and summary["devices"] == 4
    assert summary["steps"] == 2 * STEPS_PER_EPOCH and summary["skipped_steps"] == 0
    assert not any(k.startswith(("test_nelbo", "test_kl", "test_nll")) for k in summary)
    # the reconstruction error of clean test images, recomputed from load_run in numpy
    run = jaxvae.load_run(workdir)
    x = _test_images().astype(np.float64)
    code = run.encode(x)
    assert np.shape(code) == (NUM_TEST, 8)
    out = np.asarray(run.decode(code), np.float64)
    assert out.min() >= 0 and out.max() <= 1  # an AE decodes to the mean image
    l2 = np.sum((out - x) ** 2, axis=(1, 2, 3))
    assert summary["test_recon_l2"] == pytest.approx(l2.mean(), rel=1e-5)
    assert summary["test_recon"] == summary["test_recon_l2"]
    assert summary["test_recon_l1"] == pytest.approx(
        np.abs(out - x).sum((1, 2, 3)).mean(), rel=1e-5
    )
    assert summary["test_mse_per_pixel"] == pytest.approx(l2.mean() / 784, rel=1e-5)
    # better than predicting the mean training image for every input
    baseline = np.sum((x - _train_mean_image()) ** 2, axis=(1, 2, 3)).mean()
    assert summary["test_recon_l2"] < 0.85 * baseline, (summary["test_recon_l2"], baseline)
    tests = [r for r in _metrics(workdir) if "test_recon_l2" in r]
    assert [r["step"] for r in tests] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert tests[1]["test_recon_l2"] < tests[0]["test_recon_l2"]


def test_denoising_autoencoder_trains_on_noisy_inputs(autoencoders):
    # ae.py and dae.py differ only in the kind: the same architecture, seed, initial parameters,
    # data order and steps. A DAE that did not corrupt its inputs would end with the AE's
    # parameters.
    ae, dae = (_summary(autoencoders[n]) for n in ("ae", "dae"))
    assert ae["num_params"] == dae["num_params"]
    assert ae["params_digest"] != dae["params_digest"]


@pytest.mark.parametrize("name", ["ae", "dae"])
def test_pictures_of_an_autoencoder(autoencoders, name):
    # samples of an AE are decoded from a Gaussian fitted to the codes of real images
    check_pictures(autoencoders[name], num_samples=16, max_own_ratio=0.7)


def test_eval_of_an_autoencoder_reports_its_reconstruction_error(autoencoders, capsys, tmp_path):
    workdir = str(tmp_path / "ae")
    shutil.copytree(autoencoders["ae"], workdir)
    assert cli.main(["eval", "--workdir", workdir]) == 0, capsys.readouterr().err
    result = json.load(open(os.path.join(workdir, "eval.json")))
    summary = _summary(workdir)
    # the same test figures as the run's summary, and no likelihood figures
    assert result["test_recon_l2"] == pytest.approx(summary["test_recon_l2"], rel=1e-6)
    assert not any(k.startswith(("test_nelbo", "test_nll")) for k in result)
    assert "no likelihood" in result["note"]


def test_sample_refuses_an_autoencoder(autoencoders, capsys, tmp_path):
    workdir = autoencoders["ae"]
    before = sorted(os.listdir(workdir))
    argv = ["sample", "--workdir", workdir, "--out", str(tmp_path / "s.png")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("jaxvae sample: error:") and "no prior" in err and "'ae'" in err, err
    assert sorted(os.listdir(workdir)) == before  # no samples.png rewritten
    assert not os.path.exists(tmp_path / "s.png")
