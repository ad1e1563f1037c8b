"""The FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising").

Protocol (disentanglement_lib ``factor_vae_score``, Locatello et al. 2019):

1. Global variance of each code dimension (``ddof=1``) from 10,000 i.i.d. observations
   (encoded 64 at a time); dimensions with standard deviation below 0.05 are pruned as
   collapsed (no active dimension: scores 0).
2. Each vote: a factor index ``k`` drawn uniformly; a batch of 64 factor vectors drawn i.i.d.,
   all with factor ``k`` set to the first one's value; the vote goes to the active dimension
   with the smallest ``var_batch(z_i) / var_global(z_i)`` (both ``ddof=1``). Votes count into
   ``V [F, D]``.
3. 10,000 training votes build a majority-vote classifier (each code dimension predicts the
   factor with the most votes for it); the score is its accuracy on 5,000 evaluation votes:
   ``sum_i V_eval[argmax_k V_train[k, i], i] / sum V_eval``.

The representation is called on ``votes_per_call`` batches at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvae.disentanglement import ground_truth


def factor_vae_votes(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    num_votes: int,
    rng: np.random.Generator,
    global_variances: np.ndarray,
    active: np.ndarray,
    *,
    batch_size: int = 64,
    votes_per_call: int = 8,
) -> np.ndarray:
    """The vote matrix ``V [F, D]`` of ``num_votes`` votes (step 2 of the module docstring)."""
    ground_truth.check_positive(
        num_votes=num_votes, batch_size=batch_size, votes_per_call=votes_per_call
    )
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for a variance, got {batch_size}")
    num_f = ground_truth.num_factors(ground_truth_data)
    active_dims = np.flatnonzero(active)
    votes = np.zeros((num_f, global_variances.size), np.int64)
    for start in range(0, num_votes, votes_per_call):
        m = min(votes_per_call, num_votes - start)
        k = rng.integers(num_f, size=m)
        factors = ground_truth.factors_of(ground_truth_data, m * batch_size, rng)
        factors = factors.reshape(m, batch_size, num_f)
        factors[np.arange(m), :, k] = factors[np.arange(m), :1, k]
        obs = ground_truth_data.sample_observations_from_factors(factors.reshape(-1, num_f), rng)
        z = ground_truth.codes_of(representation_fn, obs).reshape(m, batch_size, -1)
        ratio = np.var(z[:, :, active_dims], axis=1, ddof=1) / global_variances[active_dims]
        np.add.at(votes, (k, active_dims[np.argmin(ratio, axis=1)]), 1)
    return votes


def factor_vae_from_votes(train_votes: np.ndarray, eval_votes: np.ndarray) -> dict[str, float]:
    """Majority-vote accuracy (step 3 of the module docstring) on given vote matrices ``[F, D]``."""
    if train_votes.shape != eval_votes.shape or train_votes.ndim != 2:
        raise ValueError(
            f"vote matrices of shapes {train_votes.shape} and {eval_votes.shape}: expected two "
            "[F, D] matrices"
        )
    predicted = np.argmax(train_votes, axis=0)
    dims = np.arange(train_votes.shape[1])

    def accuracy(votes):
        return float(votes[predicted, dims].sum() / max(votes.sum(), 1))

    return {"train_accuracy": accuracy(train_votes), "eval_accuracy": accuracy(eval_votes)}


def compute_factor_vae(
    ground_truth_data: ground_truth.GroundTruthData,
    representation_fn: ground_truth.RepresentationFn,
    rng: np.random.Generator,
    *,
    num_variance_estimate: int = 10_000,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    batch_size: int = 64,
    prune_threshold: float = 0.05,
    votes_per_call: int = 8,
) -> dict[str, Any]:
    """FactorVAE score of ``representation_fn`` (see the module docstring).

    Returns:
      ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``; ``eval_accuracy`` is the score.
      (disentanglement_lib reports the total number of dimensions as ``num_active_dims``; this is
      the number that passed the pruning.)
    """
    args = (ground_truth_data, representation_fn, num_variance_estimate, rng)
    codes, _ = ground_truth.sample_codes_and_factors(*args, batch_size=64)
    global_variances = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    kw = dict(batch_size=batch_size, votes_per_call=votes_per_call)
    data = (ground_truth_data, representation_fn)
    train = factor_vae_votes(*data, num_train, rng, global_variances, active, **kw)
    test = factor_vae_votes(*data, num_eval, rng, global_variances, active, **kw)
    return {**factor_vae_from_votes(train, test), "num_active_dims": int(active.sum())}
