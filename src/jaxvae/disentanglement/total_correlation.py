"""The Gaussian total correlation of a representation (Locatello et al. 2019, Fig. 1).

The total correlation of a Gaussian ``N(mu, Sigma)`` is its KL divergence from the product of
its marginals, ``N(mu, diag Sigma)``::

    TC(Sigma) = 1/2 (sum_i log Sigma_ii - log det Sigma)

Protocol (disentanglement_lib ``unsupervised_metrics``): 10,000 i.i.d. points (encoded 16 at a
time); ``Sigma`` the sample covariance (``ddof=1``) of the codes. The study reports it for the
mean representation (the encoder means ``mu(x)``) and for the sampled one
(``z = mu(x) + exp(log_var(x) / 2) eps``, one draw per point). The sampled codes' covariance
estimates that of the aggregate posterior ``q(z) = E_x q(z|x)``,
``Cov(mu(x)) + E_x diag(exp(log_var(x)))``; that closed form is reported too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvae.disentanglement import ground_truth


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation (nats) of a Gaussian with covariance ``cov [D, D]``."""
    cov = np.asarray(cov, np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be a square [D, D] matrix, got shape {cov.shape}")
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0 or np.any(np.diag(cov) <= 0):
        raise ValueError("cov is not positive definite (a constant or collinear code dimension?)")
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def aggregate_posterior_covariance(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
    """``Cov(mu(x)) + mean_x diag(exp(log_var(x)))`` from ``[N, D]`` means and log-variances."""
    means, log_vars = np.asarray(means, np.float64), np.asarray(log_vars, np.float64)
    if means.shape != log_vars.shape or means.ndim != 2:
        raise ValueError(
            f"means {means.shape} and log_vars {log_vars.shape}: expected two [N, D] arrays"
        )
    cov = np.cov(means, rowvar=False, ddof=1).reshape(means.shape[1], -1)
    return cov + np.diag(np.mean(np.exp(log_vars), axis=0))


def total_correlation_from_posteriors(
    means: np.ndarray, log_vars: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """Gaussian TC of the mean codes, of one sample per posterior, and of the aggregate posterior.

    Returns:
      ``{"mean", "sampled", "aggregate_posterior"}`` in nats.
    """
    cov_aggregate = aggregate_posterior_covariance(means, log_vars)
    samples = means + np.exp(0.5 * log_vars) * rng.standard_normal(means.shape)
    return {
        "mean": gaussian_total_correlation(np.cov(means, rowvar=False, ddof=1)),
        "sampled": gaussian_total_correlation(np.cov(samples, rowvar=False, ddof=1)),
        "aggregate_posterior": gaussian_total_correlation(cov_aggregate),
    }


def compute_total_correlation(
    ground_truth_data: ground_truth.GroundTruthData,
    mean_and_logvar_fn: ground_truth.MeanAndLogVarFn,
    rng: np.random.Generator,
    *,
    num_train: int = 10_000,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Gaussian TC of an encoder's posteriors on sampled points (see the module docstring).

    Args:
      mean_and_logvar_fn: observations ``[n, H, W, C]`` -> ``(means [n, D], log_vars [n, D])``.
    """

    def both(x):
        mean, log_var = (np.asarray(a, np.float64) for a in mean_and_logvar_fn(x))
        if mean.shape != log_var.shape:
            raise ValueError(
                f"mean_and_logvar_fn returned shapes {mean.shape} and {log_var.shape}; expected "
                "two [n, D] arrays"
            )
        return np.concatenate([mean, log_var], axis=1)

    codes, _ = ground_truth.sample_codes_and_factors(
        ground_truth_data, both, num_train, rng, batch_size
    )
    means, log_vars = np.split(codes, 2, axis=1)
    return total_correlation_from_posteriors(means, log_vars, rng)
