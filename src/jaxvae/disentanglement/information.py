"""Histogram discretisation and discrete mutual information (nats), as disentanglement_lib's
MIG, modularity and unsupervised scores use them.

The discretiser puts each code dimension into ``num_bins`` equal-width bins spanning its own
observed range (numpy's histogram bin edges; the maximum falls in the last bin). Mutual
information is the plug-in estimate from the joint counts:
``I(X; Y) = sum_xy p(x, y) log(p(x, y) / (p(x) p(y)))``.
"""

from __future__ import annotations

import numpy as np


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin index in ``[0, num_bins)`` of every entry of ``codes [N, D]``, per dimension."""
    if int(num_bins) != num_bins or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    codes = np.asarray(codes, np.float64)
    out = np.empty(codes.shape, np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, d], bins=num_bins)
        # Bin i holds edges[i] <= x < edges[i + 1]; the last bin also holds the maximum.
        out[:, d] = np.searchsorted(edges[1:-1], codes[:, d], side="right")
    return out


def _labels(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` relabelled to ``0..k-1`` and ``k``, the number of distinct values."""
    values, inverse = np.unique(x, return_inverse=True)
    return inverse.reshape(-1), values.size


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``I(a_i; b_j)`` in nats for every column ``i`` of ``a [N, P]`` and ``j`` of ``b [N, Q]``.

    Returns:
      ``[P, Q]`` float64.
    """
    a, b = np.asarray(a), np.asarray(b)
    n = a.shape[0]
    b_labels = [_labels(b[:, j]) for j in range(b.shape[1])]
    mi = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        x, kx = _labels(a[:, i])
        for j, (y, ky) in enumerate(b_labels):
            joint = np.bincount(x * ky + y, minlength=kx * ky).reshape(kx, ky) / n
            outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
            nz = joint > 0
            mi[i, j] = max(float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz]))), 0.0)
    return mi


def discrete_entropy(b: np.ndarray) -> np.ndarray:
    """``H(b_j)`` in nats of every column of ``b [N, Q]``."""
    b = np.asarray(b)
    out = np.zeros(b.shape[1])
    for j in range(b.shape[1]):
        p = np.bincount(_labels(b[:, j])[0]) / b.shape[0]
        out[j] = -np.sum(p * np.log(p))
    return out
