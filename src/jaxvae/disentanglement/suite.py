"""Every disentanglement metric of Locatello et al. (2019) in one call, for ``eval.json``.

As in disentanglement_lib's study (``evaluation.random_seed = 0`` in each metric's config), every
metric starts from its own ``np.random.default_rng(rng_seed)``: metrics with the same sampling
see the same points, and adding or dropping a metric changes no other.

Encode once, look up: :func:`plan` counts the observations each metric draws; where the metrics
of one function (the representation, or the posterior of the total correlation) draw more than
the data have distinct combinations, :func:`evaluate_all` encodes every combination once
(:class:`~jaxvae.disentanglement.table.CodeTable`) and those metrics look their codes up: the
same draws, the same codes, the same numbers, fewer images rendered and encoded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxvae.data.ground_truth import distinct_combinations
from jaxvae.disentanglement import beta_vae, dci, factor_vae, ground_truth, mig, modularity, sap
from jaxvae.disentanglement import total_correlation as tc
from jaxvae.disentanglement.table import CodeTable, fixed_batches


class Metric(NamedTuple):
    """How to run one metric and name its outputs."""

    compute: Callable[..., dict[str, Any]]
    scores: Mapping[str, str]  # flat key -> key of the metric's result
    matrices: Mapping[str, str]  # flat key -> key of a matrix in the metric's result
    draws: Callable[[Mapping[str, Any]], int]  # its protocol -> the observations it draws
    needs_posterior: bool = False


def _train_test(p: Mapping[str, Any]) -> int:
    return p["num_train"] + p["num_test"]


METRICS: dict[str, Metric] = {
    "beta_vae": Metric(
        beta_vae.compute_beta_vae,
        {"beta_vae_accuracy": "eval_accuracy", "beta_vae_train_accuracy": "train_accuracy"},
        {},
        lambda p: 2 * p["batch_size"] * (p["num_train"] + p["num_eval"]),
    ),
    "factor_vae": Metric(
        factor_vae.compute_factor_vae,
        {
            "factor_vae_accuracy": "eval_accuracy",
            "factor_vae_train_accuracy": "train_accuracy",
            "factor_vae_num_active_dims": "num_active_dims",
        },
        {},
        # at most: no vote is drawn when every dimension is pruned
        lambda p: p["num_variance_estimate"] + p["batch_size"] * (p["num_train"] + p["num_eval"]),
    ),
    "mig": Metric(
        mig.compute_mig,
        {"mig": "mig"},
        {"mig_mutual_information": "mutual_information", "mig_factor_entropy": "factor_entropy"},
        lambda p: p["num_train"],
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
        _train_test,
    ),
    "sap": Metric(
        sap.compute_sap, {"sap": "sap"}, {"sap_score_matrix": "score_matrix"}, _train_test
    ),
    "modularity_explicitness": Metric(
        modularity.compute_modularity_explicitness,
        {
            "modularity": "modularity",
            "explicitness_train": "explicitness_train",
            "explicitness_test": "explicitness_test",
        },
        {},
        _train_test,
    ),
    "total_correlation": Metric(
        tc.compute_total_correlation,
        {
            "gaussian_total_correlation_mean": "mean",
            "gaussian_total_correlation_sampled": "sampled",
            "gaussian_total_correlation_aggregate_posterior": "aggregate_posterior",
        },
        {},
        lambda p: p["num_train"],
        needs_posterior=True,
    ),
}


class Evaluation(NamedTuple):
    """Flat scores (``{"mig": 0.21, ...}``) and the matrices pictures need (numpy arrays)."""

    scores: dict[str, float]
    matrices: dict[str, np.ndarray]


class Plan(NamedTuple):
    """What scoring draws, and what it renders and encodes (:func:`plan`).

    Attributes:
      draws: observations each metric draws (FactorVAE's: at most, see ``METRICS``).
      combinations: the data's distinct combinations; 0 when they cannot be tabulated.
      tabulated: per function (``"representation"``, ``"posterior"``), whether every
        combination is encoded once and the metrics look their codes up.
      images: observations rendered (or read) from the data; each is encoded exactly once, so
        this is also the number of images through the encoder (less the padding of a last
        partial batch).
    """

    draws: dict[str, int]
    combinations: int
    tabulated: dict[str, bool]
    images: int


def _metric_names(metrics: Sequence[str] | None, posterior: bool) -> list[str]:
    if metrics is None:
        return [n for n, m in METRICS.items() if posterior or not m.needs_posterior]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; expected names from {sorted(METRICS)}")
    return list(metrics)


def protocol_of(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Metric ``name``'s keyword arguments: its defaults (the study's) with ``overrides``."""
    params = inspect.signature(METRICS[name].compute).parameters
    defaults = {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(overrides or {}) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown protocol keys {unknown} for {name!r}; expected {sorted(defaults)}"
        )
    return defaults | dict(overrides or {})


def plan(
    ground_truth_data: ground_truth.GroundTruthData,
    *,
    metrics: Sequence[str] | None = None,
    protocol: Mapping[str, Mapping[str, Any]] | None = None,
    posterior: bool = True,
    tabulate: bool | None = None,
) -> Plan:
    """What :func:`evaluate_all` with these arguments draws, renders and encodes (a count).

    A function's metrics use a table of every combination's code when the data have distinct
    combinations and ``tabulate`` is True, or (``tabulate=None``) when those metrics draw more
    observations in all than there are combinations; ``tabulate=False``: never.
    ``posterior``: whether a ``mean_and_logvar_fn`` is given.
    """
    names = _metric_names(metrics, posterior)
    protocol = dict(protocol or {})
    unknown = sorted(set(protocol) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; expected names from {sorted(METRICS)}")
    draws = {n: int(METRICS[n].draws(protocol_of(n, protocol.get(n)))) for n in names}
    combinations = distinct_combinations(ground_truth_data)
    if tabulate and combinations is None:
        raise ValueError(
            "tabulate=True, but the data have no distinct_combinations() (one fixed observation "
            "per combination); expected tabulate=None or False"
        )
    size = 0 if combinations is None else int(combinations.size)
    tabulated, images = {}, 0
    for fn in ("representation", "posterior"):
        total = sum(
            d for n, d in draws.items() if METRICS[n].needs_posterior == (fn == "posterior")
        )
        auto = total > size if tabulate is None else tabulate
        tabulated[fn] = bool(size and total and auto)
        images += size if tabulated[fn] else total
    return Plan(draws, size, tabulated, images)


def evaluate_all(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    mean_and_logvar_fn: ground_truth.MeanAndLogVarFn | None,
    rng_seed: int,
    *,
    metrics: Sequence[str] | None = None,
    protocol: Mapping[str, Mapping[str, Any]] | None = None,
    tabulate: bool | None = None,
    encode_batch: int = 16,
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
      tabulate: encode every combination once and look codes up (see :func:`plan`): None
        decides by the counts, True always (the data must allow it), False never. Either way
        the same numbers, for a representation whose rows depend on their own observation only
        (at a fixed batch shape).
      encode_batch: both functions are called on exactly this many observations at a time
        (:func:`~jaxvae.disentanglement.table.fixed_batches`), so that a code does not depend
        on how a metric groups its draws.

    Returns:
      :class:`Evaluation` with flat float scores and the named matrices.
    """
    metrics = _metric_names(metrics, mean_and_logvar_fn is not None)
    for name in metrics:
        if METRICS[name].needs_posterior and mean_and_logvar_fn is None:
            raise ValueError(f"metric {name!r} needs mean_and_logvar_fn, got None")
    protocol = dict(protocol or {})
    counts = plan(
        ground_truth_data,
        metrics=metrics,
        protocol=protocol,
        posterior=mean_and_logvar_fn is not None,
        tabulate=tabulate,
    )
    sources = {}
    for kind, fn in (("representation", representation_fn), ("posterior", mean_and_logvar_fn)):
        fn = None if fn is None else fixed_batches(fn, encode_batch)
        sources[kind] = (ground_truth_data, fn)
        if counts.tabulated[kind]:
            table = CodeTable(ground_truth_data, fn, distinct_combinations(ground_truth_data))
            sources[kind] = (table, table.codes)
    scores: dict[str, float] = {}
    matrices: dict[str, np.ndarray] = {}
    for name in metrics:
        metric = METRICS[name]
        data, fn = sources["posterior" if metric.needs_posterior else "representation"]
        rng = np.random.default_rng(rng_seed)
        result = metric.compute(data, fn, rng, **protocol.get(name, {}))
        scores.update({key: float(result[field]) for key, field in metric.scores.items()})
        matrices.update({key: np.asarray(result[field]) for key, field in metric.matrices.items()})
    return Evaluation(scores, matrices)
