"""Bad user data is refused with one clear line (issue 10, item 5, the data part).

Every malformed ``.npz`` (NaN or out-of-range pixels, a wrong dtype or rank, labels of the wrong
dtype or length, a file that is not an npz at all) raises one ``ValueError`` line naming the array
and the bad value, and ``jaxvae train`` on it exits 2 with one stderr line and leaves the workdir
as it was: not created, or byte-identical.
"""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxvae import cli, data
from tests.conftest import CONFIGS, REPO

SMOKE = os.path.join(CONFIGS, "smoke.py")
GOOD = {"train_images": np.zeros((2, 3, 3)), "test_images": np.zeros((1, 3, 3))}
_ONE_NAN = np.zeros((2, 3, 3))
_ONE_NAN[1, 2, 0] = np.nan

# (name, arrays replacing or adding to GOOD, substrings the message must hold)
BAD_ARRAYS = [
    ("nan", {"train_images": _ONE_NAN}, ["train_images", "1 non-finite", "nan", "(1, 2, 0, 0)"]),
    ("inf", {"test_images": np.full((1, 3, 3), np.inf)}, ["test_images", "inf"]),
    ("above_one", {"train_images": np.full((2, 3, 3), 1.5)}, ["train_images", "1.5"]),
    ("negative", {"test_images": np.full((1, 3, 3), -0.25)}, ["test_images", "-0.25"]),
    ("float16_range", {"train_images": np.full((2, 3, 3), 2, np.float16)}, ["train_images", "2.0"]),
    ("bool", {"train_images": np.zeros((2, 3, 3), bool)}, ["train_images", "dtype bool"]),
    ("int64", {"train_images": np.zeros((2, 3, 3), np.int64)}, ["train_images", "dtype int64"]),
    ("uint16", {"test_images": np.zeros((1, 3, 3), np.uint16)}, ["test_images", "dtype uint16"]),
    ("complex", {"train_images": np.zeros((2, 3, 3), complex)}, ["train_images", "complex128"]),
    ("rank5", {"train_images": np.zeros((2, 3, 3, 1, 1))}, ["train_images", "(2, 3, 3, 1, 1)"]),
    ("rank2", {"train_images": np.zeros((2, 9))}, ["train_images", "shape (2, 9)"]),
    ("scalar", {"test_images": np.float64(0.5)}, ["test_images", "shape ()"]),
    ("empty", {"test_images": np.zeros((0, 3, 3))}, ["test_images", "(0, 3, 3, 1)"]),
    ("labels_float", {"train_labels": np.array([0.0, 1.0])}, ["train_labels", "dtype float64"]),
    ("labels_bool", {"train_labels": np.array([True, False])}, ["train_labels", "dtype bool"]),
    ("labels_long", {"test_labels": np.array([0, 1, 2])}, ["test_labels", "shape (3,)", "(1,)"]),
    ("labels_short", {"train_labels": np.array([4])}, ["train_labels", "shape (1,)", "(2,)"]),
    ("labels_2d", {"train_labels": np.zeros((2, 1), int)}, ["train_labels", "(2, 1)"]),
    ("labels_negative", {"test_labels": np.array([-1])}, ["test_labels", "-1"]),
    ("labels_huge", {"train_labels": np.array([0, 2**40])}, ["train_labels", "1099511627776"]),
    ("unknown_key", {"train_imgs": np.zeros((2, 3, 3))}, ["train_imgs"]),
    ("mismatch", {"test_images": np.zeros((1, 4, 3))}, ["(3, 3, 1)", "(4, 3, 1)"]),
]


def _save(tmp_path, name: str, arrays: dict) -> str:
    path = str(tmp_path / f"{name}.npz")
    np.savez(path, **{**GOOD, **arrays})
    return path


def _bad_files(tmp_path) -> dict[str, str]:
    """Files that are not readable npz files, by name."""
    good = _save(tmp_path, "good", {})
    raw = open(good, "rb").read()
    files = {}
    files["npy"] = str(tmp_path / "array.npy")
    np.save(files["npy"], np.zeros(3))
    files["truncated"] = str(tmp_path / "truncated.npz")
    open(files["truncated"], "wb").write(raw[: len(raw) // 2])
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    files["bad_crc"] = str(tmp_path / "bad_crc.npz")
    open(files["bad_crc"], "wb").write(bytes(flipped))
    compressed = str(tmp_path / "compressed.npz")
    rng = np.random.default_rng(0)
    np.savez_compressed(
        compressed, train_images=rng.random((50, 8, 8)), test_images=GOOD["test_images"]
    )
    broken = bytearray(open(compressed, "rb").read())
    broken[200] ^= 0xFF
    files["bad_deflate"] = str(tmp_path / "bad_deflate.npz")
    open(files["bad_deflate"], "wb").write(bytes(broken))
    files["pickled"] = str(tmp_path / "pickled.npz")
    np.savez(
        files["pickled"], train_images=np.array([None, 1], object), test_images=GOOD["test_images"]
    )
    files["directory"] = str(tmp_path / "directory.npz")
    os.mkdir(files["directory"])
    files["missing"] = str(tmp_path / "missing.npz")
    return files


def _one_line(error: Exception) -> str:
    message = str(error)
    assert message and "\n" not in message, message
    return message


@pytest.mark.parametrize(("name", "arrays", "expected"), BAD_ARRAYS, ids=[c[0] for c in BAD_ARRAYS])
def test_bad_arrays_are_one_line_naming_array_and_value(tmp_path, name, arrays, expected):
    path = _save(tmp_path, name, arrays)
    with pytest.raises(ValueError) as err:
        data.load_dataset("npz", data_dir=path)
    message = _one_line(err.value)
    assert path in message
    for part in expected:
        assert part in message, (part, message)


def test_unreadable_files_are_one_line_naming_the_file(tmp_path):
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(ValueError) as err:
            data.load_dataset("npz", data_dir=path)
        message = _one_line(err.value)
        assert path in message, (name, message)
    good = data.load_dataset("npz", data_dir=_save(tmp_path, "good", {}))
    assert good.train_images.shape == (2, 3, 3, 1)  # The same arrays, well formed, load.


def _tree_digest(root: str) -> str:
    h = hashlib.sha256()
    for directory, subdirs, files in sorted(os.walk(root)):
        subdirs.sort()
        for name in sorted(files) + [f"{d}/" for d in subdirs]:
            path = os.path.join(directory, name.rstrip("/"))
            h.update(os.path.relpath(path, root).encode() + b"\0")
            if os.path.isfile(path):
                h.update(open(path, "rb").read())
    return h.hexdigest()


def _train_error(capsys, path: str, workdir: str, *extra: str) -> str:
    argv = ["train", "--config", SMOKE, "--config.data.name=npz", f"--config.data.data_dir={path}"]
    code = cli.main([*argv, "--workdir", workdir, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("jaxvae train: error: "), err
    return err


def test_train_on_bad_npz_exits_2_and_leaves_the_workdir_alone(tmp_path, capsys):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("a previous run's notes\n")
    (existing / "sub").mkdir()
    (existing / "sub" / "data.bin").write_bytes(bytes(range(256)))
    before = _tree_digest(str(existing))
    cases = {
        name: (_save(tmp_path, name, arrays), expected) for name, arrays, expected in BAD_ARRAYS
    }
    cases.update({name: (path, []) for name, path in _bad_files(tmp_path).items()})
    for name, (path, expected) in cases.items():
        fresh = tmp_path / f"run_{name}"
        err = _train_error(capsys, path, str(fresh))
        assert all(part in err for part in expected), (name, err)
        assert not fresh.exists(), name
        _train_error(capsys, path, str(existing))
        assert _tree_digest(str(existing)) == before, name
    # A validation set as large as the training set is refused the same way.
    good = _save(tmp_path, "good", {})
    fresh = tmp_path / "run_validation"
    err = _train_error(capsys, good, str(fresh), "--config.data.validation_size=2")
    assert "validation_size=2" in err and not fresh.exists()
    err = _train_error(capsys, good, str(fresh), "--config.data.validation_size=-3")
    assert "data.validation_size=-3" in err and not fresh.exists()


def test_console_script_on_a_broken_npz_has_no_traceback(tmp_path):
    path = _bad_files(tmp_path)["truncated"]
    workdir = tmp_path / "run"
    exe = os.path.join(os.path.dirname(sys.executable), "jaxvae")
    argv = ["train", "--config", SMOKE, "--config.data.name=npz", f"--config.data.data_dir={path}"]
    proc = subprocess.run(
        [exe, *argv, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env=dict(os.environ, XLA_FLAGS=""),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert path in proc.stderr and not workdir.exists()
