"""Stand-ins for stock TFDS datasets, for tests that read them with no download and no TensorFlow.

`prepare(name, data_dir, arrays)` writes a dataset that TFDS's own builder `name` finds prepared in
`data_dir`: the same name, version and features (`mnist`, `binarized_mnist`, `cifar10`), the given
uint8 images PNG-encoded, array_record files. The builder class is not registered (TFDS already
has one of that name)."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

# The features of the stock builders (binary: its pixels are 0 or 1).
SPECS = {
    "mnist": dict(shape=(28, 28, 1), labels=True, ids=False, binary=False),
    "binarized_mnist": dict(shape=(28, 28, 1), labels=False, ids=False, binary=True),
    "cifar10": dict(shape=(32, 32, 3), labels=True, ids=True, binary=False),
}
RANDOM_SIZES = {"train": 23, "test": 9}


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "png")
    return buffer.getvalue()


def prepare(name: str, data_dir: str, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Prepares `name` in `data_dir` from `arrays`: split -> (uint8 images [N, H, W, C], labels [N])
    (the labels are ignored for a dataset without them)."""
    spec = SPECS[name]
    for split, (images, _) in arrays.items():
        if images.dtype != np.uint8 or images.shape[1:] != spec["shape"]:
            raise ValueError(f"{name} {split}: images {images.dtype}{images.shape}")
    dataset_name = name

    class Fake(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = dataset_name
        VERSION = tfds.builder_cls(dataset_name).VERSION

        def _info(self):
            features = {"image": tfds.features.Image(shape=spec["shape"])}
            if spec["labels"]:
                features["label"] = tfds.features.ClassLabel(num_classes=10)
            if spec["ids"]:
                features["id"] = tfds.features.Text()
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(features),
                supervised_keys=("image", "label") if spec["labels"] else None,
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(split) for split in arrays}

        def _generate_examples(self, split):
            images, labels = arrays[split]
            for i, image in enumerate(images):
                example = {"image": _png(image)}
                if spec["labels"]:
                    example["label"] = int(labels[i])
                if spec["ids"]:
                    example["id"] = f"{split}_{i:05d}"
                yield i, example

    builder = Fake(data_dir=data_dir, file_format="array_record")
    assert builder.name == name
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )


def random_arrays(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Uniform random images (0 or 1 for a binary dataset), 23 training and 9 test."""
    spec = SPECS[name]
    arrays = {}
    for seed, (split, count) in enumerate(RANDOM_SIZES.items()):
        rng = np.random.default_rng(seed)
        high = 2 if spec["binary"] else 256
        images = rng.integers(0, high, (count, *spec["shape"]), dtype=np.uint8)
        labels = np.arange(count, dtype=np.int32) * 7 % 10 if spec["labels"] else np.zeros(count)
        arrays[split] = (images, labels)
    return arrays


def prepare_random(name: str, data_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Prepares `name` from `random_arrays(name)`; returns the arrays."""
    arrays = random_arrays(name)
    prepare(name, data_dir, arrays)
    return arrays


# The ground-truth datasets: one 'train' split, an image and a ClassLabel `label_<factor>` and a
# float `value_<factor>` per factor, as TFDS's dsprites (default version 2.0.0) and shapes3d.
GROUND_TRUTH_SPECS = {
    "dsprites": dict(
        shape=(64, 64, 1),
        factors=dict(shape=3, scale=6, orientation=40, x_position=32, y_position=32),
    ),
    "shapes3d": dict(
        shape=(64, 64, 3),
        factors=dict(floor_hue=10, wall_hue=10, object_hue=10, scale=8, shape=4, orientation=15),
    ),
}


def prepare_ground_truth(name: str, data_dir: str, images: np.ndarray, factors: np.ndarray) -> None:
    """Prepares `name` (dsprites or shapes3d) in `data_dir`: its 'train' split holds `images`
    (uint8 [N, H, W, C]) with `factors` (int [N, F], the spec's factor order). Like TFDS's own
    builders, this one lets TFDS shuffle the records, so their order is not the given one."""
    spec = GROUND_TRUTH_SPECS[name]
    names = tuple(spec["factors"])
    if images.dtype != np.uint8 or images.shape[1:] != spec["shape"]:
        raise ValueError(f"{name}: images {images.dtype}{images.shape}")
    if factors.shape != (len(images), len(names)):
        raise ValueError(f"{name}: factors {factors.shape}")
    dataset_name = name

    class Fake(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = dataset_name
        VERSION = tfds.builder_cls(dataset_name).VERSION

        def _info(self):
            features = {"image": tfds.features.Image(shape=spec["shape"])}
            for factor, size in spec["factors"].items():
                features[f"label_{factor}"] = tfds.features.ClassLabel(num_classes=size)
            for factor in spec["factors"]:
                features[f"value_{factor}"] = tfds.features.Tensor(shape=[], dtype=np.float32)
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features)
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, image in enumerate(images):
                example = {"image": _png(image)}
                for j, factor in enumerate(names):
                    example[f"label_{factor}"] = int(factors[i, j])
                    example[f"value_{factor}"] = np.float32(factors[i, j]) / 2
                yield i, example

    builder = Fake(data_dir=data_dir, file_format="array_record")
    assert builder.name == name
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, "jpeg", quality=95)
    return buffer.getvalue()


def prepare_celeb_a(data_dir: str, tmp_dir: str, images: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Prepares `celeb_a` in `data_dir` through TFDS's own builder: its `_info` (the features:
    a 218x178x3 JPEG image, 40 attributes, landmarks, identity) and its `_generate_examples`,
    fed the files a download gives (the partition, attribute, landmark and identity lists,
    written to `tmp_dir`) and the JPEG-encoded `images` (split -> uint8 [N, 218, 178, 3]).
    Returns the JPEG bytes of every file name, in TFDS's order (sorted names per split)."""
    import os
    import sys

    real = tfds.builder_cls("celeb_a")
    module = sys.modules[real.__module__]
    split_ids = {"train": 0, "validation": 1, "test": 2}
    files, partition = {}, []
    for split, array in images.items():
        for i, image in enumerate(array):
            name = f"{split_ids[split]}{i:05d}.jpg"
            files[name] = _jpeg(image)
            partition.append(f"{name} {split_ids[split]}")
    names = sorted(files)
    attrs, marks = module.ATTR_HEADINGS, module.LANDMARK_HEADINGS

    def table(headings, value):
        rows = [" ".join([n, *(str(value(n, j)) for j in range(len(headings)))]) for n in names]
        return "\n".join([str(len(names)), " ".join(headings), *rows]) + "\n"

    texts = {
        "list_eval_partition": "\n".join(partition) + "\n",
        "list_attr_celeba": table(attrs, lambda n, j: 1 if (hash(n) + j) % 2 else -1),
        "landmarks_celeba": table(marks, lambda n, j: 70 + j),
        "identity_celeba": "\n".join(f"{n} {i + 1}" for i, n in enumerate(names)) + "\n",
    }
    downloaded = {}
    for key, text in texts.items():
        downloaded[key] = os.path.join(tmp_dir, f"{key}.txt")
        with open(downloaded[key], "w") as f:
            f.write(text)

    class Fake(real, skip_registration=True):
        name = "celeb_a"

        def _split_generators(self, dl_manager):
            del dl_manager
            blobs = {n: io.BytesIO(b) for n, b in files.items()}
            kwargs = dict(downloaded_dirs=downloaded, downloaded_images=blobs)
            return [
                tfds.core.SplitGenerator(name=split, gen_kwargs=dict(file_id=i, **kwargs))
                for split, i in split_ids.items()
                if split in images
            ]

    builder = Fake(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return {n: files[n] for n in names}
