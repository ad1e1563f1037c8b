"""The jaxvae command end to end: train, resume after SIGKILL, eval against numpy, sample, and the
one-line errors of bad input."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import scipy.special
import sklearn.decomposition
from PIL import Image

from jaxvae import api, cli, data, latents, layout, pictures, plots
from tests.conftest import CONFIGS, REPO

SMOKE = os.path.join(CONFIGS, "smoke.py")
ENV = dict(os.environ, XLA_FLAGS="", PYTHONUNBUFFERED="1")


def jaxvae(*args, check=True, timeout=300):
    """Runs the installed console script in a fresh process."""
    exe = os.path.join(os.path.dirname(sys.executable), "jaxvae")
    proc = subprocess.run(
        [exe, *args], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"jaxvae {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("runs") / "smoke")
    jaxvae("train", "--config", SMOKE, "--workdir", workdir)
    return workdir


def test_train_writes_the_run_directory(smoke_run):
    for name in (
        "config.json",
        "run.json",
        "metrics.jsonl",
        "summary.json",
        "samples.png",
        "reconstructions.png",
        "interpolations.png",
        "latent_map.png",  # the smoke model has 2 latents
    ):
        assert os.path.exists(os.path.join(smoke_run, name)), name
    summary = json.load(open(os.path.join(smoke_run, "summary.json")))
    for key in ("test_nelbo", "test_recon", "test_kl", "epochs", "steps", "seed", "wall_s"):
        assert key in summary
    assert summary["steps"] == 2 * (512 // 64)
    # nelbo = recon + kl, per image in float32 on the device, then averaged in float64
    nelbo = summary["test_recon"] + summary["test_kl"]
    assert summary["test_nelbo"] == pytest.approx(nelbo, rel=1e-6)
    assert len(summary["params_digest"]) == 64 and summary["train_images_per_sec"] > 0
    records = [json.loads(line) for line in open(os.path.join(smoke_run, "metrics.jsonl"))]
    assert any("test_nelbo" in r for r in records) and any("loss" in r for r in records)
    assert sorted(os.listdir(os.path.join(smoke_run, "checkpoints"))) == ["16", "8"]


def _numpy_mlp(params, x):
    """The smoke model's MLP encoder/decoder, written again in float64 numpy."""

    def dense(p, h):
        return h @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)

    enc, dec = params["encoder"]["MLP_0"], params["decoder"]["MLP_0"]
    h = np.maximum(dense(enc["Dense_0"], x.reshape(x.shape[0], -1)), 0)
    mean, log_var = np.split(dense(enc["Dense_1"], h), 2, axis=-1)

    def logits(z):
        return dense(dec["Dense_1"], np.maximum(dense(dec["Dense_0"], z), 0))

    return mean, log_var, logits


def _bernoulli(x, logits):
    return np.sum(x * logits - np.logaddexp(0, logits), axis=-1)


def test_eval_agrees_with_numpy_through_load_run(smoke_run):
    import jaxvae as jv

    n, k = 200, 256
    out = jaxvae("eval", "--workdir", smoke_run, "--iwae-k", str(k), "--num-examples", str(n))
    result = json.loads(out.stdout)
    saved = json.load(open(os.path.join(smoke_run, "eval.json")))
    assert saved == result and result["num_examples"] == n and result["iwae_k"] == k

    run = jv.load_run(smoke_run)
    data = jv.load_dataset("fashion_mnist", limit_test=n)
    x = data.test_images.astype(np.float64).reshape(n, -1)
    mean, log_var, logits = _numpy_mlp(run.params, x)
    rng = np.random.default_rng(0)
    std = np.exp(0.5 * log_var)
    kl = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1 - log_var, axis=-1)
    z1 = mean + std * rng.standard_normal(mean.shape)
    nelbo = np.mean(-_bernoulli(x, logits(z1)) + kl)
    log_px = []
    for i in range(n):
        z = mean[i] + std[i] * rng.standard_normal((k, mean.shape[1]))
        log_q = np.sum(-0.5 * (np.log(2 * np.pi) + log_var[i] + ((z - mean[i]) / std[i]) ** 2), -1)
        log_p = np.sum(-0.5 * (np.log(2 * np.pi) + z**2), -1)
        lw = _bernoulli(x[i], logits(z)) + log_p - log_q
        log_px.append(scipy.special.logsumexp(lw) - np.log(k))
    nll = -np.mean(log_px)
    assert abs(result["test_nelbo"] - nelbo) < 1.0, (result["test_nelbo"], nelbo)
    assert abs(result["test_nll"] - nll) < 1.0, (result["test_nll"], nll)
    assert result["test_nll"] <= result["test_nelbo"]
    se = np.std(log_px, ddof=1) / np.sqrt(n)
    assert 0.5 * se < result["test_nll_se"] < 2 * se


def test_load_run_functions(smoke_run):
    import jaxvae as jv

    run = jv.load_run(smoke_run)
    assert run.step == 16 and run.model.name == "vae" and run.state == {}
    x = jv.load_dataset("fashion_mnist", limit_test=8).test_images
    mean = run.encode(x)  # the posterior mean
    assert mean.shape == (8, 2)
    images = run.decode(mean)  # the decoder's mean image
    assert images.shape == (8, 28, 28, 1)
    # Against the model written again in numpy: E_q[z | x], and sigmoid(logits) at it.
    np_mean, _, logits = _numpy_mlp(run.params, x.astype(np.float64))
    np.testing.assert_allclose(mean, np_mean, rtol=1e-4, atol=1e-5)
    expected = scipy.special.expit(logits(np.asarray(mean, np.float64))).reshape(8, 28, 28, 1)
    np.testing.assert_allclose(images, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit the model"):
        run.encode(np.zeros((2, 32, 32, 1), np.float32))


def test_sample_writes_a_png(smoke_run, tmp_path):
    out = str(tmp_path / "s.png")
    assert cli.main(["sample", "--workdir", smoke_run, "--num", "9", "--out", out]) == 0
    from PIL import Image

    assert Image.open(out).size[0] > 28 * 3


def _digest(workdir):
    return json.load(open(os.path.join(workdir, "summary.json")))["params_digest"]


def _records(workdir):
    """metrics.jsonl without the one timing figure, which differs from run to run."""
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in lines]


def test_sigkill_and_resume_is_bit_identical(tmp_path, one_device_mesh):
    import io

    from jaxvae import config as config_lib

    # 50 steps per epoch and a checkpoint every 130: every checkpoint before the last step is in
    # the middle of an epoch, so the resume is too
    per_epoch, every = 6400 // 128, 130
    args = [
        "--config",
        os.path.join(CONFIGS, "peer_mlp.py"),
        "--config.data.limit_train=6400",
        "--config.data.limit_test=500",
        "--config.train.epochs=8",
        f"--config.train.checkpoint_every_steps={every}",
        "--config.train.keep_checkpoints=20",
        "--config.train.progress=false",
    ]
    # the run never stopped: in this process, on one device as the console script's (ENV)
    whole = str(tmp_path / "whole")
    config = config_lib.load_config_file(args[1])
    config_lib.apply_overrides(config, [a.removeprefix("--config.") for a in args[2:]])
    api.train(config, whole, mesh=one_device_mesh, stream=io.StringIO())

    killed = str(tmp_path / "killed")
    exe = os.path.join(os.path.dirname(sys.executable), "jaxvae")
    proc = subprocess.Popen(
        [exe, "train", "--workdir", killed, *args],
        env=ENV,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = os.path.join(killed, "checkpoints", str(every))
    deadline = time.time() + 120
    while not os.path.isdir(first) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.isdir(first)
    assert not os.path.exists(os.path.join(killed, "summary.json")), "the run ended before the kill"
    out = jaxvae("train", "--workdir", killed, *args)
    assert "resuming" in out.stderr
    summary = json.load(open(os.path.join(killed, "summary.json")))
    assert summary["resumed_from_step"] >= every
    assert summary["resumed_from_step"] % per_epoch != 0, "the resume was not mid-epoch"
    assert _digest(killed) == _digest(whole)
    # the same lines as the run never stopped: none duplicated from the killed attempt, none lost
    assert _records(killed) == _records(whole)
    steps = [r["step"] for r in _records(killed) if "loss" in r]
    assert steps == sorted(set(steps))


def _tree_digest(path):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(p.encode())
            h.update(open(p, "rb").read())
    return h.hexdigest()


def _one_line_error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_give_one_line_and_leave_the_workdir_alone(smoke_run, capsys, tmp_path):
    before = _tree_digest(smoke_run)
    base = ["train", "--config", SMOKE, "--workdir", smoke_run]
    assert "unknown config key 'train.epohcs'" in _one_line_error(
        capsys, [*base, "--config.train.epohcs=3"]
    )
    assert "expected a value of type int" in _one_line_error(
        capsys, [*base, "--config.train.epochs=many"]
    )
    assert "train.batch_size=0" in _one_line_error(capsys, [*base, "--config.train.batch_size=0"])
    assert "latent_dim" in _one_line_error(capsys, [*base, "--config.model.latent_dim=-2"])
    missing = str(tmp_path / "no-such-dir")
    err = _one_line_error(capsys, [*base, f"--config.data.data_dir={missing}"])
    assert missing in err and "dataset-fashion-mnist" in err
    err = _one_line_error(capsys, [*base, "--config.model.hidden=32"])
    assert "different config" in err and "model.hidden" in err
    assert _tree_digest(smoke_run) == before


def test_other_bad_inputs(capsys, tmp_path):
    err = _one_line_error(capsys, ["eval", "--workdir", str(tmp_path / "nothing")])
    assert "does not exist" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _one_line_error(capsys, ["train", "--config", SMOKE, "--workdir", str(blocker / "run")])
    assert "not writable" in err
    err = _one_line_error(capsys, ["train", "--config", str(tmp_path / "nope.py")])
    assert "does not exist" in err
    # images whose shape does not fit a conv model with two stride-2 layers
    npz = tmp_path / "odd.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, train_images=rng.random((64, 30, 30)), test_images=rng.random((16, 30, 30)))
    err = _one_line_error(
        capsys,
        [
            "train",
            "--config",
            os.path.join(CONFIGS, "default.py"),
            "--workdir",
            str(tmp_path / "odd"),
            "--config.data.name=npz",
            f"--config.data.data_dir={npz}",
        ],
    )
    assert "(30, 30, 1)" in err and "divisible by 4" in err
    assert not os.path.exists(tmp_path / "odd" / "config.json")
    # a fresh process: jax.distributed must start before anything else touches JAX
    proc = jaxvae(
        "train", "--config", SMOKE, "--workdir", str(tmp_path / "d"), "--distributed", check=False
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no multi-process cluster" in proc.stderr and not os.path.exists(tmp_path / "d")
    err = _one_line_error(capsys, ["train", "--config", SMOKE, "--bogus-flag"])
    assert "unrecognized arguments" in err


def test_a_run_of_another_format_is_refused(smoke_run, capsys, tmp_path):
    old = str(tmp_path / "old")
    shutil.copytree(smoke_run, old)
    info_path = os.path.join(old, "run.json")
    info = json.load(open(info_path))
    assert info["format"] == 2 and info["image_shape"] == [28, 28, 1]
    json.dump(info | {"format": 1}, open(info_path, "w"))
    before = _tree_digest(old)
    for argv in (
        ["eval", "--workdir", old],
        ["sample", "--workdir", old],
        ["train", "--config", SMOKE, "--workdir", old],
    ):
        assert "holds a run of format 1 (this jaxvae reads format 2" in _one_line_error(
            capsys, argv
        )
    assert _tree_digest(old) == before


def test_an_autoencoder_is_evaluated_but_not_sampled(capsys, tmp_path):
    workdir = str(tmp_path / "ae")
    argv = ["train", "--config", SMOKE, "--workdir", workdir, "--config.model.kind=ae"]
    assert cli.main(argv) == 0  # in this process: the console script's runs are tested above
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["model"] == "ae/mlp" and "test_nll" not in summary
    # Its samples.png decodes codes from a Gaussian fitted to the test codes.
    for name in ("samples.png", "reconstructions.png", "interpolations.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", workdir, "--num-examples", "100"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.load(open(os.path.join(workdir, "eval.json")))
    assert "test_nll" not in result and "no NLL" in result["note"]
    assert result["num_examples"] == 100 and result["step"] == 16
    # Reconstruction errors, against numpy: the code and the decoder's sigmoid output.
    import jaxvae as jv

    run = jv.load_run(workdir)
    x = jv.load_dataset("fashion_mnist", limit_test=100).test_images.astype(np.float64)

    def dense(p, h):
        return h @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)

    enc, dec = run.params["encoder"]["MLP_0"], run.params["decoder"]["MLP_0"]
    code = dense(enc["Dense_1"], np.maximum(dense(enc["Dense_0"], x.reshape(100, -1)), 0))
    out = scipy.special.expit(dense(dec["Dense_1"], np.maximum(dense(dec["Dense_0"], code), 0)))
    l2 = np.sum((out - x.reshape(100, -1)) ** 2, axis=-1)
    np.testing.assert_allclose(result["test_recon_l2"], l2.mean(), rtol=1e-4)
    np.testing.assert_allclose(result["test_mse_per_pixel"], l2.mean() / 784, rtol=1e-4)
    # jaxvae encode: an autoencoder has a code, no posterior: the means alone, numpy's code
    codes_path = str(tmp_path / "codes.npz")
    assert cli.main(["encode", "--workdir", workdir, "--out", codes_path]) == 0
    with np.load(codes_path) as codes:
        assert sorted(codes) == ["label", "mean", "step"] and codes["mean"].shape == (256, 2)
        np.testing.assert_allclose(codes["mean"][:100], code, rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    err = _one_line_error(capsys, ["sample", "--workdir", workdir])
    assert "model kind 'ae'" in err and "no prior to sample from" in err


def test_console_script_error_has_no_traceback(tmp_path):
    proc = jaxvae("eval", "--workdir", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_bench_reports_speed_flops_and_memory():
    proc = jaxvae(
        "bench",
        "--config",
        SMOKE,
        "--steps",
        "4",
        "--repeats",
        "2",
        "--iwae-k",
        "50",
        "--iwae-num",
        "10",
        "--iwae-batch",
        "5",
    )
    r = json.loads(proc.stdout)
    assert r["timed_steps"] == 4 and len(r["train_images_per_sec_all"]) == 2
    assert r["train_images_per_sec"] > 0 and r["compile_s"] > 0
    # matmul FLOPs of the smoke MLP (784-64-2x2, 2-64-784): forward F, backward 2F minus the
    # input gradient of the first layer, which is not needed
    h, latent, pixels = 64, 2, 784
    f = 2 * (pixels * h + h * 2 * latent + latent * h + h * pixels)
    matmul_flops = 3 * f - 2 * pixels * h
    assert matmul_flops <= r["flops_per_image"] <= 1.5 * matmul_flops, r["flops_per_image"]
    # the fraction of peak is the training FLOP rate over the measured matmul rate: two timings,
    # whose ratio a busy machine can push past 1, so the arithmetic is checked, not a bound
    assert r["train_images_per_sec"] == pytest.approx(np.median(r["train_images_per_sec_all"]))
    gflops = r["train_images_per_sec"] * r["flops_per_image"] / 1e9
    assert r["train_gflops_per_sec"] == pytest.approx(gflops)
    assert r["matmul_peak_gflops"] > 0
    assert r["train_fraction_of_matmul_peak"] == pytest.approx(gflops / r["matmul_peak_gflops"])
    # roofline: at least the float32 parameters are read once per step, and the bound is the
    # slower of the FLOP time and the byte time at the measured rates
    params_bytes = 4 * (pixels * h + h + h * 2 * latent + 2 * latent + latent * h + h)
    assert (
        r["bytes_per_image"] * r["config"]["batch_size"] >= params_bytes
        and r["memory_bandwidth_gbs"] > 0
    )
    floor_s = max(
        r["flops_per_image"] / (r["matmul_peak_gflops"] * 1e9),
        r["bytes_per_image"] / (r["memory_bandwidth_gbs"] * 1e9),
    )
    assert r["roofline_images_per_sec"] == pytest.approx(1 / floor_s)
    assert r["train_fraction_of_roofline"] > 0  # may pass 1 where the working set is cached
    iw = r["iwae"]
    assert iw["k"] == 50 and iw["num_examples"] == 10 and iw["samples_per_sec"] > 0
    decoder_flops = 2 * (latent * h + h * pixels)
    assert decoder_flops <= iw["flops_per_sample"] <= 1.5 * decoder_flops + 20 * pixels
    mem = r["train_program_memory"]
    assert mem["arguments_mb"] >= 512 * pixels * 4 / 2**20  # the resident training images
    assert r["peak_host_memory_mb"] > 0


def test_bench_refuses_a_bad_iwae_batch():
    proc = jaxvae("bench", "--config", SMOKE, "--iwae-batch", "0", check=False)
    assert proc.returncode == 2 and "--iwae-batch > 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_log_file_gets_epoch_lines_not_a_progress_bar(tmp_path):
    import io

    from jaxvae import config as config_lib

    config = config_lib.load_config_file(SMOKE)
    config.train.progress = True
    log = io.StringIO()  # not a terminal
    api.train(config, str(tmp_path / "run"), stream=log)
    text = log.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "done: nelbo" in text
    assert "step/s" not in text and "\r" not in text


def test_channels_first_npz_is_refused_before_training(capsys, tmp_path):
    npz = tmp_path / "chw.npz"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (80, 3, 32, 32), dtype=np.uint8)
    np.savez(npz, train_images=images[:64], test_images=images[64:])
    workdir = tmp_path / "chw"
    err = _one_line_error(
        capsys,
        [
            "train",
            "--config",
            SMOKE,  # an MLP takes any image shape: the file used to train, then crash
            "--workdir",
            str(workdir),
            "--config.data.name=npz",
            f"--config.data.data_dir={npz}",
        ],
    )
    assert "(64, 3, 32, 32)" in err and "channels-first" in err, err
    assert "np.transpose(x, (0, 2, 3, 1))" in err and "C in {1, 3}" in err, err
    assert not os.path.exists(workdir)


@pytest.fixture(scope="module")
def early_stopped_run(tmp_path_factory):
    """A run stopped early (patience 1): its newest checkpoint is past its best epoch's."""
    workdir = str(tmp_path_factory.mktemp("runs") / "early")
    argv = [
        "train",
        "--config",
        SMOKE,
        "--workdir",
        workdir,
        "--config.data.limit_train=256",
        "--config.data.validation_size=2000",
        "--config.train.learning_rate=0.01",
        "--config.train.checkpoint_min_interval_s=0",
        "--config.train.epochs=30",
        "--config.train.early_stopping_patience=1",
    ]
    assert cli.main(argv) == 0
    return workdir


def test_eval_sample_and_load_run_use_the_best_checkpoint(early_stopped_run, capsys, tmp_path):
    import jaxvae as jv

    workdir = early_stopped_run
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    best, newest = summary["best_step"], summary["trained_steps"]
    assert summary["stopped_early"] and best < newest
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", workdir, "--iwae-k", "2"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result == json.load(open(os.path.join(workdir, "eval.json")))
    assert (result["checkpoint"], result["step"]) == ("best", best)
    assert result["params_digest"] == summary["params_digest"]
    # the same state, test set, batches and eval key as the summary's figure
    assert result["test_nelbo"] == pytest.approx(summary["test_nelbo"], rel=1e-6)
    assert f"the best checkpoint (step {best})" in out.err
    assert cli.main(["eval", "--workdir", workdir, "--iwae-k", "2", "--checkpoint", "newest"]) == 0
    newer = json.loads(capsys.readouterr().out)
    assert (newer["checkpoint"], newer["step"]) == ("newest", newest)
    assert newer["test_nelbo"] != pytest.approx(summary["test_nelbo"], rel=1e-6)
    assert jv.load_run(workdir).step == best
    assert jv.load_run(workdir, checkpoint="newest").step == newest
    out_png = str(tmp_path / "s.png")
    assert cli.main(["sample", "--workdir", workdir, "--out", out_png]) == 0
    assert f"the best checkpoint (step {best})" in capsys.readouterr().err


def test_best_checkpoint_of_a_run_without_early_stopping_is_refused(smoke_run, capsys):
    import jaxvae as jv

    err = _one_line_error(capsys, ["eval", "--workdir", smoke_run, "--checkpoint", "best"])
    assert "no best checkpoint" in err
    assert jv.load_run(smoke_run).checkpoint == "newest"
    with pytest.raises(ValueError, match="checkpoint='last'"):
        jv.load_run(smoke_run, checkpoint="last")


def test_eval_json_says_what_was_evaluated_and_progress_shows(smoke_run, capsys):
    argv = ["eval", "--workdir", smoke_run, "--iwae-k", "3", "--num-examples", "40"]
    assert cli.main([*argv, "--batch-size", "8"]) == 0
    out = capsys.readouterr()
    protocol = json.loads(out.out)["data_protocol"]
    assert protocol["num_test"] == 40 and "first 40 examples (--num-examples)" in protocol["test"]
    assert "num_train" not in protocol  # eval reads no training data
    lines = [line for line in out.err.splitlines() if "IWAE bound (k=3)" in line]
    assert len(lines) == 5 and lines[-1].endswith("40/40 images"), out.err
    assert "\r" not in out.err  # stderr is not a terminal: lines, not a bar


def test_eval_and_plot_read_no_training_data(smoke_run, capsys, monkeypatch):
    from jaxvae.data import idx

    read = idx.read_fashion_mnist_split

    def test_split_only(images_path, labels_path, split):
        if split != "test":
            raise AssertionError(f"read the {split} split")
        return read(images_path, labels_path, split)

    monkeypatch.setattr(idx, "read_fashion_mnist_split", test_split_only)
    assert cli.main(["eval", "--workdir", smoke_run, "--iwae-k", "2", "--num-examples", "20"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_examples"] == 20 and np.isfinite(result["test_nll"])
    assert cli.main(["plot", "--workdir", smoke_run]) == 0
    assert os.path.join(smoke_run, "samples.png") in capsys.readouterr().out.split()


def test_a_finished_run_is_left_alone_and_fewer_epochs_are_refused(smoke_run, capsys, tmp_path):
    base = ["train", "--config", SMOKE, "--workdir", smoke_run]
    before = _tree_digest(smoke_run)
    summary = json.load(open(os.path.join(smoke_run, "summary.json")))
    capsys.readouterr()
    assert cli.main(base) == 0  # the same config: nothing trained, nothing rewritten
    out = capsys.readouterr()
    assert "already finished" in out.err and json.loads(out.out)["steps"] == summary["steps"]
    assert cli.main([*base, "--config.train.progress=true"]) == 0
    assert "already finished" in capsys.readouterr().err
    err = _one_line_error(capsys, [*base, "--config.train.epochs=1"])
    assert "train.epochs=1 is fewer" in err and "--config.train.epochs=2 or more" in err, err
    assert _tree_digest(smoke_run) == before
    # more epochs continue the run
    more = str(tmp_path / "more")
    shutil.copytree(smoke_run, more)
    assert cli.main(["train", "--config", SMOKE, "--workdir", more, "--config.train.epochs=3"]) == 0
    continued = json.load(open(os.path.join(more, "summary.json")))
    assert continued["resumed_from_step"] == 16 and continued["steps"] == 24
    assert continued["epochs"] == 3


# ---- jaxvae encode and the labelled pictures of the smoke run --------------------------------


def test_encode_writes_the_posterior_of_each_image(smoke_run, tmp_path, capsys):
    """The npz of each split holds load_run's posterior of the dataset's images, their labels
    and the step; the same call writes the same file; mistakes are one line on stderr."""
    out = str(tmp_path / "codes.npz")
    assert cli.main(["encode", "--workdir", smoke_run, "--out", out]) == 0
    printed = json.loads(capsys.readouterr().out)
    test = data.load_dataset("fashion_mnist", limit_test=256, test_only=True)  # smoke.py's data
    run = api.load_run(smoke_run)
    q = run.posterior(test.test_images)
    with np.load(out) as codes:
        assert sorted(codes) == ["label", "mean", "stddev", "step"]
        np.testing.assert_allclose(codes["mean"], q.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(codes["stddev"], q.stddev(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(codes["label"], test.test_labels)
        assert codes["mean"].shape == (256, 2) and int(codes["step"]) == run.step == 16
        first = {k: codes[k] for k in codes}
    assert printed == {
        "out": out,
        "split": "test",
        "num_examples": 256,
        "latent_dim": 2,
        "arrays": ["label", "mean", "stddev", "step"],
        "checkpoint": "newest",
        "step": 16,
    }
    # batches of 100 (the last one padded) give the same codes as one batch; a rerun the same bytes
    again = latents.encode_images(run, test.test_images, test.test_labels, batch_size=100)
    np.testing.assert_allclose(again["mean"], first["mean"], rtol=1e-5, atol=1e-6)
    assert cli.main(["encode", "--workdir", smoke_run, "--out", out + "2.npz"]) == 0
    assert open(out, "rb").read() == open(out + "2.npz", "rb").read()

    train_out = str(tmp_path / "train.npz")
    argv = ["encode", "--workdir", smoke_run, "--out", train_out, "--split", "train"]
    assert cli.main(argv + ["--checkpoint", "newest"]) == 0
    train = data.load_dataset("fashion_mnist", limit_train=512)
    with np.load(train_out) as codes:
        np.testing.assert_array_equal(codes["label"], train.train_labels)
        np.testing.assert_allclose(
            codes["mean"], run.posterior(train.train_images).mean(), rtol=1e-5, atol=1e-6
        )

    capsys.readouterr()
    missing = str(tmp_path / "nothing")
    err = _one_line_error(capsys, ["encode", "--workdir", missing, "--out", out])
    assert err.startswith("jaxvae encode: error:") and "does not exist" in err
    err = _one_line_error(
        capsys, ["encode", "--workdir", smoke_run, "--out", out, "--split", "val"]
    )
    assert "invalid choice: 'val'" in err
    argv = ["encode", "--workdir", smoke_run, "--out", out, "--split", "validation"]
    assert "validation split of the run is empty" in _one_line_error(capsys, argv)
    argv = ["encode", "--workdir", smoke_run, "--out", str(tmp_path / "no" / "c.npz")]
    assert "does not exist" in _one_line_error(capsys, argv)


def test_latent_space_picture_is_the_pca_of_the_test_codes(smoke_run):
    run = api.load_run(smoke_run)
    test = data.load_dataset("fashion_mnist", limit_test=256, test_only=True)
    split = {"image": test.test_images, "label": test.test_labels}
    params, state = jax.device_put((run.params, run.state))
    space = pictures.latent_space(run.model, params, state, split, batch_size=100)  # one padded
    want = sklearn.decomposition.PCA(2).fit(np.asarray(run.encode(test.test_images), np.float64))
    projected = want.transform(np.asarray(run.encode(test.test_images), np.float64))
    signs = np.sign(np.sum(space.points * projected, axis=0))
    np.testing.assert_allclose(space.points, projected * signs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(space.ratios, want.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_array_equal(space.labels, test.test_labels)
    with Image.open(os.path.join(smoke_run, layout.LATENT_SPACE)) as im:
        pixels = np.asarray(im.convert("RGB"), np.int64)
    # coloured by label: the ten classes' colours (tab10) are drawn
    colours = {tuple(int(255 * c + 0.5) for c in rgb) for rgb in _tab10()}
    seen = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert len(colours & seen) >= 8, colours & seen


def _tab10():
    from matplotlib import colormaps

    return colormaps["tab10"].colors


def _ink(region):
    """Whether a region of a picture holds dark (text) pixels."""
    return bool((np.asarray(region) < 128).any())


def test_the_runs_grids_are_labelled(smoke_run):
    """reconstructions.png labels its input and reconstruction rows, traversals.png the latent
    of each row; samples.png and latent_map.png have a title; the grids inside are exact."""
    test = data.load_dataset("fashion_mnist", limit_test=256, test_only=True)

    def opened(name):
        with Image.open(os.path.join(smoke_run, name)) as im:
            left, top, w, h = (int(v) for v in im.info[plots.GRID_BOX].split())
            return np.asarray(im), left, top

    full, left, top = opened(layout.RECONSTRUCTIONS)
    assert _ink(full[:top]) and left > 0
    tile = 2 * (28 + 2)
    bands = [full[top + 4 + tile * r : top + tile * (r + 1), :left] for r in range(8)]
    for r in range(2, 8):
        np.testing.assert_array_equal(bands[r], bands[r % 2])
    assert _ink(bands[0]) and _ink(bands[1]) and not np.array_equal(bands[0], bands[1])
    inputs = plots.read_grid(os.path.join(smoke_run, layout.RECONSTRUCTIONS))[4:60, 4:60]
    want = plots.grid(test.test_images[:1], 1)[4:60, 4:60, 0]
    np.testing.assert_array_equal(inputs, want)  # the first input tile, exactly
    full, left, top = opened(layout.TRAVERSALS)
    assert left > 0 and _ink(full[:top])
    bands = [full[top + 4 + tile * r : top + tile * (r + 1), :left] for r in range(2)]
    assert all(_ink(b) for b in bands) and not np.array_equal(*bands)  # z0 and z1
    for name in (layout.SAMPLES, layout.LATENT_MAP, layout.INTERPOLATIONS):
        full, left, top = opened(name)
        assert top > 0 and _ink(full[:top]) and left == 0, name
