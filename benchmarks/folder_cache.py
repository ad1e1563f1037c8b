"""Times the first (decoding) and the second (cached) load of an image folder: docs/data.md.

Usage: PYTHONPATH=src python benchmarks/folder_cache.py DIR  (DIR is made: 3 x 1,000 JPEGs, 160x120)."""

import os
import sys
import time

import numpy as np
import PIL.Image

from jaxvae import data

root = sys.argv[1]
rng = np.random.default_rng(0)
for c in ("a", "b", "c"):
    os.makedirs(os.path.join(root, c), exist_ok=True)
    for i in range(1000):
        pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(os.path.join(root, c, f"{i:04d}.jpg"), quality=90)
for start in ("first", "second"):
    t = time.perf_counter()
    ds = data.load_dataset("folder", data_dir=root, options=data.SourceRequest(image_size=64))
    print(f"{start}: {time.perf_counter() - t:.2f} s, {len(ds.train_labels)} train images")
