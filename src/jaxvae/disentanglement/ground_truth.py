"""The ground-truth data the disentanglement metrics sample from, and sampling helpers.

A dataset with known factors of variation (dSprites, Shapes3D, ...) implements
:class:`GroundTruthData`: the size and name of each factor, a sampler of factor values and a
renderer of observations from factor values. Randomness is a numpy ``Generator``
(``np.random.default_rng(seed)``): the metrics follow google-research/disentanglement_lib, which
is numpy-based, and every classifier they fit is scikit-learn's. Everything else here is derived
from those two methods.

A representation function maps a batch of observations ``[n, H, W, C]`` to codes ``[n, D]``
(numpy in, numpy out); for a VAE it is usually the encoder mean, jitted once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxvae.data.ground_truth import GroundTruthData  # the one protocol, re-exported

RepresentationFn = Callable[[np.ndarray], np.ndarray]
MeanAndLogVarFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def num_factors(data: GroundTruthData) -> int:
    """The number of factors of variation, ``F``."""
    return len(data.factor_sizes)


def factors_of(data: GroundTruthData, num: int, rng: np.random.Generator) -> np.ndarray:
    """``data.sample_factors(num, rng)`` as a fresh int64 ``[num, F]`` array, or a ValueError."""
    factors = np.array(data.sample_factors(num, rng), np.int64)
    if factors.shape != (num, num_factors(data)):
        raise ValueError(
            f"sample_factors returned shape {factors.shape}; expected ({num}, {num_factors(data)})"
        )
    return factors


def codes_of(representation_fn: RepresentationFn, observations: np.ndarray) -> np.ndarray:
    """``representation_fn(observations)`` as float64 ``[n, D]``; a ValueError if it is not."""
    codes = np.asarray(representation_fn(observations), np.float64)
    n = observations.shape[0]
    if codes.ndim != 2 or codes.shape[0] != n:
        raise ValueError(
            f"representation_fn returned shape {codes.shape} for {n} observations; expected [{n}, D]"
        )
    return codes


def sample_codes_and_factors(
    data: GroundTruthData,
    representation_fn: RepresentationFn,
    num: int,
    rng: np.random.Generator,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and factors of ``num`` i.i.d. samples, drawn and encoded ``batch_size`` at a time.

    disentanglement_lib's ``generate_batch_factor_code``: per batch, sample factors, render their
    observations, encode them.

    Returns:
      ``(codes [num, D] float64, factors [num, F] int64)``.
    """
    check_positive(num=num, batch_size=batch_size)
    codes, factors = [], []
    for start in range(0, num, batch_size):
        f = factors_of(data, min(batch_size, num - start), rng)
        codes.append(codes_of(representation_fn, data.sample_observations_from_factors(f, rng)))
        factors.append(f)
    return np.concatenate(codes), np.concatenate(factors)


def check_positive(**values: int) -> None:
    """A ValueError naming the first of ``values`` that is not a positive integer."""
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_codes_and_factors(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, ...]:
    """``codes`` as float64 ``[N, D]`` and ``factors`` as int64 ``[N, F]``, or a ValueError."""
    codes = np.asarray(codes, np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(
            f"codes of shape {codes.shape} and factors of shape {factors.shape}: expected "
            "[N, D] and [N, F] with the same N"
        )
    if codes.shape[0] < 2:
        raise ValueError(f"need at least 2 points, got codes of shape {codes.shape}")
    if not np.all(np.isfinite(codes)):
        raise ValueError("codes contain non-finite values")
    if not np.issubdtype(factors.dtype, np.integer) and not np.all(factors == np.round(factors)):
        raise ValueError(f"factors must be integer class labels, got dtype {factors.dtype}")
    return codes, factors.astype(np.int64)


def sample_train_and_test(
    data: GroundTruthData,
    representation_fn: RepresentationFn,
    num_train: int,
    num_test: int,
    rng: np.random.Generator,
    batch_size: int,
) -> tuple:
    """``(codes_train, factors_train, codes_test, factors_test)``: the training points, then
    the test points, drawn in that order from ``rng`` (:func:`sample_codes_and_factors`)."""
    train = sample_codes_and_factors(data, representation_fn, num_train, rng, batch_size)
    test = sample_codes_and_factors(data, representation_fn, num_test, rng, batch_size)
    return (*train, *test)
