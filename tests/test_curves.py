"""curves.png from metrics.jsonl: the extracted data against the records written, and the PNG."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxvae import io, plots

BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's tab:blue and tab:orange


def _write_run(path, *, steps=40, per_epoch=8, test_key="test_nelbo", evaluate=True, torn=True):
    """A metrics.jsonl as MetricsLog writes it: a training line per step, an evaluation line per
    epoch; ``torn`` cuts the last line short as a run being written would. Returns what it wrote."""
    rng = np.random.default_rng(1)
    train, test, lines = {}, {}, []
    for step in range(1, steps + 1):
        loss = 500.0 * np.exp(-step / 20) + 100 + rng.normal()
        train[step] = loss
        record = {
            "step": step,
            "epoch": step / per_epoch,
            "loss": loss,
            "recon": loss - 3,
            "kl": 3.0,
        }
        lines.append(json.dumps(record, sort_keys=True))
        if evaluate and step % per_epoch == 0:
            test[step] = loss - 5
            record = {"step": step, "epoch": step / per_epoch, test_key: loss - 5}
            if test_key == "test_recon":
                record["test_recon_l2"] = loss - 5
                record["test_recon_l1"] = 7.0
            lines.append(json.dumps(record, sort_keys=True))
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"epoch": 5.125, "loss": 123.'  # no newline: still being written
    path.write_text(text)
    return train, test


def test_extract_matches_the_records_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    train, test = _write_run(path)
    c = plots.extract_curves(io.read_jsonl(str(path)))
    np.testing.assert_array_equal(c.train_steps, sorted(train))
    np.testing.assert_allclose(c.train_loss, [train[s] for s in sorted(train)], rtol=1e-15)
    assert c.test_name == "test_nelbo"
    np.testing.assert_array_equal(c.test_steps, [8, 16, 24, 32, 40])
    np.testing.assert_allclose(c.test_values, [test[s] for s in (8, 16, 24, 32, 40)], rtol=1e-15)
    assert c.steps_per_epoch == 8


def test_autoencoder_uses_test_recon(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _, test = _write_run(path, test_key="test_recon", torn=False)
    c = plots.extract_curves(io.read_jsonl(str(path)))
    assert c.test_name == "test_recon"
    np.testing.assert_allclose(c.test_values, [test[s] for s in sorted(test)], rtol=1e-15)


def test_training_lines_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    train, _ = _write_run(path, steps=5, evaluate=False)
    c = plots.extract_curves(io.read_jsonl(str(path)))
    assert c.test_name is None and len(c.test_steps) == 0
    np.testing.assert_array_equal(c.train_steps, [1, 2, 3, 4, 5])


def test_a_step_logged_twice_keeps_its_later_value():
    records = [{"step": 2, "loss": 5.0}, {"step": 1, "loss": 9.0}, {"step": 2, "loss": 4.0}]
    c = plots.extract_curves(records)
    np.testing.assert_array_equal(c.train_steps, [1, 2])
    np.testing.assert_array_equal(c.train_loss, [9.0, 4.0])
    assert c.steps_per_epoch is None


def test_a_broken_complete_line_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not a JSON line"):
        io.read_jsonl(str(path))


def _png(path):
    image = Image.open(path)
    image.load()
    return image.size, np.asarray(image.convert("RGB")).astype(int)


def _has_colour(pixels, rgb, n=20):
    return int(np.sum(np.abs(pixels - np.array(rgb)).sum(-1) < 30)) >= n


def test_plot_curves_png(tmp_path):
    run = tmp_path / "my-run"
    run.mkdir()
    _write_run(run / "metrics.jsonl")
    out = plots.plot_curves(str(run / "metrics.jsonl"), str(run / "curves.png"))
    assert out == str(run / "curves.png")
    size, pixels = _png(out)
    assert size == (800, 500)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, lines, antialiasing
    assert _has_colour(pixels, BLUE, n=200) and _has_colour(pixels, ORANGE, n=100)
    assert not list(run.glob("*.tmp*"))


def test_plot_curves_training_only_and_empty(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write_run(path, steps=5, evaluate=False)
    _, pixels = _png(plots.plot_curves(str(path), str(tmp_path / "a.png")))
    assert _has_colour(pixels, BLUE) and not _has_colour(pixels, ORANGE, n=1)
    path.write_text("")
    size, pixels = _png(plots.plot_curves(str(path), str(tmp_path / "b.png")))
    assert size == (800, 500) and not _has_colour(pixels, BLUE, n=1)
