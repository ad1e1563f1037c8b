"""TensorBoard event files, read back with TensorBoard's own reader (EventAccumulator)."""

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorboard_data_server
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator, plugin_event_multiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from jaxvae import tensorboard


def _read(logdir):
    keep_all = {
        event_accumulator.SCALARS: 0,
        event_accumulator.IMAGES: 0,
        event_accumulator.TENSORS: 0,
    }
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance=keep_all)
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _texts(acc):
    return [
        (e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors("config/text_summary")
    ]


def test_scalars_per_step(tmp_path):
    with tensorboard.EventLog(str(tmp_path)) as log:
        for step in (10, 20, 30):
            log.scalars(step, {"loss": 100.0 / step, "kl": np.float32(step / 7)}, prefix="train/")
        log.scalars(30, {"test/nelbo": 2.5})
    acc = _read(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == ["test/nelbo", "train/kl", "train/loss"]
    # Scalars are stored as float32.
    assert _scalars(acc, "train/loss") == [(s, np.float32(100.0 / s)) for s in (10, 20, 30)]
    assert _scalars(acc, "train/kl") == [(s, np.float32(s / 7)) for s in (10, 20, 30)]
    assert _scalars(acc, "test/nelbo") == [(30, 2.5)]


def test_metrics_records(tmp_path):
    train = {
        "step": 8,
        "epoch": 1.0,
        "loss": 561.4,
        "kl": 0.65,
        "skipped": 0,
        "images_per_sec": 1e4,
    }
    test = {"step": 8, "epoch": 1.0, "test_nelbo": 539.5, "test_active_units": 2, "note": "x"}
    with tensorboard.EventLog(str(tmp_path)) as log:
        log.record(train)
        log.record(test)
    acc = _read(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == [
        "test/active_units",
        "test/nelbo",
        "train/images_per_sec",
        "train/kl",
        "train/loss",
        "train/skipped",
    ]
    assert _scalars(acc, "train/loss") == [(8, np.float32(561.4))]
    assert _scalars(acc, "test/nelbo") == [(8, np.float32(539.5))]


def test_images_decode_to_the_written_pixels(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 45), dtype=np.uint8)
    grey_c = rng.integers(0, 256, (12, 8, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    with tensorboard.EventLog(str(tmp_path)) as log:
        log.images(5, {"samples": grey, "latent_map": grey_c, "colour": rgb})
    acc = _read(tmp_path)
    assert sorted(acc.Tags()["images"]) == ["colour", "latent_map", "samples"]
    for tag, want in [("samples", grey), ("latent_map", grey_c[..., 0]), ("colour", rgb)]:
        (event,) = acc.Images(tag)
        assert event.step == 5
        assert (event.height, event.width) == want.shape[:2]
        got = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        if want.ndim == 2:  # grey pictures are stored as RGB with three equal channels
            want = np.repeat(want[..., None], 3, axis=-1)
        np.testing.assert_array_equal(got, want)


CONFIG = {
    "seed": 3,
    "model": {"architecture": "mlp", "hidden": [64, 32], "latent_dim": 2, "stochastic": True},
    "train": {"learning_rate": 1e-3, "epochs": 2, "warmup": None},
}


def test_config_as_text_and_hparams(tmp_path):
    with tensorboard.EventLog(str(tmp_path)) as log:
        log.config(CONFIG)
    acc = _read(tmp_path)
    ((step, text),) = _texts(acc)
    assert step == 0
    assert json.loads(textwrap.dedent(text)) == CONFIG
    assert all(line.startswith("    ") for line in text.splitlines())  # a Markdown code block
    content = acc.PluginTagToContent("hparams")
    assert set(content) == {hparams_metadata.SESSION_START_INFO_TAG}  # no per-run experiment
    start = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG]
    )
    hp = {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
        for k, v in start.hparams.items()
    }
    assert hp == {
        "seed": 3.0,
        "model.architecture": "mlp",
        "model.hidden": "[64, 32]",
        "model.latent_dim": 2.0,
        "model.stochastic": True,
        "train.learning_rate": 1e-3,
        "train.epochs": 2.0,
    }  # None (train.warmup) is left out


RESUMED = {**CONFIG, "train": {**CONFIG["train"], "epochs": 3}}


def _killed_and_resumed(logdir, *, torn=False):
    """Attempt 1 logs steps 1..10, evaluates and draws at 4 and 8, checkpoints at 6 and is killed
    after step 10 (``torn``: in the middle of writing an event). Attempt 2 resumes from 6 with more
    epochs, logs 7..10 anew and evaluates only at 10."""
    with tensorboard.EventLog(str(logdir)) as log:
        log.config(CONFIG)
        for step in range(1, 11):
            log.scalars(step, {"loss": float(step)}, prefix="train/")
            if step in (4, 8):
                log.scalars(step, {"nelbo": 100.0 + step}, prefix="test/")
                log.images(step, {"samples": np.full((4, 4), step, np.uint8)})
    if torn:
        (path,) = tensorboard.event_files(str(logdir))
        with open(path, "ab") as f:
            f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04half an event")
    with tensorboard.EventLog(str(logdir), resume_step=6) as log:
        log.config(RESUMED)
        for step in range(7, 11):
            log.scalars(step, {"loss": -float(step)}, prefix="train/")
        log.scalars(10, {"nelbo": 50.0}, prefix="test/")


# What TensorBoard must show after _killed_and_resumed: each step once, step 6 from attempt 1.
RESUMED_LOSS = [(s, float(s)) for s in range(1, 7)] + [(s, -float(s)) for s in range(7, 11)]
RESUMED_NELBO = [(4, 104.0), (10, 50.0)]  # the orphaned evaluation at step 8 is gone


@pytest.mark.parametrize("torn", [False, True])
def test_resume_drops_what_the_killed_attempt_wrote_after_its_checkpoint(tmp_path, torn):
    _killed_and_resumed(tmp_path, torn=torn)
    # Both attempts ran within the same second: the second did not overwrite the first's file.
    files = tensorboard.event_files(str(tmp_path))
    assert len(files) == 2 and not any(f.endswith(".tmp") for f in os.listdir(tmp_path))
    with open(files[0], "rb") as f:
        assert b"half an event" not in f.read()

    acc = _read(tmp_path)
    assert _scalars(acc, "train/loss") == RESUMED_LOSS
    assert _scalars(acc, "test/nelbo") == RESUMED_NELBO
    assert [e.step for e in acc.Images("samples")] == [4]
    ((step, text),) = _texts(acc)  # one config: the one the run continued with
    assert step == 0 and json.loads(textwrap.dedent(text)) == RESUMED
    start = hparams_metadata.parse_session_start_info_plugin_data(
        acc.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["train.epochs"].number_value == 3


def test_resume_as_the_tensorboard_server_python_loader_reads_it(tmp_path):
    """TensorBoard's server loads runs through plugin_event_multiplexer when not in Rust mode."""
    _killed_and_resumed(tmp_path / "run")
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    assert list(mux.Runs()) == ["run"]

    def series(tag):
        return [
            (e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
            for e in mux.Tensors("run", tag)
        ]

    assert series("train/loss") == RESUMED_LOSS
    assert series("test/nelbo") == RESUMED_NELBO


def test_purge_marker_alone_hides_orphans_from_a_live_python_loader(tmp_path):
    """A TensorBoard that loaded the killed attempt's events before the resume rewrote the file
    drops them when it reads the resumed file's session start (it keeps what it holds in memory)."""
    with tensorboard.EventLog(str(tmp_path)) as log:
        for step in range(1, 11):
            log.scalars(step, {"loss": float(step)})
    acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()  # the live loader holds steps 1..10
    with tensorboard.EventLog(str(tmp_path), resume_step=6) as log:
        log.scalars(7, {"loss": -7.0})
    acc.Reload()
    assert _scalars(acc, "loss") == [(s, float(s)) for s in range(1, 7)] + [(7, -7.0)]


@pytest.mark.slow
@pytest.mark.skipif(
    tensorboard_data_server.server_binary() is None,
    reason="no TensorBoard data server for this platform",
)
def test_resume_as_tensorboard_serves_it(tmp_path):
    """``tensorboard --logdir``, in its default fast-loading mode (the Rust data server), over HTTP."""
    _killed_and_resumed(tmp_path / "run")
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(tmp_path),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--load_fast",
        "true",
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(120, server.kill)  # a server that hangs ends the test, not the suite
    watchdog.start()
    try:
        url = None
        for (
            line
        ) in server.stdout:  # "TensorBoard 2.21.0 at http://127.0.0.1:PORT/ (Press CTRL+C ..."
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if match:
                url = match.group(1)
                break
        assert url, "tensorboard did not start"

        def get(path):
            with urllib.request.urlopen(url + path, timeout=10) as r:
                return json.load(r)

        def series(tag):
            return [
                (step, value)
                for _, step, value in get(f"/data/plugin/scalars/scalars?run=run&tag={tag}")
            ]

        deadline = time.monotonic() + 90
        while True:  # the data server loads the run in the background
            try:
                if series("test/nelbo")[-1:] == [(10, 50.0)] and series("train/loss")[-1:] == [
                    (10, -10.0)
                ]:
                    break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "tensorboard never served the run"
            time.sleep(0.5)
        assert get("/data/runs") == ["run"]
        assert series("train/loss") == RESUMED_LOSS
        assert series("test/nelbo") == RESUMED_NELBO
        assert [e["step"] for e in get("/data/plugin/images/images?run=run&tag=samples")] == [4]
        (text,) = get("/data/plugin/text/text?run=run&tag=config/text_summary")
        assert text["step"] == 0 and '"epochs": 3' in text["text"]  # the config as resumed
    finally:
        watchdog.cancel()
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()


def test_a_new_run_removes_earlier_event_files(tmp_path):
    """resume_step=None is a new run (the workdir held none): orphaned events do not stay."""
    with tensorboard.EventLog(str(tmp_path)) as log:
        log.scalars(8, {"nelbo": 108.0}, prefix="test/")
    (tmp_path / "metrics.jsonl").write_text("")
    with tensorboard.EventLog(str(tmp_path)) as log:
        log.scalars(10, {"nelbo": 50.0}, prefix="test/")
    assert len(tensorboard.event_files(str(tmp_path))) == 1
    assert (tmp_path / "metrics.jsonl").exists()  # only event files go
    assert _scalars(_read(tmp_path), "test/nelbo") == [(10, 50.0)]


def test_disabled_writes_nothing(tmp_path):
    logdir = tmp_path / "run"
    log = tensorboard.EventLog(str(logdir), enabled=False)
    log.config(CONFIG)
    log.scalars(1, {"loss": 1.0})
    log.images(1, {"samples": np.zeros((4, 4), np.uint8)})
    log.flush()
    log.close()
    assert not logdir.exists()


def test_flush_secs_flushes_on_write(tmp_path):
    log = tensorboard.EventLog(str(tmp_path), flush_secs=0)
    log.scalars(1, {"loss": 3.0})
    assert _scalars(_read(tmp_path), "loss") == [(1, 3.0)]
    log.close()


def test_flush_makes_events_readable_while_the_run_goes_on(tmp_path):
    log = tensorboard.EventLog(str(tmp_path), flush_secs=3600)
    log.scalars(1, {"loss": 3.0})
    log.flush()
    assert _scalars(_read(tmp_path), "loss") == [(1, 3.0)]
    log.scalars(2, {"loss": 4.0})
    log.flush()
    assert _scalars(_read(tmp_path), "loss") == [(1, 3.0), (2, 4.0)]
    log.close()
    log.close()  # closing twice is harmless


@pytest.mark.parametrize(
    "values",
    [{"loss": np.array([1.0, 2.0])}, {"loss": "high"}, {"loss": True}],
)
def test_bad_scalar_is_a_value_error(tmp_path, values):
    with tensorboard.EventLog(str(tmp_path)) as log, pytest.raises(ValueError, match="loss"):
        log.scalars(1, values)


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 1), np.uint8)],
)
def test_bad_image_is_a_value_error(tmp_path, image):
    with tensorboard.EventLog(str(tmp_path)) as log, pytest.raises(ValueError, match="samples"):
        log.images(1, {"samples": image})
