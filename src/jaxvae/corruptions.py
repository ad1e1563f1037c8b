"""Input corruptions (temporary shim; the data split moves them here)."""

from jaxvae.data import NOISE_KINDS, add_noise, dynamic_binarize  # noqa: F401
from jaxvae.data import _check_noise_level as check_noise_level  # noqa: F401
