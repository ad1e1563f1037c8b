"""Every disentanglement metric of Locatello et al. (2019) in one call, for ``eval.json``.

As in disentanglement_lib's study (``evaluation.random_seed = 0`` in each metric's config), every
metric starts from its own ``np.random.default_rng(rng_seed)``: metrics with the same sampling
see the same points, and adding or dropping a metric changes no other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxvae.disentanglement import beta_vae, dci, factor_vae, ground_truth, mig, modularity, sap
from jaxvae.disentanglement import total_correlation as tc


class Metric(NamedTuple):
    """How to run one metric and name its outputs."""

    compute: Callable[..., dict[str, Any]]
    scores: Mapping[str, str]  # flat key -> key of the metric's result
    matrices: Mapping[str, str]  # flat key -> key of a matrix in the metric's result
    needs_posterior: bool = False


METRICS: dict[str, Metric] = {
    "beta_vae": Metric(
        beta_vae.compute_beta_vae,
        {"beta_vae_accuracy": "eval_accuracy", "beta_vae_train_accuracy": "train_accuracy"},
        {},
    ),
    "factor_vae": Metric(
        factor_vae.compute_factor_vae,
        {
            "factor_vae_accuracy": "eval_accuracy",
            "factor_vae_train_accuracy": "train_accuracy",
            "factor_vae_num_active_dims": "num_active_dims",
        },
        {},
    ),
    "mig": Metric(
        mig.compute_mig,
        {"mig": "mig"},
        {"mig_mutual_information": "mutual_information", "mig_factor_entropy": "factor_entropy"},
    ),
    "dci": Metric(
        dci.compute_dci,
        {
            "dci_disentanglement": "disentanglement",
            "dci_completeness": "completeness",
            "dci_informativeness_train": "informativeness_train",
            "dci_informativeness_test": "informativeness_test",
        },
        {"dci_importance_matrix": "importance_matrix"},
    ),
    "sap": Metric(sap.compute_sap, {"sap": "sap"}, {"sap_score_matrix": "score_matrix"}),
    "modularity_explicitness": Metric(
        modularity.compute_modularity_explicitness,
        {
            "modularity": "modularity",
            "explicitness_train": "explicitness_train",
            "explicitness_test": "explicitness_test",
        },
        {},
    ),
    "total_correlation": Metric(
        tc.compute_total_correlation,
        {
            "gaussian_total_correlation_mean": "mean",
            "gaussian_total_correlation_sampled": "sampled",
            "gaussian_total_correlation_aggregate_posterior": "aggregate_posterior",
        },
        {},
        needs_posterior=True,
    ),
}


class Evaluation(NamedTuple):
    """Flat scores (``{"mig": 0.21, ...}``) and the matrices pictures need (numpy arrays)."""

    scores: dict[str, float]
    matrices: dict[str, np.ndarray]


def evaluate_all(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    mean_and_logvar_fn: ground_truth.MeanAndLogVarFn | None,
    rng_seed: int,
    *,
    metrics: Sequence[str] | None = None,
    protocol: Mapping[str, Mapping[str, Any]] | None = None,
) -> Evaluation:
    """Runs the disentanglement metrics with the study's protocol.

    Args:
      ground_truth_data: the dataset with factors.
      representation_fn: observations -> codes ``[n, D]`` (the study: the encoder mean).
      mean_and_logvar_fn: observations -> ``(means, log_vars)`` for the Gaussian total
        correlation; None skips it (a deterministic autoencoder has no posterior).
      rng_seed: seed of every metric's ``np.random.default_rng``.
      metrics: names from :data:`METRICS` to run; all of them by default (less
        ``total_correlation`` when ``mean_and_logvar_fn`` is None).
      protocol: per-metric keyword overrides, e.g. ``{"mig": {"num_train": 1000}}``; the defaults
        are the study's numbers.

    Returns:
      :class:`Evaluation` with flat float scores and the named matrices.
    """
    if metrics is None:
        metrics = [n for n, m in METRICS.items() if mean_and_logvar_fn or not m.needs_posterior]
    protocol = dict(protocol or {})
    unknown = sorted(set(metrics) - set(METRICS)) + sorted(set(protocol) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; expected names from {sorted(METRICS)}")
    scores: dict[str, float] = {}
    matrices: dict[str, np.ndarray] = {}
    for name in metrics:
        metric = METRICS[name]
        if metric.needs_posterior and mean_and_logvar_fn is None:
            raise ValueError(f"metric {name!r} needs mean_and_logvar_fn, got None")
        fn = mean_and_logvar_fn if metric.needs_posterior else representation_fn
        rng = np.random.default_rng(rng_seed)
        result = metric.compute(ground_truth_data, fn, rng, **protocol.get(name, {}))
        scores.update({key: float(result[field]) for key, field in metric.scores.items()})
        matrices.update({key: np.asarray(result[field]) for key, field in metric.matrices.items()})
    return Evaluation(scores, matrices)
