"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings
With the F-Statistic Loss").

Protocol (disentanglement_lib ``modularity_explicitness``, Locatello et al. 2019): 10,000
training and 5,000 test points sampled i.i.d. (encoded 16 at a time).

Modularity: ``m_ik = I(z_i; v_k)`` with each code dimension discretised into 20 equal-width bins
(as in MIG); for each code dimension ``i``, with ``theta_i = max_k m_ik^2``,
``delta_i = (sum_k m_ik^2 - theta_i) / (theta_i (F - 1))`` and modularity ``1 - delta_i``
(0 where ``theta_i = 0``); the score is the mean over code dimensions.

Explicitness: codes standardised with the training mean and standard deviation; for each factor
a one-vs-rest L2 logistic regression (``C = 1``, liblinear, scikit-learn 0.20's
``LogisticRegression()``) on the whole code; its one-vs-rest ROC-AUC, the mean over classes of
the AUC of ``P(class)`` against ``v_k == class``, on the training and on the test points; the
score is the mean over factors. (A class absent from an evaluation set has no AUC and is left
out of that mean; a code dimension with zero training spread is left unscaled.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics

from jaxvae.disentanglement import classifiers, ground_truth, information


def modularity_from_mutual_information(mutual_information: np.ndarray) -> float:
    """Modularity of a ``[D, F]`` mutual-information matrix (see the module docstring)."""
    sq = np.square(np.asarray(mutual_information, np.float64))
    if sq.ndim != 2 or sq.shape[1] < 2:
        raise ValueError(f"mutual_information must be [D, F] with F >= 2, got shape {sq.shape}")
    theta = sq.max(axis=1)
    safe = np.where(theta > 0, theta, 1.0)
    delta = (sq.sum(axis=1) - theta) / (safe * (sq.shape[1] - 1))
    return float(np.mean(np.where(theta > 0, 1.0 - delta, 0.0)))


def _one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    aucs = []
    for c, cls in enumerate(classes):
        positive = labels == cls
        if 0 < positive.sum() < labels.size:
            aucs.append(metrics.roc_auc_score(positive, probabilities[:, c]))
    return float(np.mean(aucs)) if aucs else float("nan")


def explicitness_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Explicitness on the training and the test points, overall and per factor."""
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    num_factors = factors_train.shape[1]
    train, test = np.zeros(num_factors), np.zeros(num_factors)
    for k in range(num_factors):
        model = classifiers.logistic_regression(seed)
        model = classifiers.fit_quietly(model, x_train, factors_train[:, k])
        for out, x, f in ((train, x_train, factors_train), (test, x_test, factors_test)):
            out[k] = _one_vs_rest_auc(f[:, k], model.predict_proba(x), model.classes_)
    return {
        "explicitness_train": float(np.mean(train)),
        "explicitness_test": float(np.mean(test)),
        "explicitness_per_factor_test": test,
    }


def modularity_explicitness_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    num_bins: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Modularity and explicitness of given codes.

    Returns:
      ``{"modularity", "explicitness_train", "explicitness_test": float,
      "explicitness_per_factor_test": [F], "mutual_information": [D, F]}``.
    """
    codes_train, factors_train = ground_truth.check_codes_and_factors(codes_train, factors_train)
    codes_test, factors_test = ground_truth.check_codes_and_factors(codes_test, factors_test)
    binned = information.histogram_discretize(codes_train, num_bins)
    mi = information.discrete_mutual_information(binned, factors_train)
    return {
        "modularity": modularity_from_mutual_information(mi),
        **explicitness_from_codes(codes_train, factors_train, codes_test, factors_test, seed=seed),
        "mutual_information": mi,
    }


def compute_modularity_explicitness(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    rng: np.random.Generator,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    batch_size: int = 16,
    num_bins: int = 20,
) -> dict[str, Any]:
    """Modularity and explicitness of ``representation_fn`` (see the module docstring)."""
    points = ground_truth.sample_train_and_test(
        ground_truth_data, representation_fn, num_train, num_test, rng, batch_size
    )
    seed = int(rng.integers(2**31 - 1))
    return modularity_explicitness_from_codes(*points, num_bins=num_bins, seed=seed)
