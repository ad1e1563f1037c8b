"""Image folders (data.name=folder) and CelebA (celeb_a) end to end: a folder of made PNG/JPEG
images in class sub-folders with one corrupt file trains a conv VAE by one CLI command, the
decoded cache is read on the second start, the split follows the path hash, labels and pixels
match PIL applied here; CelebA goes through TFDS's own builder on made data; data.download
fails offline in one line."""

import dataclasses
import hashlib
import io
import json
import os
import shutil

import numpy as np
import PIL.Image
import pytest

from jaxvae import cli, plots
from jaxvae import data as data_lib
from jaxvae.data import folder
from tests import fake_tfds
from tests.conftest import CONFIGS

CLASSES = ("ant", "bee", "cow")
PER_CLASS = 100
SIZE = 16


def _image(rng, index: int) -> PIL.Image.Image:
    """A random image of varying size; every fifth one grey, the rest RGB."""
    height, width = 20 + index % 7, 24 + index % 5
    if index % 5 == 0:
        return PIL.Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L")
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def _make_folder(root: str, count: int = PER_CLASS, start: int = 0) -> None:
    rng = np.random.default_rng(start)
    for label, name in enumerate(CLASSES):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(start, start + count):
            ext = "png" if i % 2 else "jpg"
            _image(rng, i + label).save(os.path.join(root, name, f"img{i:03d}.{ext}"))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("folder") / "images")
    _make_folder(root)
    with open(os.path.join(root, "bee", "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this is not a PNG")
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not an image: ignored")
    return root


def _expected(root: str, classes=CLASSES, channels: int = 3, size: int = SIZE, fraction=0.1):
    """The dataset by an independent reading: PIL crop and resize, hashlib split, u order."""
    rows = []
    for label, name in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, name))):
            rel = f"{name}/{f}"
            u = int(hashlib.sha256(rel.encode()).hexdigest()[:16], 16) / 2**64
            try:
                with PIL.Image.open(os.path.join(root, rel)) as im:
                    im = im.convert("RGB" if channels == 3 else "L")
                    w, h = im.size
                    s = min(w, h)
                    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
                    im = im.crop(box).resize((size, size), PIL.Image.BILINEAR)
                    pixels = np.asarray(im).reshape(size, size, channels)
            except OSError:
                continue
            rows.append((u, pixels, label))
    rows.sort(key=lambda r: r[0])
    out = {}
    for split, keep in (("test", lambda u: u < fraction), ("train", lambda u: u >= fraction)):
        chosen = [r for r in rows if keep(r[0])]
        images = np.stack([r[1] for r in chosen]).astype(np.float32) / 255
        out[split] = images, np.array([r[2] for r in chosen], np.int32)
    return out


def test_a_folder_trains_by_one_command_and_the_cache_serves_the_second_start(
    image_dir, tmp_path, capfd, monkeypatch
):
    workdir = str(tmp_path / "run")
    rc = cli.main(
        [
            "train",
            "--config",
            os.path.join(CONFIGS, "logistic.py"),
            "--workdir",
            workdir,
            "--config.data.name=folder",
            f"--config.data.data_dir={image_dir}",
            f"--config.data.image_size={SIZE}",
            "--config.data.stream=always",  # the training split decoded file by file, no cache
            "--config.model.channels=8",  # one stride-2 conv level: 16 -> 8
            "--config.model.latent_dim=4",
            "--config.model.num_mixtures=1",
            "--config.train.batch_size=32",
            "--config.train.epochs=1",
            "--config.train.progress=false",
            "--config.eval.batch_size=64",
            "--config.eval.num_pictures=4",
        ]
    )
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err
    bad = os.path.join(image_dir, "bee", "broken.png")
    warnings = [line for line in err.splitlines() if "broken.png" in line]
    assert warnings == [
        f"jaxvae: warning: skipped unreadable image {bad!r} (cannot identify image file {bad!r})"
    ], err
    expected = _expected(image_dir)
    n_train, n_test = len(expected["train"][1]), len(expected["test"][1])
    assert n_train + n_test == 3 * PER_CLASS and 10 < n_test < 60
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    protocol = summary["data_protocol"]
    assert (protocol["num_train"], protocol["num_test"]) == (n_train, n_test)
    assert "streamed from its image files, each decoded when read" in protocol["train"]
    assert summary["steps"] == n_train // 32 and np.isfinite(summary["test_nelbo"])
    with PIL.Image.open(os.path.join(workdir, "samples.png")) as im:
        assert im.mode == "RGB"

    # The streamed run wrote no cache; a start in memory decodes the folder into it, and the
    # next start reads the cache, never decoded again, the same arrays.
    cache = os.path.join(image_dir, folder.CACHE_NAME)
    assert not os.path.exists(cache)
    spec = {"name": "folder", "data_dir": image_dir, "image_size": SIZE}
    data_lib.load_from_config(spec)
    capfd.readouterr()
    (key,) = os.listdir(cache)
    stamps = {f: os.stat(os.path.join(cache, key, f)).st_mtime_ns for f in folder.CACHE_FILES}

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder, "_decode", no_decoding)
    ds = data_lib.load_from_config(spec)
    assert [line for line in capfd.readouterr().err.splitlines() if "broken" in line] == warnings
    assert stamps == {f: os.stat(os.path.join(cache, key, f)).st_mtime_ns for f in stamps}
    assert ds.class_names == CLASSES and ds.image_shape == (SIZE, SIZE, 3)
    for split in ("train", "test"):
        images, labels = expected[split]
        np.testing.assert_array_equal(getattr(ds, f"{split}_labels"), labels)
        got = data_lib.to_unit_float(getattr(ds, f"{split}_images"))
        np.testing.assert_allclose(got, images, atol=1e-6)
    assert ds.train_images.dtype == np.uint8  # the training images stay uint8
    lazy = data_lib.load_from_config(spec, lazy_train=True)
    np.testing.assert_array_equal(
        np.asarray(lazy.train_images), data_lib.to_unit_float(ds.train_images)
    )
    np.testing.assert_array_equal(np.asarray(lazy.train_labels), ds.train_labels)
    # Other options are another cache entry, decoded anew (here: grey, by data.channels=1).
    monkeypatch.undo()
    grey = data_lib.load_from_config({**spec, "channels": 1, "limit_test": 5})
    np.testing.assert_allclose(
        grey.test_images, _expected(image_dir, channels=1)["test"][0][:5], atol=1e-6
    )
    assert len(os.listdir(cache)) == 2


def test_a_big_folder_streams_each_file_decoded_when_read(tmp_path, monkeypatch):
    """A folder above ``data.stream_threshold_mb`` (``stream="auto"``) and without a cache
    streams: loading it decodes the test and validation images only, a batch decodes its own
    files, no cache is written; its images, labels and order are those of the folder read
    through its cache (``stream="never"``)."""
    from jaxvae import specs, streaming
    from jaxvae.data import folder_records

    root = str(tmp_path / "images")
    _make_folder(root, count=12)
    decoded = []
    decode_one = folder_records.decode_one
    monkeypatch.setattr(
        folder_records, "decode_one", lambda path, *a: decoded.append(path) or decode_one(path, *a)
    )
    spec = specs.DataSpec(
        name="folder", data_dir=root, image_size=8, validation_size=3, stream_threshold_mb=0.01
    )
    source = streaming.open_train_source(spec, seed=0)  # 33 x 8x8x3 float32 = 0.025 MiB
    cache = os.path.join(root, folder.CACHE_NAME)
    dataset = source.dataset
    n_test = len(dataset.test_labels)
    assert source.num_train == 36 - n_test - 3 == len(dataset.train_labels)
    assert len(decoded) == n_test + 3 and not os.path.exists(cache)  # test and validation
    batch = [2, 0, 7]
    records = source.records.__getitems__(batch)
    assert len(decoded) == n_test + 3 + len(batch)
    assert "streamed from its image files" in dataset.protocol["train"]

    in_memory = data_lib.load_from_config(dataclasses.replace(spec, stream="never"))
    assert os.path.exists(cache)
    for split in ("test", "validation"):
        for kind in ("images", "labels"):
            name = f"{split}_{kind}"
            np.testing.assert_array_equal(getattr(dataset, name), getattr(in_memory, name))
    np.testing.assert_array_equal(
        np.stack([r["image"] for r in records]), in_memory.train_images[batch]
    )
    assert [r["label"] for r in records] == in_memory.train_labels[batch].tolist()
    np.testing.assert_array_equal(
        np.asarray(dataset.train_images), data_lib.to_unit_float(in_memory.train_images)
    )
    np.testing.assert_array_equal(np.asarray(dataset.train_labels), in_memory.train_labels)
    expected = _expected(root, size=8, fraction=0.1)
    np.testing.assert_allclose(in_memory.test_images, expected["test"][0], atol=1e-6)


def test_a_flat_folder_has_no_labels_and_adding_files_moves_no_other(tmp_path):
    root = str(tmp_path / "flat")
    os.makedirs(root)
    rng = np.random.default_rng(7)
    for i in range(40):  # mostly grey: the majority rule makes the dataset grey
        image = _image(rng, 5 * i if i % 4 else 1)
        image.save(os.path.join(root, f"{i:02d}.png"))
    options = data_lib.SourceRequest(
        image_size=8, test_fraction=0.25, cache_dir=str(tmp_path / "c")
    )
    before = data_lib.load_dataset("folder", data_dir=root, options=options)
    assert before.image_shape == (8, 8, 1) and before.class_names == ()
    assert not before.train_labels.any() and not before.test_labels.any()
    shutil.copytree(root, str(tmp_path / "flat_copy"))  # the same names elsewhere: the same split
    for i in range(40, 60):
        _image(rng, 5 * i).save(os.path.join(root, f"{i:02d}.png"))
    after = data_lib.load_dataset("folder", data_dir=root, options=options)
    assert len(after.train_labels) + len(after.test_labels) == 60
    for split in ("train", "test"):
        old = {a.tobytes() for a in getattr(before, f"{split}_images")}
        new = {a.tobytes() for a in getattr(after, f"{split}_images")}
        assert old <= new, split
    copy = data_lib.load_dataset("folder", data_dir=str(tmp_path / "flat_copy"), options=options)
    np.testing.assert_array_equal(copy.test_images, before.test_images)


def test_folder_mistakes_are_one_line(tmp_path, capfd):
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad, message in (
        (str(tmp_path / "missing"), "is not a directory"),
        (str(empty), "holds no image"),
    ):
        rc = cli.main(
            [
                "train",
                "--config",
                os.path.join(CONFIGS, "smoke.py"),
                "--workdir",
                str(tmp_path / "run"),
                "--config.data.name=folder",
                f"--config.data.data_dir={bad}",
            ]
        )
        lines = capfd.readouterr().err.strip().splitlines()
        assert rc != 0 and len(lines) == 1 and message in lines[0], lines


@pytest.fixture(scope="module")
def celeb_a_dir(tmp_path_factory):
    rng = np.random.default_rng(3)
    images = {
        split: rng.integers(0, 256, (n, 218, 178, 3), dtype=np.uint8)
        for split, n in (("train", 40), ("validation", 2), ("test", 6))
    }
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    files = fake_tfds.prepare_celeb_a(data_dir, str(tmp_path_factory.mktemp("dl")), images)
    return data_dir, files


def test_celeb_a_is_cropped_148_and_resized_64_and_streams(celeb_a_dir):
    data_dir, files = celeb_a_dir
    ds = data_lib.load_dataset("celeb_a", tfds_data_dir=data_dir, validation_size=4)
    assert ds.image_shape == (64, 64, 3)
    assert (len(ds.train_labels), len(ds.validation_labels), len(ds.test_labels)) == (36, 4, 6)
    assert not ds.test_labels.any() and "centre crop 148" in ds.protocol["source"]
    # Each test image is one of the made test JPEGs, decoded, cropped and resized by PIL here.
    references = {}
    for name, blob in files.items():
        if name.startswith("2"):  # the test split's file names
            with PIL.Image.open(io.BytesIO(blob)) as im:
                face = im.convert("RGB").crop(
                    (15, 35, 163, 183)
                )  # (178 - 148) / 2, (218 - 148) / 2
                references[name] = np.asarray(face.resize((64, 64), PIL.Image.BILINEAR))
    got = np.rint(ds.test_images * 255).astype(np.uint8)
    matched = sorted(n for image in got for n, r in references.items() if np.array_equal(image, r))
    assert matched == sorted(references)

    # celeba64.py: the logistic likelihood; its training split streams, read record by record.
    from jaxvae import config as config_lib
    from jaxvae import streaming

    config = config_lib.load_config_file(os.path.join(CONFIGS, "celeba64.py"))
    config_lib.apply_overrides(config, [f"data.tfds_data_dir={data_dir}", "data.stream=always"])
    assert config.model.likelihood == "logistic_mixture"
    specs = config_lib.validate(config)
    source = streaming.open_train_source(specs.data, config.seed)
    assert source.num_train == 40
    assert "streamed from the TFDS data source" in source.dataset.protocol["train"]
    eager = data_lib.load_from_config(specs.data)
    streamed = source.records.__getitems__(list(range(40)))
    np.testing.assert_array_equal(np.stack([r["image"] for r in streamed]), eager.train_images)


def test_celeba64_trains_evaluates_and_samples_on_made_celeb_a(celeb_a_dir, tmp_path, capfd):
    """The celeba64 config (its network shrunk to a one-layer MLP: a conv net's compilation
    takes most of a minute on a loaded 2-core machine) trains an epoch of the made CelebA through
    TFDS's builder (on the device: the test above checks the streamed records); ``jaxvae eval``
    gives the run's own test figures back (the same batches and keys) with an NLL bound, and
    ``jaxvae sample`` draws 64x64 RGB."""
    data_dir, _ = celeb_a_dir
    workdir = str(tmp_path / "celeba")
    args = ["train", "--config", "celeba64", "--workdir", workdir]
    args += [f"--config.data.tfds_data_dir={data_dir}"]
    args += ["--config.model.architecture=mlp", "--config.model.hidden=16"]
    args += ["--config.model.latent_dim=4"]
    args += ["--config.model.num_mixtures=1", "--config.train.batch_size=8"]
    args += ["--config.train.epochs=1", "--config.train.progress=false"]
    args += ["--config.eval.batch_size=8", "--config.eval.num_pictures=4"]
    assert cli.main(args) == 0, capfd.readouterr().err
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 40 // 8 and np.isfinite(summary["test_nelbo"])
    protocol = summary["data_protocol"]
    assert "centre crop 148" in protocol["source"] and protocol["num_test"] == 6
    assert cli.main(["eval", "--workdir", workdir, "--iwae-k", "3"]) == 0
    with open(os.path.join(workdir, "eval.json")) as f:
        evaluated = json.load(f)
    assert evaluated["num_examples"] == 6 and evaluated["step"] == 5
    np.testing.assert_allclose(evaluated["test_nelbo"], summary["test_nelbo"], rtol=1e-6)
    assert np.isfinite(evaluated["test_nll"]) and evaluated["test_bpd_nll"] > 0
    out = str(tmp_path / "faces.png")
    assert cli.main(["sample", "--workdir", workdir, "--num", "4", "--out", out]) == 0
    assert plots.read_grid(out).shape == plots.grid(np.zeros((4, 64, 64, 3)), 4).shape  # RGB
    assert "Traceback" not in capfd.readouterr().err


def test_download_is_opt_in_and_fails_offline_in_one_line(tmp_path, capfd, monkeypatch):
    from tensorflow_datasets.core.download import downloader

    base = [
        "train",
        "--config",
        os.path.join(CONFIGS, "smoke.py"),
        "--workdir",
        str(tmp_path / "r"),
        "--config.data.name=mnist",
        f"--config.data.tfds_data_dir={tmp_path / 'tfds'}",
    ]
    assert cli.main(base) == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert "'mnist' is not prepared" in line and "--config.data.download=true" in line
    # No network: every connection goes to a proxy that refuses it (and TFDS does not retry).
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    assert cli.main([*base, "--config.data.download=true"]) == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(
        "jaxvae train: error: Could not download and prepare TFDS dataset 'mnist'"
    ), line
