"""Image grids written as PNG with Pillow (what goes into them: :mod:`jaxvae.pictures`)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def grid(images: np.ndarray, ncols: int, *, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` images in [0, 1] into one uint8 ``[rows*(H+pad), ...]`` picture."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    nrows = -(-n // ncols)
    out = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    out = np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
    return (out * 255 + 0.5).astype(np.uint8)


def save_grid(path: str, images: np.ndarray, ncols: int) -> None:
    """Writes :func:`grid` of ``images`` as a PNG."""
    pic = grid(images, ncols)
    Image.fromarray(pic[..., 0] if pic.shape[-1] == 1 else pic).save(path)
