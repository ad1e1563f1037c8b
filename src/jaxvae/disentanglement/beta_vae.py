"""The BetaVAE score (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
Constrained Variational Framework").

Protocol (disentanglement_lib ``beta_vae_sklearn``, Locatello et al. 2019): each training point
is made from a factor index ``k`` drawn uniformly and two batches of 64 factor vectors drawn
i.i.d., the second with factor ``k`` copied from the first; the feature is
``mean_b |z(x1_b) - z(x2_b)|`` over the batch (``D`` values) and the label is ``k``. 10,000
training and 5,000 evaluation points; a one-vs-rest L2 logistic regression (``C = 1``,
liblinear: scikit-learn 0.20's ``LogisticRegression()``) is fitted on the training points; the
score is its accuracy on the evaluation points (chance is ``1 / F``).

The representation is called on ``points_per_call`` points' observations at a time
(``2 x 64 x points_per_call`` observations); that groups the same draws, not the protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvae.disentanglement import classifiers, ground_truth


def beta_vae_features(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    num_points: int,
    rng: np.random.Generator,
    *,
    batch_size: int = 64,
    points_per_call: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` BetaVAE training points: features ``[num_points, D]``, labels ``[num_points]``."""
    ground_truth.check_positive(
        num_points=num_points, batch_size=batch_size, points_per_call=points_per_call
    )
    num_f = ground_truth.num_factors(ground_truth_data)
    features, labels = [], []
    for start in range(0, num_points, points_per_call):
        m = min(points_per_call, num_points - start)
        k = rng.integers(num_f, size=m)
        shape = (m, batch_size, num_f)
        first = ground_truth.factors_of(ground_truth_data, m * batch_size, rng).reshape(shape)
        second = ground_truth.factors_of(ground_truth_data, m * batch_size, rng).reshape(shape)
        second[np.arange(m), :, k] = first[np.arange(m), :, k]
        both = np.concatenate([first, second]).reshape(2 * m * batch_size, num_f)
        obs = ground_truth_data.sample_observations_from_factors(both, rng)
        z = ground_truth.codes_of(representation_fn, obs).reshape(2, m, batch_size, -1)
        features.append(np.mean(np.abs(z[0] - z[1]), axis=1))
        labels.append(k)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_from_features(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Train and evaluation accuracy of the logistic regression on given BetaVAE points."""
    if np.unique(train_labels).size < 2:
        raise ValueError(
            f"the BetaVAE training points hold one factor index only ({np.unique(train_labels)}); "
            "use more points"
        )
    model = classifiers.logistic_regression(seed)
    model = classifiers.fit_quietly(model, train_features, train_labels)
    return {
        "train_accuracy": float(np.mean(model.predict(train_features) == train_labels)),
        "eval_accuracy": float(np.mean(model.predict(eval_features) == eval_labels)),
    }


def compute_beta_vae(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    rng: np.random.Generator,
    *,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    batch_size: int = 64,
    points_per_call: int = 8,
) -> dict[str, Any]:
    """BetaVAE score of ``representation_fn`` (see the module docstring).

    Returns:
      ``{"train_accuracy", "eval_accuracy"}``; ``eval_accuracy`` is the score.
    """
    kw = dict(batch_size=batch_size, points_per_call=points_per_call)
    train = beta_vae_features(ground_truth_data, representation_fn, num_train, rng, **kw)
    seed = int(rng.integers(2**31 - 1))
    test = beta_vae_features(ground_truth_data, representation_fn, num_eval, rng, **kw)
    return beta_vae_from_features(*train, *test, seed=seed)
