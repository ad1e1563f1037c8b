"""scikit-learn's ``GradientBoostingClassifier()`` with its defaults, re-implemented in numpy for
DCI's classifiers (one factor at a time), without sklearn's per-tree cost.

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

How it is fast: each feature is sorted once, for every tree; a level of a tree is searched in
one pass over every feature, its points kept in feature order and grouped by node (a stable
radix sort of the int8 node ids), so one cumulative sum per node and feature gives every
candidate's ``S_l``; the trees of a stage are searched together, in chunks that fit the caches.
What remains is numpy's cost per element (the cumulative sums, the regrouping gathers): about 5x
less CPU than sklearn at 10,000 points, not 10x (docs/disentanglement.md).

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

import numpy as np
from scipy import special, stats

N_STAGES = 100
LEARNING_RATE = 0.1
MAX_DEPTH = 3
FEATURE_THRESHOLD = np.float32(1e-7)  # sklearn's tree/_partitioner.pxd
EPSILON = float(np.finfo(np.float64).eps)  # sklearn's tree/_tree.pyx
_CHUNK = 300_000  # trees x features x points searched at once (a few megabytes)
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
    order = np.argsort(x, axis=0, kind="stable").T.copy()  # [D, N]
    run = _runs(np.take_along_axis(x.T, order, axis=1))
    raw = np.repeat(init[:, None], n, axis=1)
    raw_test = np.repeat(init[:, None], xt.shape[0], axis=1)
    importance, relevant = np.zeros(x.shape[1]), 0
    chunk = max(1, _CHUNK // x.size)
    # [C, D, N] arrays reused across trees (fresh ones of megabytes cost page faults)
    buffers = np.empty((4, min(chunk, targets.shape[0]), *order.shape))
    buffers = (*buffers, np.empty(buffers.shape[1:], np.int8))
    for _ in range(N_STAGES):
        if k == 2:
            p = special.expit(raw)
        else:
            e = np.exp(raw - raw.max(axis=0))
            p = e / e.sum(axis=0)
        g = targets - p
        prob = targets - g  # sklearn's p, as it recovers it from the negative gradient
        hessian = prob * (1 - prob)
        # per tree, split node and feature: its rank where features tie (whatever the chunks)
        priority = rng.random((g.shape[0], _INTERNAL, x.shape[1]))
        for lo in range(0, g.shape[0], chunk):
            hi = min(lo + chunk, g.shape[0])
            leaf, feature, threshold, split, tree_importance = _grow(
                g[lo:hi], x, order, run, priority[lo:hi], buffers
            )
            value = _newton_step(leaf, g[lo:hi], hessian[lo:hi], scale)
            raw[lo:hi] += LEARNING_RATE * np.take_along_axis(value, leaf, axis=1)
            test_leaf = _apply(xt, feature, threshold, split)
            raw_test[lo:hi] += LEARNING_RATE * np.take_along_axis(value, test_leaf, axis=1)
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


def _apply(x, feature, threshold, split):
    """The leaf (heap numbering) of each point of ``x [M, D]`` in each tree: ``[C, M]``."""
    node = np.zeros((feature.shape[0], x.shape[0]), np.intp)
    rows = np.arange(feature.shape[0])[:, None]
    cols = np.arange(x.shape[0])[None]
    for _ in range(MAX_DEPTH):
        inner = np.minimum(node, _INTERNAL - 1)
        goes = split[rows, inner] & (node < _INTERNAL)
        right = x[cols, feature[rows, inner]] > threshold[rows, inner]
        node = np.where(goes, 2 * node + 1 + right, node)
    return node


def _node_sums(node, g, num):
    """Counts, sums and sums of squares of ``g [C, N]`` per node id in ``[0, num)``: ``[C, num]``."""
    c = g.shape[0]
    ids = (node + num * np.arange(c)[:, None]).ravel()
    count = np.bincount(ids, minlength=c * num).reshape(c, num)
    total = np.bincount(ids, g.ravel(), c * num).reshape(c, num)
    squares = np.bincount(ids, (g * g).ravel(), c * num).reshape(c, num)
    return count, total, squares


def _per_position(sizes, table):
    """A value per node ``table [C, J]``, repeated over the node's positions: ``[C, N]``."""
    return np.repeat(np.ravel(table), sizes).reshape(len(table), -1)


def _weighted_impurity(count, total, squares):
    """``n * impurity`` of nodes, sklearn's MSE impurity ``sq / n - (sum / n)^2``."""
    safe = np.maximum(count, 1)
    return count * (squares / safe - (total / safe) ** 2)


def _grow(g, x, order, run, priority, buffers):
    """One depth-3 regression tree per row of ``g [C, N]``.

    Returns:
      the leaf of every training point ``[C, N]`` and, per tree, its split nodes' features,
      thresholds and whether they split ``[C, 7]`` (heap numbering) and its unnormalised
      importances ``[C, D]``.
    """
    c, n = g.shape
    d = order.shape[0]
    rows = np.arange(c)
    positions = np.arange(n)
    proxy, right_sum, gs0, grouped = (b[:c] for b in buffers[:4])
    for t in range(c):  # [C, D, N]: the residual in each feature's order
        np.take(g[t], order, out=gs0[t])
    feature = np.zeros((c, _INTERNAL), np.intp)
    threshold = np.zeros((c, _INTERNAL))
    split = np.zeros((c, _INTERNAL), bool)
    importance = np.zeros((c, d))
    node = np.zeros((c, n), np.int8)  # the node within the level; `width` once in a leaf
    leaf = np.zeros((c, n), np.intp)
    count, total, squares = _node_sums(node, g, 2)
    dense = np.flatnonzero(np.sum(run[:, 1:] == run[:, :-1], axis=1) > n // 100)
    width = 1  # nodes in the level
    for level in range(MAX_DEPTH):
        impurity = _weighted_impurity(count, total, squares) / np.maximum(count, 1)
        splittable = (count[:, :width] >= 2) & (impurity[:, :width] > EPSILON)
        if not splittable.any():
            break
        if level == 0:
            sidx, gs = None, gs0
        else:
            # group each feature's order by node, stably (a radix sort of int8 node ids)
            by_node = np.take(node, order, axis=1, out=buffers[4][:c])
            sidx = np.argsort(by_node, axis=-1, kind="stable")
            sidx += (np.arange(c * d) * n).reshape(c, d, 1)  # flat indices into gs0
            gs = np.take(gs0, sidx, mode="wrap", out=grouped)  # in bounds; "wrap": no slow check
            sidx -= (np.arange(c * d) * n).reshape(c, d, 1)
        # per position of the node-grouped order (the same for every feature): its node's size
        # n, the points before it in its node n_l, the sums before its node and of its node
        start = np.concatenate([np.zeros((c, 1), np.intp), np.cumsum(count, axis=1)], axis=1)
        sizes = count.ravel()
        seg = _per_position(sizes, np.broadcast_to(np.arange(width + 1), count.shape))
        n_node = _per_position(sizes, count).astype(np.float64)
        n_left = positions - _per_position(sizes, start[:, :-1]) + 1.0
        n_right = n_node - n_left
        ok = _per_position(sizes, np.pad(splittable, ((0, 0), (0, 1)))) & (n_right > 0)
        # sklearn's proxy S_l^2 / n_l + S_r^2 / n_r, with S_l summed from the node's first point
        # in feature order and S_r = S - S_l, summed as sklearn sums them (S: in the points' order
        # at the root, in feature order below), so that splits which tie in exact arithmetic
        # mostly round as they do in sklearn
        for t, j in zip(*np.nonzero(splittable), strict=True):
            lo, hi = start[t, j], start[t, j + 1]
            left_sum = np.cumsum(gs[t, :, lo:hi], axis=-1, out=proxy[t, :, lo:hi])
            node_sum = total[t, j] if level == 0 else left_sum[:, -1:]
            np.subtract(node_sum, left_sum, out=right_sum[t, :, lo:hi])
        with np.errstate(all="ignore"):  # outside the searched nodes: stale values, then -inf
            right_sum *= right_sum
            right_sum /= np.where(ok, n_right, 1.0)[:, None]
            proxy *= proxy
            proxy /= n_left[:, None]
            proxy += right_sum
        np.copyto(proxy, -np.inf, where=~ok[:, None])
        if dense.size:  # no split between two points of one run, marked where ties are many
            if sidx is None:
                sorted_run = run[None, dense]
            else:
                sorted_run = np.take_along_axis(run[None, dense], sidx[:, dense], axis=-1)
            same = sorted_run[..., 1:] == sorted_run[..., :-1]
            proxy[:, dense, :-1] = np.where(same, -np.inf, proxy[:, dense, :-1])
        # the best split of every node: the largest proxy over its positions and the features
        # (of equal maxima: the first feature in a random order, then the lowest position)
        heap = width - 1
        first = np.arange(c * d)[:, None] * n + np.repeat(start[:, :width], d, axis=0)
        first = np.minimum(first.ravel(), c * d * n - 1)  # an empty last node reads a bound
        rank = np.swapaxes(priority[:, heap : heap + width], 1, 2)  # [C, D, width]
        while True:
            node_max = np.maximum.reduceat(proxy.reshape(-1), first).reshape(c, d, width)
            best = np.max(node_max, axis=1)
            # of features whose best splits tie exactly, the first in a random order (as sklearn,
            # which visits the features in an order drawn per node)
            tie_order = np.where(node_max == best[:, None], rank, np.inf)
            best_f = np.argmin(tie_order, axis=1)
            tc, tj = np.nonzero(splittable & (best > -np.inf))
            tf = best_f[tc, tj]
            hit = (proxy[tc, tf] == best[tc, tj, None]) & (seg[tc] == tj[:, None])
            pos = np.argmax(hit, axis=1)
            if sidx is not None:
                at, after = sidx[tc, tf, pos], sidx[tc, tf, pos + 1]
            else:
                at, after = pos, pos + 1
            # where ties are few, a split found between two points of one run is struck out
            # and the search repeated
            within = run[tf, at] == run[tf, after]
            if not within.any():
                break
            proxy[tc[within], tf[within], pos[within]] = -np.inf
        lower = x[order[tf, at], tf].astype(np.float64)
        upper = x[order[tf, after], tf].astype(np.float64)
        threshold[tc, heap + tj] = lower / 2.0 + upper / 2.0
        feature[tc, heap + tj] = tf
        split[tc, heap + tj] = True
        # route the points of split nodes; the others become leaves
        inner = heap + np.minimum(node, width - 1).astype(np.intp) + _INTERNAL * rows[:, None]
        goes = (node < width) & split.take(inner)
        right = x.T.take(feature.take(inner) * n + positions, mode="wrap") > threshold.take(inner)
        inner -= _INTERNAL * rows[:, None]
        stops = (node < width) & ~goes
        leaf = np.where(stops, inner, leaf)
        node = np.where(goes, 2 * node + right, 2 * width).astype(np.int8)
        child = _node_sums(node, g, 2 * width + 1)
        child_imp = _weighted_impurity(*child)[:, : 2 * width]
        gain = _weighted_impurity(count, total, squares)[:, :width]
        gain = gain - child_imp[:, 0::2] - child_imp[:, 1::2]
        done = split[:, heap : heap + width]
        owner = np.broadcast_to(rows[:, None], done.shape)[done]
        np.add.at(importance, (owner, feature[:, heap : heap + width][done]), gain[done] / n)
        count, total, squares = child
        width *= 2
    # the points still in a node of the last level searched (or of depth 3) end there
    final = node < width
    leaf = np.where(final, width - 1 + node.astype(np.intp), leaf)
    return leaf, feature, threshold, split, importance
