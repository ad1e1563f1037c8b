"""scikit-learn's ``GradientBoostingClassifier()`` with its defaults, for every factor at once,
compiled with JAX: DCI's classifiers without sklearn's per-tree cost.

The algorithm is sklearn's (1.x, ``loss="log_loss"``, 100 stages, learning rate 0.1, depth-3
regression trees on the negative gradient with the squared-error criterion, ``min_samples_split
= 2``, ``min_samples_leaf = 1``, no subsampling, all features at every split):

* init: the class priors (``DummyClassifier(strategy="prior")``) through the link: log p_k for
  several classes (the multinomial loss, one tree per class per stage), logit p_1 for two (the
  binomial loss, one tree per stage); probabilities clipped to [eps, 1 - eps];
* per stage and tree: the negative gradient ``g = 1{y = k} - p_k``; the tree is grown level by
  level; a node is a leaf when it holds fewer than 2 points or its variance of ``g`` is at most
  float64 eps; otherwise it takes the split (feature, threshold) of the largest
  ``S_l^2 / n_l + S_r^2 / n_r`` (sums and counts of ``g`` on each side), thresholds lying between
  consecutive float32 feature values more than 1e-7 apart, at their midpoint;
* leaf values: one Newton step, ``(K - 1) / K * sum g / sum p (1 - p)`` (several classes) or
  ``sum g / sum p (1 - p)`` (two), 0 where the denominator is below 1e-150; the raw prediction
  moves by 0.1 times the leaf value;
* feature importances: per tree, the sum over its splits of ``n_t var_t - n_l var_l - n_r
  var_r`` over N, for the split's feature; averaged over the trees that split at all and
  normalised to sum 1 (``feature_importances_``);
* prediction: the class of the largest raw score (two classes: class 1 when its score is > 0).

Where it can differ from sklearn: sklearn visits the features in an order drawn from its
``random_state`` and keeps the first of exactly equal best splits; this keeps the lowest feature
and the lowest threshold. Sums run in a different order, so a split whose criterion ties a
competitor to the last bits can go the other way. Tests compare the two on the same points.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

N_STAGES = 100
LEARNING_RATE = 0.1
MAX_DEPTH = 3
FEATURE_THRESHOLD = np.float32(1e-7)  # sklearn's tree/_partitioner.pxd
EPS = float(np.finfo(np.float64).eps)


def _slots(factors: np.ndarray):
    """Per factor its classes; per tree slot (one per class, or one for a two-class factor)
    its factor, the class it scores, whether it is binomial and its Newton step factor."""
    classes, slot_factor, slot_class, binary = [], [], [], []
    for f in range(factors.shape[1]):
        c = np.unique(factors[:, f])
        if c.size < 2:
            raise ValueError(
                f"factor {f} takes the single value {c.tolist()} on the training points; "
                "a classifier needs at least 2 classes"
            )
        classes.append(c)
        ks = [1] if c.size == 2 else list(range(c.size))
        slot_factor += [f] * len(ks)
        slot_class += ks
        binary += [c.size == 2] * len(ks)
    k = np.array([classes[f].size for f in slot_factor], np.float64)
    scale = np.where(binary, 1.0, (k - 1) / k)
    return classes, np.array(slot_factor), np.array(slot_class), np.array(binary), scale


def fit_boosted_trees(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One boosted classifier per factor, all fitted together.

    Args:
      x_train: ``[N, D]`` features (cast to float32, as sklearn's trees do).
      y_train: ``[N, F]`` integer classes, one column per factor.
      x_test: ``[M, D]`` points to predict.

    Returns:
      ``(importances [D, F] (each column sums to 1, or is 0), predictions on x_train [N, F],
      predictions on x_test [M, F])``.
    """
    x = np.asarray(x_train, np.float32)
    xt = np.asarray(x_test, np.float32)
    y = np.asarray(y_train)
    classes, slot_factor, slot_class, binary, scale = _slots(y)
    encoded = np.stack([np.searchsorted(c, y[:, f]) for f, c in enumerate(classes)], axis=1)
    targets = (encoded[:, slot_factor] == slot_class[None, :]).T.astype(np.float64)  # [T, N]
    eps = np.finfo(np.float64).eps
    prior = np.clip(targets.mean(axis=1), eps, 1 - eps)
    init = np.where(binary, np.log(prior / (1 - prior)), np.log(prior))
    order = np.argsort(x, axis=0, kind="stable").T  # [D, N]
    with jax.enable_x64(True):
        raw, raw_test, importance = _fit(
            jnp.asarray(targets),
            jnp.asarray(init),
            jnp.asarray(order),
            jnp.asarray(x),
            jnp.asarray(xt),
            jnp.asarray(slot_factor),
            jnp.asarray(binary),
            jnp.asarray(scale),
            num_factors=len(classes),
        )
        raw, raw_test, importance = map(np.asarray, (raw, raw_test, importance))
    per_factor = np.zeros((len(classes), x.shape[1]))
    np.add.at(per_factor, slot_factor, importance)
    totals = per_factor.sum(axis=1, keepdims=True)
    per_factor = np.where(totals > 0, per_factor / np.where(totals > 0, totals, 1.0), 0.0)

    def predict(scores):
        out = []
        for f, c in enumerate(classes):
            s = scores[slot_factor == f]
            out.append(c[(s[0] > 0).astype(int)] if c.size == 2 else c[np.argmax(s, axis=0)])
        return np.stack(out, axis=1)

    return per_factor.T, predict(raw), predict(raw_test)


def _node_stats(g, node, num_nodes):
    """Counts, sums and sums of squares of ``g [T, N]`` per node ``[T, num_nodes]``."""
    onehot = node[..., None] == jnp.arange(num_nodes)
    count = onehot.sum(axis=1).astype(g.dtype)
    total = jnp.einsum("tn,tnj->tj", g, onehot.astype(g.dtype))
    squares = jnp.einsum("tn,tnj->tj", g * g, onehot.astype(g.dtype))
    return count, total, squares


def _variance(count, total, squares):
    safe = jnp.maximum(count, 1.0)
    return jnp.where(count > 0, squares / safe - (total / safe) ** 2, 0.0)


def _best_split(g, node, num_nodes, count, total, xs, order):
    """For one feature: the best criterion and threshold of each node ``[T, J]``."""
    gs, ns = g[:, order], node[:, order]
    onehot = ns[..., None] == jnp.arange(num_nodes)  # [T, N, J]
    left_sum = jnp.cumsum(jnp.where(onehot, gs[..., None], 0.0), axis=1)
    left_n = jnp.cumsum(onehot, axis=1).astype(g.dtype)
    values = jnp.where(onehot, xs[None, :, None], jnp.inf)
    after = jax.lax.cummin(values[:, ::-1], axis=1)[:, ::-1]  # min over positions >= i
    nxt = jnp.concatenate([after[:, 1:], jnp.full_like(after[:, :1], jnp.inf)], axis=1)
    here = xs[None, :, None]
    valid = onehot & (nxt > here + FEATURE_THRESHOLD) & jnp.isfinite(nxt)
    right_n = count[:, None, :] - left_n
    right_sum = total[:, None, :] - left_sum
    proxy = left_sum**2 / jnp.maximum(left_n, 1.0) + right_sum**2 / jnp.maximum(right_n, 1.0)
    proxy = jnp.where(valid, proxy, -jnp.inf)
    at = jnp.argmax(proxy, axis=1)  # [T, J]: the first of equal maxima
    best = jnp.take_along_axis(proxy, at[:, None, :], axis=1)[:, 0]
    lo = xs[at].astype(jnp.float64)
    hi = jnp.take_along_axis(nxt, at[:, None, :], axis=1)[:, 0].astype(jnp.float64)
    mid = lo / 2.0 + hi / 2.0
    threshold = jnp.where((mid == hi) | ~jnp.isfinite(mid), lo, mid)
    return best, threshold


def _tree(g, x, xt, xs, order):
    """One depth-3 regression tree per slot on ``g [T, N]``: the leaf of every training and
    test point (heap numbering), and the tree's unnormalised importances ``[T, D]``."""
    t, n = g.shape
    d = x.shape[1]
    node = jnp.zeros((t, n), jnp.int32)  # node within the level; -1 once in a leaf
    leaf = jnp.zeros((t, n), jnp.int32)
    test_node = jnp.zeros((t, xt.shape[0]), jnp.int32)  # heap index
    importance = jnp.zeros((t, d), g.dtype)
    stats = _node_stats(g, node, 1)
    for level in range(MAX_DEPTH):
        j = 2**level
        count, total, squares = stats
        var = _variance(count, total, squares)
        best, threshold = jax.lax.map(
            lambda args, j=j, node=node, count=count, total=total: _best_split(
                g, node, j, count, total, *args
            ),
            (xs, order),
        )  # [D, T, J]
        feature = jnp.argmax(best, axis=0)  # the lowest feature of equal maxima
        best = jnp.max(best, axis=0)
        threshold = jnp.take_along_axis(threshold, feature[None], axis=0)[0]
        split = (count >= 2) & (var > EPS) & jnp.isfinite(best)
        at = jnp.maximum(node, 0)
        f_n = jnp.take_along_axis(feature, at, axis=1)
        thr_n = jnp.take_along_axis(threshold, at, axis=1)
        goes = (node >= 0) & jnp.take_along_axis(split, at, axis=1)
        right = x.T[f_n, jnp.arange(n)[None, :]].astype(jnp.float64) > thr_n
        stops = (node >= 0) & ~goes
        leaf = jnp.where(stops, j - 1 + node, leaf)
        node = jnp.where(goes, 2 * node + right, jnp.where(stops, -1, node))
        children = _node_stats(g, node, 2 * j)
        c_count, _, _ = children
        c_var = _variance(*children)
        gain = count * var - c_count[:, 0::2] * c_var[:, 0::2] - c_count[:, 1::2] * c_var[:, 1::2]
        gain = jnp.where(split, gain / n, 0.0)
        importance = importance + jnp.einsum("tj,tjd->td", gain, jax.nn.one_hot(feature, d))
        # the test points: those at a split node of this level move to a child
        local = test_node - (j - 1)
        inside = (local >= 0) & (local < j)
        lat = jnp.clip(local, 0, j - 1)
        t_split = inside & jnp.take_along_axis(split, lat, axis=1)
        t_f = jnp.take_along_axis(feature, lat, axis=1)
        t_thr = jnp.take_along_axis(threshold, lat, axis=1)
        t_right = xt.T[t_f, jnp.arange(xt.shape[0])[None, :]].astype(jnp.float64) > t_thr
        test_node = jnp.where(t_split, 2 * test_node + 1 + t_right, test_node)
        stats = children
    leaf = jnp.where(node >= 0, 2**MAX_DEPTH - 1 + node, leaf)
    return leaf, test_node, importance


@functools.partial(jax.jit, static_argnames="num_factors")
def _fit(targets, init, order, x, xt, slot_factor, binary, scale, *, num_factors):
    num_leaves = 2 ** (MAX_DEPTH + 1) - 1
    xs = jnp.take_along_axis(x.T, order, axis=1)  # [D, N] sorted values
    t, n = targets.shape

    def probabilities(raw):
        top = jax.ops.segment_max(raw, slot_factor, num_segments=num_factors)
        e = jnp.exp(raw - top[slot_factor])
        softmax = e / jax.ops.segment_sum(e, slot_factor, num_segments=num_factors)[slot_factor]
        return jnp.where(binary[:, None], jax.nn.sigmoid(raw), softmax)

    def stage(carry, _):
        raw, raw_test, importance = carry
        p = probabilities(raw)
        g = targets - p
        leaf, test_leaf, tree_importance = _tree(g, x, xt, xs, order)
        onehot = jax.nn.one_hot(leaf, num_leaves, dtype=g.dtype)  # [T, N, L]
        num = jnp.einsum("tn,tnl->tl", g, onehot)
        den = jnp.einsum("tn,tnl->tl", p * (1 - p), onehot)
        value = jnp.where(
            jnp.abs(den) < 1e-150, 0.0, scale[:, None] * num / jnp.where(den == 0, 1.0, den)
        )
        raw = raw + LEARNING_RATE * jnp.take_along_axis(value, leaf, axis=1)
        raw_test = raw_test + LEARNING_RATE * jnp.take_along_axis(value, test_leaf, axis=1)
        return (raw, raw_test, importance + tree_importance), None

    raw0 = jnp.broadcast_to(init[:, None], (t, n))
    raw_test0 = jnp.broadcast_to(init[:, None], (t, xt.shape[0]))
    (raw, raw_test, importance), _ = jax.lax.scan(
        stage, (raw0, raw_test0, jnp.zeros((t, x.shape[1]), targets.dtype)), None, length=N_STAGES
    )
    return raw, raw_test, importance
