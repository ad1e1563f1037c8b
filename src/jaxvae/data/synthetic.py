"""A small deterministic dataset of blobs and strokes, for tests and examples that need no files."""

from __future__ import annotations

import numpy as np

from jaxvae.data.base import Dataset


def synthetic_dataset(
    num_train: int = 512,
    num_test: int = 128,
    shape: tuple[int, int, int] = (28, 28, 1),
    seed: int = 0,
) -> Dataset:
    """A small deterministic dataset of blobs and strokes, for tests.

    Example ``i`` has label ``i % 10``; its class sets where a soft blob sits and the angle of a
    stroke through the centre, with small seeded jitter. Colour images get class-dependent
    channel weights.

    Args:
      num_train: Number of training examples (>= 1).
      num_test: Number of test examples (>= 1).
      shape: ``(H, W, C)`` of each image; H and W at least 4.
      seed: Seed of the jitter.

    Returns:
      A :class:`Dataset` named ``"synthetic"`` with 10 classes and images in ``[0, 1]``.

    Raises:
      ValueError: For non-positive sizes or a bad shape.
    """
    for arg, value in (("num_train", num_train), ("num_test", num_test)):
        if int(value) != value or value < 1:
            raise ValueError(f"{arg}={value!r}; expected an integer >= 1.")
    if len(shape) != 3 or min(shape[:2]) < 4 or shape[2] < 1:
        raise ValueError(f"shape={shape!r}; expected (H, W, C) with H, W >= 4 and C >= 1.")
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    train_images, train_labels = _synthetic_split(int(num_train), tuple(shape), train_rng)
    test_images, test_labels = _synthetic_split(int(num_test), tuple(shape), test_rng)
    return Dataset(
        name="synthetic",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=tuple(f"class_{k}" for k in range(10)),
    )


def _synthetic_split(
    count: int, shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    height, width, channels = shape
    labels = np.arange(count, dtype=np.int32) % 10
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[None, :, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, None, :]
    # Blob: centred on a circle at the class's angle, with jittered position and width.
    blob_angle = 2.0 * np.pi * labels / 10.0
    cy = (0.5 + 0.25 * np.sin(blob_angle) + rng.normal(0, 0.03, count))[:, None, None]
    cx = (0.5 + 0.25 * np.cos(blob_angle) + rng.normal(0, 0.03, count))[:, None, None]
    spread = (0.08 + 0.03 * rng.random(count))[:, None, None]
    blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2.0 * spread**2))
    # Stroke: a segment through the centre at the class's angle, slightly rotated.
    stroke_angle = (np.pi * labels / 10.0 + rng.normal(0, 0.05, count))[:, None, None]
    along = (xs - 0.5) * np.cos(stroke_angle) + (ys - 0.5) * np.sin(stroke_angle)
    across = (xs - 0.5) * np.sin(stroke_angle) - (ys - 0.5) * np.cos(stroke_angle)
    stroke = np.exp(-(across**2) / (2.0 * 0.04**2)) * (np.abs(along) < 0.35)
    gray = np.clip(np.maximum(blob, 0.8 * stroke), 0.0, 1.0)
    # Colour: class-dependent channel weights in [0.4, 1].
    phases = 2.0 * np.pi * np.arange(channels) / max(channels, 1)
    weights = 0.7 + 0.3 * np.cos(blob_angle[:, None] + phases[None, :])
    weights = weights if channels > 1 else np.ones((count, 1))
    images = gray[..., None] * weights[:, None, None, :]
    return images.astype(np.float32), labels
