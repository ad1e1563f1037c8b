"""Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations", Sec. 3).

Protocol (disentanglement_lib ``sap_score``, Locatello et al. 2019): 10,000 training and 5,000
test points sampled i.i.d. (encoded 16 at a time); factors treated as discrete. Score matrix
``S [D, F]``: ``S_ik`` is the test accuracy of a scikit-learn ``LinearSVC(C=0.01,
class_weight="balanced")`` (squared hinge, one-vs-rest) predicting factor ``k`` from code
dimension ``i`` alone. For continuous factors, ``S_ik`` is instead the squared correlation
``cov(z_i, v_k)^2 / (var z_i var v_k)`` on the training points (0 where ``var z_i <= 1e-12``).
SAP is the mean over factors of the gap between the two largest entries of each column.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvae.disentanglement import classifiers, ground_truth


def sap_score_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    continuous_factors: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """The score matrix ``S [D, F]`` (see the module docstring)."""
    num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
    scores = np.zeros((num_codes, num_factors))
    for i in range(num_codes):
        for k in range(num_factors):
            if continuous_factors:
                cov = np.cov(codes_train[:, i], factors_train[:, k], ddof=1)
                if cov[0, 0] > 1e-12:
                    scores[i, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
            else:
                one = slice(i, i + 1)
                svc = classifiers.linear_svc(seed)
                model = classifiers.fit_quietly(svc, codes_train[:, one], factors_train[:, k])
                scores[i, k] = np.mean(model.predict(codes_test[:, one]) == factors_test[:, k])
    return scores


def sap_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    continuous_factors: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """SAP of given codes.

    Returns:
      ``{"sap": float, "score_matrix": [D, F]}``.
    """
    codes_train, factors_train = ground_truth.check_codes_and_factors(codes_train, factors_train)
    codes_test, factors_test = ground_truth.check_codes_and_factors(codes_test, factors_test)
    if codes_train.shape[1] < 2:
        raise ValueError(f"SAP needs at least 2 code dimensions, got shape {codes_train.shape}")
    points = (codes_train, factors_train, codes_test, factors_test)
    scores = sap_score_matrix(*points, continuous_factors=continuous_factors, seed=seed)
    top_two = -np.sort(-scores, axis=0)[:2]
    return {"sap": float(np.mean(top_two[0] - top_two[1])), "score_matrix": scores}


def compute_sap(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    rng: np.random.Generator,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    batch_size: int = 16,
    continuous_factors: bool = False,
) -> dict[str, Any]:
    """SAP of ``representation_fn`` on sampled points (see the module docstring)."""
    points = ground_truth.sample_train_and_test(
        ground_truth_data, representation_fn, num_train, num_test, rng, batch_size
    )
    seed = int(rng.integers(2**31 - 1))
    return sap_from_codes(*points, continuous_factors=continuous_factors, seed=seed)
