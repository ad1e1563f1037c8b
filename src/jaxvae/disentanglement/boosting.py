"""scikit-learn's ``GradientBoostingClassifier()`` with its defaults, re-implemented (numpy and
numba) for DCI's classifiers (one factor at a time), without sklearn's per-tree cost.

The algorithm is sklearn's (1.x, ``loss="log_loss"``, 100 stages, learning rate 0.1, depth-3
regression trees with the squared-error criterion on the negative gradient, ``min_samples_split
= 2``, ``min_samples_leaf = 1``, no subsampling, every feature at every split):

* features are cast to float32; init: the class priors, clipped to [eps, 1 - eps], through the
  link: ``log p_k - mean_k log p_k`` for K >= 3 classes (one tree per class per stage), ``logit
  p_1`` for two (one tree per stage);
* per stage: the negative gradient ``g = 1{y = k} - p_k`` (softmax, or the sigmoid for two
  classes) of the stage's raw scores; each tree is grown on ``g`` depth first in sklearn, level
  by level here (the same tree): a node splits when it holds >= 2 points and its impurity
  ``sum g^2 / n - (sum g / n)^2`` exceeds float64 eps, at the (feature, position) of the largest
  ``S_l^2 / n_l + S_r^2 / n_r`` over positions between consecutive sorted float32 values more
  than 1e-7 apart, threshold at their midpoint;
* leaf values: one Newton step, ``(K - 1) / K * mean g / mean p (1 - p)`` (``mean g / mean p (1 -
  p)`` for two classes), 0 where the denominator is below 1e-150; the raw scores move by 0.1
  times the leaf value;
* feature importances: per tree, the sum over its splits of ``n_t imp_t - n_l imp_l - n_r imp_r``
  over N for the split's feature, averaged over the trees that split at all, normalised to sum 1;
* prediction: the class of the largest raw score (two classes: class 1 when its score is >= 0).

How it is fast: the trees are grown by compiled loops (numba, cached on disk after the first
compilation) over a layout sklearn does not keep: each feature is sorted once; a level's points
are laid out per feature in feature order grouped by node (the root: that order; below, each
split node's points partitioned stably into its children's), so a node's candidates are one
pass per feature; the exact proxy's two divisions are done only where a bound from
reciprocals does not rule the position out. The trees and scores are the same, bit for bit, as
the earlier numpy version's (importances to 1e-16: summed in another order), about 3x faster
(and than sklearn, 10-20x): docs/disentanglement.md.

Where it can differ from sklearn: only where two candidate splits tie in exact arithmetic, which
is common (the first stage's residuals take two values per tree, and small nodes offer several
features that cut off the same points). sklearn visits the features in an order drawn per node
from its ``random_state`` and keeps the first of equal proxies, and rounds as its summation order
has it (``S_l`` from the node's first point in feature order, as here; the node's ``S`` in the
points' order at the root, as here, and in its partition's order below, which this sums in
feature order). This breaks exact ties between features by an order drawn per node from
``seed`` (the first visited wins, as in sklearn); ties within one feature go to the first
position unless rounding says otherwise. Measured against sklearn's ``random_state`` 0 and 1:
tests/test_dci_boosting.py. One feature (no feature ties): sklearn's raw scores to 1e-9 on the
tested points. Codes with chains of values closer than 1e-7 yet spanning more are refused with
``NearTies`` (a ValueError): sklearn's tie rule would then depend on each node's points.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from scipy import special, stats

N_STAGES = 100
LEARNING_RATE = 0.1
MAX_DEPTH = 3
FEATURE_THRESHOLD = np.float32(1e-7)  # sklearn's tree/_partitioner.pxd
EPSILON = float(np.finfo(np.float64).eps)  # sklearn's tree/_tree.pyx
_INTERNAL = 2**MAX_DEPTH - 1  # heap-numbered split nodes of a depth-3 tree
_NODES = 2 ** (MAX_DEPTH + 1) - 1


class NearTies(ValueError):
    """Codes whose values chain closer than 1e-7 yet span more (see the module docstring)."""


class Boosted(NamedTuple):
    """A fitted classifier's numbers: its ``classes [K]``, raw scores (sklearn's
    ``decision_function``, ``[N, K]``, ``[N, 1]`` for two classes) on the training and the test
    points, and ``feature_importances [D]``."""

    classes: np.ndarray
    raw_train: np.ndarray
    raw_test: np.ndarray
    feature_importances: np.ndarray

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """The predicted classes of raw scores ``[M, K]``."""
        if raw.shape[1] == 1:
            return self.classes[(raw[:, 0] >= 0).astype(int)]
        return self.classes[np.argmax(raw, axis=1)]


def _runs(xs: np.ndarray) -> np.ndarray:
    """Run ids ``[D, N]`` of sorted float32 values ``xs``: a new run starts where a value exceeds
    its predecessor by more than 1e-7 (no split between points of one run)."""
    new = np.ones(xs.shape, bool)
    new[:, 1:] = xs[:, 1:] > xs[:, :-1] + FEATURE_THRESHOLD
    for d in range(xs.shape[0]):
        start = np.flatnonzero(new[d])
        end = np.append(start[1:], xs.shape[1]) - 1
        if np.any(xs[d, end] > xs[d, start] + FEATURE_THRESHOLD):
            raise NearTies(
                f"feature {d} has values closer than {FEATURE_THRESHOLD} to their neighbours yet "
                "spanning more; expected codes with distinct or exactly tied values"
            )
    return np.cumsum(new, axis=1)


def _layout(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's stable argsort of float32 ``x [N, D]`` and each point's run id per
    feature, both int32 ``[D, N]`` (the trees' inputs)."""
    order = np.argsort(x.T, axis=1, kind="stable").astype(np.int32)
    run = np.empty_like(order)
    np.put_along_axis(run, order, _runs(np.take_along_axis(x.T, order, axis=1)), axis=1)
    return order, run


def fit(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, seed: int = 0) -> Boosted:
    """Fits the boosted trees on ``x_train [N, D]``, ``y_train [N]`` and scores ``x_test [M, D]``.

    ``seed`` orders the features where their best splits tie exactly (see the module docstring).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x_train, np.float32)
    xt = np.asarray(x_test, np.float32)
    classes, encoded = np.unique(np.asarray(y_train), return_inverse=True)
    if x.ndim != 2 or xt.ndim != 2 or xt.shape[1] != x.shape[1] or encoded.shape != x.shape[:1]:
        raise ValueError(
            f"expected x_train [N, D], y_train [N], x_test [M, D]; got {x.shape}, "
            f"{np.shape(y_train)}, {xt.shape}"
        )
    if classes.size < 2:
        raise ValueError(
            f"y_train takes the single value {classes.tolist()}; expected >= 2 classes"
        )
    n, k = x.shape[0], classes.size
    eps = np.finfo(np.float64).eps
    prior = np.clip(np.bincount(encoded, minlength=k) / n, eps, 1 - eps)
    if k == 2:
        targets = (encoded == 1)[None].astype(np.float64)
        init, scale = special.logit(prior[1:]), 1.0
    else:
        targets = (encoded[None] == np.arange(k)[:, None]).astype(np.float64)
        init, scale = np.log(prior / stats.gmean(prior)), (k - 1) / k
    order, run = _layout(x)
    raw = np.repeat(init[:, None], n, axis=1)
    raw_test = np.repeat(init[:, None], xt.shape[0], axis=1)
    importance, relevant = np.zeros(x.shape[1]), 0
    for _ in range(N_STAGES):
        if k == 2:
            p = special.expit(raw)
        else:
            e = np.exp(raw - raw.max(axis=0))
            p = e / e.sum(axis=0)
        g = targets - p
        prob = targets - g  # sklearn's p, as it recovers it from the negative gradient
        hessian = prob * (1 - prob)
        # per tree, split node and feature: its rank where features tie
        priority = rng.random((g.shape[0], _INTERNAL, x.shape[1]))
        leaf, feature, threshold, split, tree_importance = _grow(g, x, order, run, priority)
        value = _newton_step(leaf, g, hessian, scale)
        raw += LEARNING_RATE * np.take_along_axis(value, leaf, axis=1)
        test_leaf = _apply(xt, feature, threshold, split)
        raw_test += LEARNING_RATE * np.take_along_axis(value, test_leaf, axis=1)
        importance += tree_importance[split[:, 0]].sum(axis=0)
        relevant += int(split[:, 0].sum())
    if relevant:
        importance = importance / relevant
        importance = importance / importance.sum()
    return Boosted(classes, raw.T, raw_test.T, importance)


def _newton_step(leaf, g, hessian, scale):
    """Leaf values ``[C, 15]`` (heap numbering): sklearn's Newton step of each leaf."""
    c = g.shape[0]
    ids = (leaf + _NODES * np.arange(c)[:, None]).ravel()
    count = np.bincount(ids, minlength=c * _NODES)
    safe = np.maximum(count, 1)
    numerator = np.bincount(ids, g.ravel(), c * _NODES) / safe * scale
    denominator = np.bincount(ids, hessian.ravel(), c * _NODES) / safe
    tiny = np.abs(denominator) < 1e-150
    return np.where(tiny, 0.0, numerator / np.where(tiny, 1.0, denominator)).reshape(c, _NODES)


_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _apply(x, feature, threshold, split):
    """The leaf (heap numbering) of each point of ``x [M, D]`` in each tree: ``[C, M]``."""
    leaf = np.zeros((feature.shape[0], x.shape[0]), np.int64)
    for t in range(feature.shape[0]):
        for m in range(x.shape[0]):
            h = 0
            while h < _INTERNAL and split[t, h]:
                h = 2 * h + 1 + (np.float64(x[m, feature[t, h]]) > threshold[t, h])
            leaf[t, m] = h
    return leaf


@_jit
def _node_sums(node, g, num):
    """Counts, sums and sums of squares of ``g [N]`` per node id in ``[0, num)``, in the points'
    order (as ``np.bincount`` sums)."""
    count = np.zeros(num, np.int64)
    total = np.zeros(num)
    squares = np.zeros(num)
    for i in range(g.shape[0]):
        count[node[i]] += 1
        total[node[i]] += g[i]
        squares[node[i]] += g[i] * g[i]
    return count, total, squares


@_jit
def _weighted_impurity(count, total, squares):
    """``n * impurity`` of nodes, sklearn's MSE impurity ``sq / n - (sum / n)^2``."""
    safe = np.maximum(count, 1)
    mean = total / safe
    return count * (squares / safe - mean * mean)


@_jit
def _node_split(points, g, run, total, lo, hi, inverse, priority, left):
    """The best split of the node whose points lie in columns ``[lo, hi)`` of ``points [D, *]``
    (each feature's in feature order): ``(feature, the points either side)``, feature -1 where
    no position separates two runs.

    sklearn's proxy ``S_l^2 / n_l + S_r^2 / n_r`` (``S_l`` summed from the node's first point in
    feature order, into ``left``; ``S_r = S - S_l``; ``S`` the node's sum in feature order, or
    ``total`` where it is not nan) is computed exactly only where a bound from reciprocals
    (within 1e-15 of it, relatively; both terms are >= 0) does not rule the position out against
    the best exact proxy so far, so its divisions are rare. Of a feature's equal maxima the
    first position wins; of features whose best splits tie exactly, the lowest ``priority``."""
    d = points.shape[0]
    f_best = np.full(d, -np.inf)
    f_pos = np.full(d, -1)
    size = np.float64(hi - lo)
    cut = -np.inf
    for f in range(d):
        s = 0.0
        for i in range(lo, hi):
            s += g[points[f, i]]
            left[i] = s
        node_sum = s if np.isnan(total) else total
        for i in range(lo, hi - 1):
            s = left[i]
            r = node_sum - s
            if s * s * inverse[i - lo + 1] + r * r * inverse[hi - i - 1] >= cut:
                n_left = np.float64(i - lo) + 1.0
                proxy = s * s / n_left + r * r / (size - n_left)
                if proxy > f_best[f] and run[f, points[f, i]] != run[f, points[f, i + 1]]:
                    f_best[f] = proxy
                    f_pos[f] = i
                    cut = max(cut, proxy * (1.0 - 1e-12))
    best = -1
    for f in range(d):
        if f_pos[f] >= 0 and (
            best < 0
            or f_best[f] > f_best[best]
            or (f_best[f] == f_best[best] and priority[f] < priority[best])
        ):
            best = f
    if best < 0:
        return -1, 0, 0
    return best, points[best, f_pos[best]], points[best, f_pos[best] + 1]


@_jit
def _grow(g, x, order, run, priority):
    """One depth-3 regression tree per row of ``g [C, N]`` (``x [N, D]`` float32, ``order
    [D, N]`` each feature's stable argsort, ``run [D, N]`` each point's run id per feature: no
    split between two points of one run, ``priority [C, 7, D]`` the features' ranks where best
    splits tie).

    Returns:
      the leaf of every training point ``[C, N]`` and, per tree, its split nodes' features,
      thresholds and whether they split ``[C, 7]`` (heap numbering) and its unnormalised
      importances ``[C, D]``.
    """
    c, n = g.shape
    d = order.shape[0]
    feature = np.zeros((c, _INTERNAL), np.int64)
    threshold = np.zeros((c, _INTERNAL))
    split = np.zeros((c, _INTERNAL), np.bool_)
    importance = np.zeros((c, d))
    leaf = np.zeros((c, n), np.int64)
    inverse = 1.0 / np.maximum(np.arange(n + 1), 1.0)
    # scratch reused by every tree: node ids, two layouts of points (a gap after each node's)
    node = np.empty(n, np.int32)
    layouts = np.empty((2, d, n + 2 * _INTERNAL + 2), order.dtype)
    left = np.empty(n + 2 * _INTERNAL + 2)
    for t in range(c):
        _tree(
            g[t],
            x,
            order,
            run,
            priority[t],
            inverse,
            (node, layouts, left),
            (feature[t], threshold[t], split[t], importance[t], leaf[t]),
        )
    return leaf, feature, threshold, split, importance


@_jit
def _tree(g, x, order, run, priority, inverse, scratch, out):
    """Grows one tree on the residuals ``g [N]`` into the rows ``out`` (see :func:`_grow`), level
    by level (sklearn grows depth first: the same tree): a node splits when it holds >= 2
    points and its impurity exceeds float64 eps, at its best split (:func:`_node_split`, the
    node's ``S`` summed in the points' order at the root, in feature order below), the threshold
    at the midpoint of the two points' float32 values. Each level's points are laid out per
    feature in feature order grouped by node (the root: ``order``), each split node's points
    partitioned stably into its children's columns for the next."""
    d, n = order.shape
    node, layouts, left = scratch  # node: within the level; `2 * width` once in a leaf
    feature, threshold, split, importance, leaf = out
    node[:] = 0
    count, total, squares = _node_sums(node, g, 2)
    points = order
    start = np.zeros(2, np.int64)  # the columns of each node's points
    width = 1  # nodes in the level
    for level in range(MAX_DEPTH):
        heap = width - 1
        weighted = _weighted_impurity(count, total, squares)
        searched = (count[:width] >= 2) & (
            weighted[:width] / np.maximum(count[:width], 1) > EPSILON
        )
        if not searched.any():
            break
        for j in range(width):
            if not searched[j]:
                continue
            f, below, above = _node_split(
                points,
                g,
                run,
                total[0] if level == 0 else np.nan,
                start[j],
                start[j] + count[j],
                inverse,
                priority[heap + j],
                left,
            )
            if f >= 0:
                lower = np.float64(x[below, f])
                upper = np.float64(x[above, f])
                threshold[heap + j] = lower / 2.0 + upper / 2.0
                feature[heap + j] = f
                split[heap + j] = True
        # route the points of split nodes; the others become leaves
        for i in range(n):
            h = heap + node[i]
            if node[i] >= width:
                node[i] = 2 * width
            elif split[h]:
                node[i] = 2 * node[i] + (np.float64(x[i, feature[h]]) > threshold[h])
            else:
                leaf[i] = h
                node[i] = 2 * width
        child_count, child_total, child_squares = _node_sums(node, g, 2 * width + 1)
        child = _weighted_impurity(child_count, child_total, child_squares)
        for j in range(width):
            if split[heap + j]:
                gain = weighted[j] - child[2 * j] - child[2 * j + 1]
                importance[feature[heap + j]] += gain / n
        if level + 1 < MAX_DEPTH:  # each split node's points into its children's columns
            child_start = np.zeros(2 * width + 1, np.int64)
            for k in range(2 * width):  # a gap column after each child: the writes' trash
                child_start[k + 1] = child_start[k] + child_count[k] + 1
            following = layouts[level % 2]
            for j in range(width):
                if not split[heap + j]:
                    continue
                lo, hi = start[j], start[j] + count[j]
                for f in range(d):
                    at_left, at_right = child_start[2 * j], child_start[2 * j + 1]
                    for i in range(lo, hi):
                        p = points[f, i]
                        right = node[p] & 1
                        following[f, at_left] = p
                        following[f, at_right] = p
                        at_left += 1 - right
                        at_right += right
            points, start = following, child_start
        count, total, squares = child_count, child_total, child_squares
        width *= 2
    for i in range(n):  # the points still in a node of the last level end there
        if node[i] < width:
            leaf[i] = width - 1 + node[i]
