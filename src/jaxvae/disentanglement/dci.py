"""Disentanglement, completeness and informativeness (Eastwood & Williams 2018).

Protocol (disentanglement_lib ``dci``, Locatello et al. 2019): 10,000 training and 5,000 test
points sampled i.i.d. (encoded 16 at a time). For each factor ``k`` a scikit-learn
``GradientBoostingClassifier`` with its defaults (100 trees of depth 3, learning rate 0.1, log
loss, one tree per class per stage) predicts ``v_k`` from the whole code; its impurity-based
``feature_importances_`` form column ``k`` of the importance matrix ``R [D, F]`` (each column
sums to 1). With ``P_ik = R_ik / sum_k R_ik`` and ``Q_ik = R_ik / sum_i R_ik`` (both after adding
1e-11 to every entry):

    D_i = 1 - H_F(P_i.),   disentanglement = sum_i rho_i D_i,  rho_i = sum_k R_ik / sum R
    C_k = 1 - H_D(Q_.k),   completeness   = sum_k w_k C_k,     w_k = sum_i R_ik / sum R

with entropies in base ``F`` and ``D`` respectively. Informativeness is the classifiers'
accuracy, averaged over factors, on the training and on the test points (disentanglement_lib
reports accuracy, not error, under the names ``informativeness_train/test``).

Classifiers: by default :mod:`jaxvae.disentanglement.boosting`, sklearn's algorithm for this
configuration re-implemented (``boosting="numpy"``: numpy, its trees compiled by numba);
``boosting="sklearn"`` fits
``GradientBoostingClassifier(random_state=seed)`` itself. They differ only where two splits tie
in exact arithmetic (often: the first stage's residuals take two values), which sklearn breaks by
a random feature order and its summation order, so that its own ``random_state`` moves the
numbers: on the dSprites-shaped benchmark at 10,000 points the two gave disentanglement 0.7018
and 0.7024, completeness 0.6552 and 0.6559, test informativeness 0.5243 and 0.5233. Codes with
chains of values closer than 1e-7 fall back to sklearn (``boosting.NearTies``).

Cost: ``F`` boosted ensembles of ``100 x K_k`` trees on ``10,000 x D`` points; on dSprites
(40 orientations, 32 x- and y-positions) this is the slowest metric by far: 351 CPU-s with
sklearn, about 20 with jaxvae's (docs/disentanglement.md, "Cost on 10,000 points").
``n_jobs`` fits the factors in parallel processes, which changes no number.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
from sklearn import ensemble

from jaxvae.disentanglement import boosting as _boosting
from jaxvae.disentanglement import ground_truth


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy along ``axis`` of the distribution ``p / sum(p)``, in base ``p.shape[axis]``."""
    p = p / np.sum(p, axis=axis, keepdims=True)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -np.sum(plogp, axis=axis) / np.log(p.shape[axis])


def dci_from_importance(importance: np.ndarray) -> dict[str, float]:
    """Disentanglement and completeness of an importance matrix ``R [D, F]`` (non-negative)."""
    r = np.abs(np.asarray(importance, np.float64))
    if r.ndim != 2 or min(r.shape) < 2:
        raise ValueError(f"importance must be [D, F] with D, F >= 2, got shape {r.shape}")
    smoothed = r + 1e-11
    per_code = 1.0 - _normalised_entropy(smoothed, axis=1)
    per_factor = 1.0 - _normalised_entropy(smoothed, axis=0)
    weights = r if r.sum() > 0 else np.ones_like(r)
    return {
        "disentanglement": float(per_code @ (weights.sum(1) / weights.sum())),
        "completeness": float(per_factor @ (weights.sum(0) / weights.sum())),
    }


BOOSTING = ("numpy", "sklearn")


def _fit_one_factor(x_train, y_train, x_test, y_test, seed, method):
    """Importances ``[D]``, train and test accuracy of the boosted trees for one factor."""
    if method == "numpy":
        try:
            model = _boosting.fit(x_train, y_train, x_test, seed=seed)
        except _boosting.NearTies:
            method = "sklearn"  # sklearn's tie rule then depends on each node's points
        else:
            return (
                model.feature_importances,
                np.mean(model.predict(model.raw_train) == y_train),
                np.mean(model.predict(model.raw_test) == y_test),
            )
    model = ensemble.GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
    return (
        np.abs(model.feature_importances_),
        np.mean(model.predict(x_train) == y_train),
        np.mean(model.predict(x_test) == y_test),
    )


def dci_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    seed: int = 0,
    n_jobs: int = 1,
    boosting: str = "numpy",
) -> dict[str, Any]:
    """DCI of given codes (see the module docstring).

    Args:
      codes_train, factors_train: ``[N, D]`` codes and ``[N, F]`` integer factors to fit on.
      codes_test, factors_test: held-out points for the test informativeness.
      seed: ``random_state`` of the boosted trees (it breaks ties between equally good splits).
      n_jobs: factors fitted in parallel (joblib processes; -1: one per core). The same numbers
        for any value: each factor's fit is single-threaded and seeded.
      boosting: "numpy" (:mod:`jaxvae.disentanglement.boosting`, sklearn's algorithm about 5x
        faster) or "sklearn" (``GradientBoostingClassifier(random_state=seed)`` itself).

    Returns:
      ``{"disentanglement", "completeness", "informativeness_train", "informativeness_test":
      float, "importance_matrix": [D, F]}``.
    """
    if boosting not in BOOSTING:
        raise ValueError(f"boosting must be one of {BOOSTING}, got {boosting!r}")
    codes_train, factors_train = ground_truth.check_codes_and_factors(codes_train, factors_train)
    codes_test, factors_test = ground_truth.check_codes_and_factors(codes_test, factors_test)
    if (
        codes_test.shape[1] != codes_train.shape[1]
        or factors_test.shape[1] != factors_train.shape[1]
    ):
        raise ValueError(
            f"test codes {codes_test.shape} / factors {factors_test.shape} do not match the "
            f"training codes {codes_train.shape} / factors {factors_train.shape}"
        )
    fits = joblib.Parallel(n_jobs=n_jobs)(
        joblib.delayed(_fit_one_factor)(
            codes_train, factors_train[:, k], codes_test, factors_test[:, k], seed, boosting
        )
        for k in range(factors_train.shape[1])
    )
    importance = np.stack([f[0] for f in fits], axis=1)
    train_acc, test_acc = np.array([f[1] for f in fits]), np.array([f[2] for f in fits])
    return {
        **dci_from_importance(importance),
        "informativeness_train": float(train_acc.mean()),
        "informativeness_test": float(test_acc.mean()),
        "importance_matrix": importance,
    }


def compute_dci(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    rng: np.random.Generator,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    batch_size: int = 16,
    n_jobs: int = 1,
    boosting: str = "numpy",
) -> dict[str, Any]:
    """DCI of ``representation_fn`` on sampled points (see the module docstring)."""
    points = ground_truth.sample_train_and_test(
        ground_truth_data, representation_fn, num_train, num_test, rng, batch_size
    )
    seed = int(rng.integers(2**31 - 1))
    return dci_from_codes(*points, seed=seed, n_jobs=n_jobs, boosting=boosting)
