"""An offline dSprites: binary 64x64 sprites rendered with numpy on dSprites' factor grid.

dSprites (Matthey et al. 2017, github.com/deepmind/dsprites-dataset) holds one 64x64 binary image
of a white sprite on black for each combination of five factors (its sixth, colour, is always
white), stored in mixed-radix order, the last factor (y position) fastest:

=============  ====  =============================================================
factor         size  values (``latents_possible_values`` of the original's npz)
=============  ====  =============================================================
shape          3     square, ellipse, heart
scale          6     ``linspace(0.5, 1, 6)``
orientation    40    ``linspace(0, 2 pi, 40)``: steps of 2 pi / 39, both 0 and 2 pi
x_position     32    ``linspace(0, 1, 32)``
y_position     32    ``linspace(0, 1, 32)``
=============  ====  =============================================================

737,280 images in all. :func:`render` draws any of them here, deterministically (no randomness),
without the original file; :class:`ProceduralDSprites` is the ground-truth interface over it and
:func:`load_dsprites_procedural` a training :class:`~jaxvae.data.Dataset`.

Geometry (pixel ``(row, col)`` has its centre at ``(row, col)``, rows downward):

* the sprite's centre (its centre of mass, for every shape) is at column ``16 + 31 * x_position``
  and row ``16 + 31 * y_position``: pixels 16..47, one pixel per position step, symmetric about
  the canvas centre 31.5, so every sprite lies wholly inside the canvas;
* its size is ``h = 10 * scale`` pixels: the square has half-side ``h`` (side ``2h + 1`` pixels
  at orientation 0); the ellipse semi-axes ``h`` and ``h / 2``, its long axis horizontal at
  orientation 0; the heart is the region ``(x^2 + y^2 - 1)^3 <= x^2 y^3`` scaled to half-width
  ``h``, pointing down at orientation 0;
* orientation ``t`` rotates the sprite counter-clockwise (as seen) by ``t`` about its centre;
  ``t = 2 pi`` is drawn as ``t = 0``, so orientations 0 and 39 give the same image, as in the
  original;
* a pixel is 1 when its centre lies in the rotated, scaled, placed shape (no anti-aliasing).

Differences from the original renderings. dSprites' README documents the factor values and the
order, not the geometry, so the sizes, the position range, the ellipse's aspect and the heart's
outline above are this module's choices, not measured from the original images; the original's
sprites are drawn with a different rasterizer (their edges differ by a pixel here and there). A
model trained here is not comparable pixel-for-pixel with one trained on the original; scores of
the disentanglement metrics are comparable in kind (same factors, same grid, same symmetries:
the square repeats every 90 degrees, the ellipse every 180, which are not on the grid, and the
orientation grid holds 0 and 2 pi), not in value.

Rendering cost: the 720 sprites (shape x scale x orientation) are drawn once, in numpy float64
(0.4 s), and every image is a 64x64 window of its sprite's 95x95 canvas, since a position step
moves the sprite by one whole pixel: 8 ms per 10,000 random images, 8 s for all 737,280 with
their 3 GB allocated (one core of a 2-core x86 machine shared with two other jobs; drawing each
image in place took 1.7 to 2.1 s per 10,000, and the windows give the same pixels). The whole
set takes 3 GB as uint8 (12 GB as float32): every split stays uint8 (0 and 255, read as 0.0
and 1.0), in memory and on the devices, and on a CPU the devices use the host's training split in
place (:func:`~jaxvae.data.base.aligned_empty`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from jaxvae.data.base import (
    Dataset,
    Source,
    SourceRequest,
    aligned_empty,
    register,
)
from jaxvae.data.ground_truth import (
    check_factors,
    index_to_factors,
    split_index_sets,
)

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "x_position", "y_position")
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_EXAMPLES = math.prod(FACTOR_SIZES)  # 737,280
IMAGE_SHAPE = (64, 64, 1)

SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)

# The held-out test split of load_dsprites_procedural: the last DEFAULT_NUM_TEST (10%) of
# np.random.default_rng(SPLIT_SEED).permutation(NUM_EXAMPLES).
SPLIT_SEED = 0
DEFAULT_NUM_TEST = NUM_EXAMPLES // 10

_UNIT_PX = 10.0  # h at scale 1, in pixels
_FIRST_CENTRE_PX = 16  # sprite centre at position 0; position index i puts it at 16 + i
_ELLIPSE_ASPECT = 0.5
# The heart (x^2 + y^2 - 1)^3 <= x^2 y^3 (y up) spans |x| <= 1.139 and has its centroid at
# y = 0.2935 (measured on a 3001^2 grid over [-1.5, 1.5]^2).
_HEART_HALF_WIDTH = 1.139
_HEART_CENTROID_Y = 0.2935
_CHUNK = 1024


def render(factors: np.ndarray) -> np.ndarray:
    """Renders dSprites images from their factor indices.

    Args:
      factors: Integers ``[N, 5]``: shape, scale, orientation, x position, y position indices,
        each in ``[0, FACTOR_SIZES[j])``.

    Returns:
      uint8 ``[N, 64, 64, 1]`` with values 0 and 1 (as the original's ``imgs``).

    Raises:
      ValueError: If ``factors`` is not ``[N, 5]`` integers within :data:`FACTOR_SIZES`.
    """
    table = check_factors(factors, FACTOR_SIZES, "dSprites factors")
    images = aligned_empty((table.shape[0], *IMAGE_SHAPE), np.uint8)  # (a CPU device keeps it)
    windows = _windows()
    for start in range(0, table.shape[0], _CHUNK):
        shape, scale, orientation, x_pos, y_pos = table[start : start + _CHUNK].T
        picked = windows[shape, scale, orientation, _MAX_SHIFT - y_pos, _MAX_SHIFT - x_pos]
        images[start : start + _CHUNK, ..., 0] = picked
    return images


# A position index moves the sprite by whole pixels, so every image is a 64x64 window of its
# (shape, scale, orientation)'s sprite drawn once on a larger canvas, on the very pixel offsets
# (integers, exact in float64) that drawing it in place would use: the same pixels.
_MAX_SHIFT = FACTOR_SIZES[3] - 1  # 31: the largest shift in x (and in y)
_CANVAS = IMAGE_SHAPE[0] + _MAX_SHIFT  # 95


@functools.cache
def _windows() -> np.ndarray:
    """A read-only view ``[3, 6, 40, 32, 32, 64, 64]`` (bool): ``[s, c, o, i, j]`` is the
    image of shape ``s``, scale ``c``, orientation ``o`` at x position ``31 - j`` and y position
    ``31 - i``. Built once (720 sprites on a 95x95 canvas, 6.5 MB)."""
    grid = np.stack(np.meshgrid(*map(np.arange, FACTOR_SIZES[:3]), indexing="ij"), -1)
    sprites = _draw(grid.reshape(-1, 3)).reshape(*FACTOR_SIZES[:3], _CANVAS, _CANVAS)
    windows = np.lib.stride_tricks.sliding_window_view(sprites, IMAGE_SHAPE[:2], axis=(3, 4))
    windows.flags.writeable = False
    return windows


def _draw(factors: np.ndarray) -> np.ndarray:
    """bool ``[N, 95, 95]``: each (shape, scale, orientation) row's sprite on the canvas whose
    pixel ``[a, b]`` lies ``b - 47`` right of and ``47 - a`` above the sprite's centre (so the
    window at row ``31 - y``, column ``31 - x`` is the image at positions ``x``, ``y``: a pixel
    ``(r, p)`` of that image lies ``p - 16 - x`` right of and ``16 + y - r`` above the centre)."""
    shape, scale, orientation = factors.T
    pixels, centre = np.arange(_CANVAS, dtype=np.float64), float(_FIRST_CENTRE_PX + _MAX_SHIFT)
    # Offsets of each pixel centre from the sprite centre: x right, y up.
    dx = (pixels - centre)[None, None, :]
    dy = (centre - pixels)[None, :, None]
    theta = np.mod(ORIENTATIONS[orientation], 2.0 * np.pi)[:, None, None]
    h = (_UNIT_PX * SCALES[scale])[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    # Into the sprite's frame: rotate by -theta, divide by the size.
    u = (cos * dx + sin * dy) / h
    v = (cos * dy - sin * dx) / h
    inside = np.zeros(u.shape, bool)
    for k, fn in enumerate((_square, _ellipse, _heart)):
        chosen = shape == k
        if chosen.any():
            inside[chosen] = fn(u[chosen], v[chosen])
    return inside


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 1.0


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 + (v / _ELLIPSE_ASPECT) ** 2 <= 1.0


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x = u * _HEART_HALF_WIDTH
    y = v * _HEART_HALF_WIDTH + _HEART_CENTROID_Y
    return (x**2 + y**2 - 1.0) ** 3 <= x**2 * y**3


@dataclasses.dataclass(frozen=True)
class ProceduralDSprites:
    """The ground-truth interface (:class:`~jaxvae.data.GroundTruthData`) over :func:`render`.

    Attributes:
      factor_sizes: :data:`FACTOR_SIZES`.
      factor_names: :data:`FACTOR_NAMES`.
    """

    factor_sizes: tuple[int, ...] = FACTOR_SIZES
    factor_names: tuple[str, ...] = FACTOR_NAMES

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """``num`` combinations, each factor uniform and independent: int32 ``[num, 5]``."""
        return rng.integers(0, self.factor_sizes, size=(int(num), len(self.factor_sizes))).astype(
            np.int32
        )

    def distinct_combinations(self) -> np.ndarray:
        """Every index of the grid: each combination has one rendering, drawn without ``rng``."""
        return np.arange(NUM_EXAMPLES, dtype=np.int64)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The rendering of each combination: float32 ``[num, 64, 64, 1]`` of 0 and 1.

        ``rng`` is unused: the images are deterministic.
        """
        del rng
        return render(factors).astype(np.float32)


def load_dsprites_procedural(request: SourceRequest) -> Dataset:
    """The procedural dSprites as a training :class:`~jaxvae.data.Dataset`, rendering only what
    is kept.

    The splits, by mixed-radix index: ``perm = np.random.default_rng(SPLIT_SEED).permutation(
    737280)``; test is ``perm[-DEFAULT_NUM_TEST:]`` (10%, 73,728), train the rest, both in
    permuted order (see :func:`~jaxvae.data.ground_truth.split_indices`); validation is the last
    ``validation_size`` of train, then ``limit_train`` keeps the first of the remaining train and
    ``limit_test`` the first of test. Labels are the shape factor (``class_names`` :data:`SHAPES`).

    Args:
      request: ``limit_train`` and ``limit_test`` (if positive, keep only the first examples of
        the split), ``validation_size`` (examples held out of the end of the training split).

    Returns:
      A Dataset of images ``[N, 64, 64, 1]`` with factors, every split uint8 0/255 (read as 0
      and 1, :func:`~jaxvae.data.to_unit_float`).

    Raises:
      ValueError: If ``validation_size`` is out of range.
    """
    splits = split_index_sets(
        NUM_EXAMPLES,
        DEFAULT_NUM_TEST,
        SPLIT_SEED,
        validation_size=request.validation_size,
        limit_train=request.limit_train,
        limit_test=request.limit_test,
        what="training examples of dsprites_procedural",
    )
    arrays = {}
    for split, index in splits.items():
        factors = index_to_factors(index, FACTOR_SIZES)
        images = render(factors)
        np.multiply(images, 255, out=images)  # 0/255, read as 0.0 and 1.0: every split uint8
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = factors[:, 0].copy()
        arrays[f"{split}_factors"] = factors
    return Dataset(
        name="dsprites_procedural",
        class_names=SHAPES,
        factor_names=FACTOR_NAMES,
        factor_sizes=FACTOR_SIZES,
        **arrays,
    )


register(
    "dsprites_procedural",
    Source(load_dsprites_procedural, split="combinations (mixed-radix indices)"),
)
