"""Disentanglement metrics against independent numpy/scipy computations, on a tiny synthetic
ground-truth dataset whose observations are a fixed random linear map of the factors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn import linear_model, metrics, multiclass, preprocessing

from jaxvae import data
from jaxvae import disentanglement as dis
from jaxvae.disentanglement import beta_vae, information, modularity, sap

SIZES = (3, 5, 8, 6)


class LinearFactors:
    """Factors drawn uniformly; an observation ``[4, 4, 1]`` is ``W @ (v / (K - 1))``."""

    factor_sizes = SIZES
    factor_names = ("shape", "scale", "angle", "position")

    def __init__(self):
        self.weights = np.random.default_rng(123).normal(size=(16, len(SIZES)))

    def sample_factors(self, num, rng):
        return rng.integers(0, SIZES, size=(num, len(SIZES)))

    def sample_observations_from_factors(self, factors, rng):
        unit = factors / (np.array(SIZES) - 1.0)
        return (unit @ self.weights.T).reshape(-1, 4, 4, 1).astype(np.float32)


DATA = LinearFactors()
assert isinstance(DATA, dis.GroundTruthData)
_PINV = np.linalg.pinv(DATA.weights)


def identity_rep(x):
    """The factors themselves (scaled to [0, 1]), recovered from the observation."""
    return x.reshape(x.shape[0], -1).astype(np.float64) @ _PINV.T


def hash_rep(x):
    """A deterministic code carrying no usable information about any single factor."""
    proj = x.reshape(x.shape[0], -1).astype(np.float64) @ np.linspace(0.3, 2.9, 16 * 5).reshape(
        16, 5
    )
    return np.modf(np.abs(np.sin(proj * 1e3)) * 43758.5453)[0]


def noise_rep(seed=0):
    """Codes drawn independently of the observation (a fresh stream per call of noise_rep)."""
    gen = np.random.default_rng(seed)
    return lambda x: gen.normal(size=(x.shape[0], 5))


def transformed(rep, perm=None, scale=None):
    def fn(x):
        z = rep(x)
        z = z if perm is None else z[:, perm]
        return z if scale is None else z * scale

    return fn


def rng(seed=0):
    return np.random.default_rng(seed)


def sampled(rep, num, seed=0):
    return dis.sample_codes_and_factors(DATA, rep, num, rng(seed))


# ----- independent references -----


def ref_discretize(z, bins=20):
    return np.stack(
        [np.digitize(z[:, i], np.histogram(z[:, i], bins)[1][:-1]) for i in range(z.shape[1])], 1
    )


def ref_mutual_information(x, y):
    joint, _, _ = np.histogram2d(
        x, y, bins=[np.arange(x.min(), x.max() + 2) - 0.5, np.arange(y.min(), y.max() + 2) - 0.5]
    )
    h = scipy.stats.entropy
    return h(joint.sum(1)) + h(joint.sum(0)) - h(joint.ravel())


def ref_mig(codes, factors):
    d = ref_discretize(codes)
    gaps = []
    for k in range(factors.shape[1]):
        mi = sorted(ref_mutual_information(d[:, i], factors[:, k]) for i in range(d.shape[1]))
        gaps.append((mi[-1] - mi[-2]) / scipy.stats.entropy(np.bincount(factors[:, k])))
    return np.mean(gaps)


# ----- information -----


def test_discretize_and_mutual_information_match_histograms():
    z = rng(1).normal(size=(700, 3)) * [1.0, 5.0, 0.01]
    y = rng(2).integers(0, 7, size=(700, 2))
    d = information.histogram_discretize(z, 20)
    np.testing.assert_array_equal(d, ref_discretize(z) - 1)
    mi = information.discrete_mutual_information(d, y)
    ref = [[ref_mutual_information(d[:, i], y[:, j]) for j in range(2)] for i in range(3)]
    np.testing.assert_allclose(mi, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        information.discrete_entropy(y),
        [scipy.stats.entropy(np.bincount(y[:, j])) for j in range(2)],
        rtol=1e-12,
    )


# ----- MIG -----


def test_mig_matches_independent_computation():
    codes, factors = sampled(lambda x: identity_rep(x) @ rng(5).normal(size=(4, 4)), 1500)
    out = dis.mig_from_codes(codes, factors)
    np.testing.assert_allclose(out["mig"], ref_mig(codes, factors), rtol=1e-10)
    assert out["mutual_information"].shape == (4, 4)
    assert 0.0 < out["mig"] < 0.9  # a rotated representation is partly entangled


def test_mig_top_bottom_invariances_determinism():
    kw = dict(num_train=2000)
    top = dis.compute_mig(DATA, identity_rep, rng(), **kw)["mig"]
    bottom = dis.compute_mig(DATA, hash_rep, rng(), **kw)["mig"]
    assert top > 0.9 and bottom < 0.1
    perm = transformed(identity_rep, perm=[2, 0, 3, 1], scale=np.array([2.0, 0.5, 4.0, 8.0]))
    assert dis.compute_mig(DATA, perm, rng(), **kw)["mig"] == pytest.approx(top, abs=1e-12)
    again = dis.compute_mig(DATA, hash_rep, rng(), **kw)
    assert again["mig"] == bottom


# ----- DCI -----


def test_dci_from_importance_matches_scipy_entropy():
    r = rng(3).uniform(size=(6, 4)) ** 3
    out = dis.dci_from_importance(r)
    d = 1 - scipy.stats.entropy(r.T, base=4)  # per code, over factors
    c = 1 - scipy.stats.entropy(r, base=6)  # per factor, over codes
    assert out["disentanglement"] == pytest.approx(np.sum(d * r.sum(1)) / r.sum(), rel=1e-8)
    assert out["completeness"] == pytest.approx(np.sum(c * r.sum(0)) / r.sum(), rel=1e-8)
    ideal = dis.dci_from_importance(np.eye(4))
    assert ideal["disentanglement"] == pytest.approx(1.0) and ideal[
        "completeness"
    ] == pytest.approx(1.0)


def test_dci_top_bottom_permutation():
    kw = dict(num_train=200, num_test=100)
    top = dis.compute_dci(DATA, identity_rep, rng(), **kw)
    assert top["disentanglement"] > 0.9 and top["completeness"] > 0.9
    assert top["informativeness_test"] > 0.95
    np.testing.assert_allclose(top["importance_matrix"].sum(0), 1.0, rtol=1e-9)
    assert np.all(np.argmax(top["importance_matrix"], 0) == np.arange(4))
    bottom = dis.compute_dci(DATA, noise_rep(), rng(), **kw)
    assert bottom["disentanglement"] < 0.3 and bottom["completeness"] < 0.3
    assert bottom["informativeness_test"] < 0.5
    perm = [3, 1, 0, 2]
    permuted = dis.compute_dci(DATA, transformed(identity_rep, perm=perm), rng(), **kw)
    np.testing.assert_allclose(
        permuted["importance_matrix"], top["importance_matrix"][perm], atol=0.02
    )
    assert permuted["disentanglement"] == pytest.approx(top["disentanglement"], abs=0.02)


def test_dci_parallel_factors_give_the_same_numbers():
    (ctr, ftr), (cte, fte) = sampled(hash_rep, 150), sampled(hash_rep, 60, seed=1)
    ctr[:, 0] += ftr[:, 0]
    cte[:, 0] += fte[:, 0]
    one = dis.dci_from_codes(ctr, ftr[:, :2], cte, fte[:, :2], seed=3)
    two = dis.dci_from_codes(ctr, ftr[:, :2], cte, fte[:, :2], seed=3, n_jobs=2)
    np.testing.assert_array_equal(one["importance_matrix"], two["importance_matrix"])
    assert one["informativeness_test"] == two["informativeness_test"]
    assert np.argmax(one["importance_matrix"][:, 0]) == 0


# ----- SAP -----


def test_sap_continuous_matches_squared_correlation():
    (ctr, ftr), (_, fte) = sampled(hash_rep, 600), sampled(hash_rep, 300, seed=1)
    codes = np.concatenate([identity_rep_codes(ftr), ctr[:, :2]], 1)
    out = dis.sap_from_codes(codes, ftr, codes[:300], fte, continuous_factors=True)
    ref = np.array(
        [[scipy.stats.pearsonr(codes[:, i], ftr[:, k])[0] ** 2 for k in range(4)] for i in range(6)]
    )
    np.testing.assert_allclose(out["score_matrix"], ref, rtol=1e-8)
    top_two = np.sort(ref, 0)[-2:]
    assert out["sap"] == pytest.approx(np.mean(top_two[1] - top_two[0]), rel=1e-8)
    assert out["sap"] > 0.95  # the identity block makes each factor one code's exactly


def identity_rep_codes(factors):
    return factors / (np.array(SIZES) - 1.0)


def test_sap_discrete_top_bottom_permutation():
    kw = dict(num_train=600, num_test=300)
    top = dis.compute_sap(DATA, identity_rep, rng(), **kw)
    bottom = dis.compute_sap(DATA, hash_rep, rng(), **kw)
    assert bottom["sap"] < 0.1 and top["sap"] > bottom["sap"] + 0.15
    assert np.all(np.argmax(top["score_matrix"], 0) == np.arange(4))
    # An independent fit of one entry: factor 0 (3 classes) from code 0.
    (ctr, ftr), (cte, fte) = sampled(identity_rep, 600), sampled(identity_rep, 300, seed=9)
    entry = sap.sap_score_matrix(ctr, ftr, cte, fte)[0, 0]
    from sklearn.svm import LinearSVC

    ref = LinearSVC(C=0.01, class_weight="balanced", dual=True, max_iter=100_000)
    ref = ref.fit(ctr[:, :1], ftr[:, 0]).score(cte[:, :1], fte[:, 0])
    assert entry == pytest.approx(ref, abs=0.01)
    perm = [1, 3, 2, 0]
    permuted = dis.compute_sap(DATA, transformed(identity_rep, perm=perm), rng(), **kw)
    np.testing.assert_allclose(permuted["score_matrix"], top["score_matrix"][perm], atol=1e-9)


# ----- modularity and explicitness -----


def test_modularity_matches_formula():
    m = rng(4).uniform(size=(5, 4))
    m[2] = 0.0
    ref = []
    for row in m:
        theta = max(v * v for v in row)
        ref.append(0.0 if theta == 0 else 1 - (sum(v * v for v in row) - theta) / (theta * 3))
    assert dis.modularity_from_mutual_information(m) == pytest.approx(np.mean(ref), rel=1e-12)


def test_explicitness_matches_multilabel_auc():
    (ctr, ftr), (cte, fte) = sampled(hash_rep, 500), sampled(hash_rep, 300, seed=1)
    ctr[:, 0] += ftr[:, 2]  # information about factor 2
    cte[:, 0] += fte[:, 2]
    out = modularity.explicitness_from_codes(ctr, ftr, cte, fte)
    mean, std = ctr.mean(0), ctr.std(0)
    ref = []
    for k in range(4):
        clf = multiclass.OneVsRestClassifier(linear_model.LogisticRegression(solver="liblinear"))
        clf.fit((ctr - mean) / std, ftr[:, k])
        y = preprocessing.MultiLabelBinarizer().fit_transform(fte[:, k : k + 1])
        ref.append(metrics.roc_auc_score(y, clf.predict_proba((cte - mean) / std)))
    np.testing.assert_allclose(out["explicitness_per_factor_test"], ref, rtol=1e-6)
    assert out["explicitness_per_factor_test"][2] > 0.8 > max(ref[:2] + ref[3:])


def test_modularity_explicitness_top_bottom_invariances():
    kw = dict(num_train=1000, num_test=400)
    top = dis.compute_modularity_explicitness(DATA, identity_rep, rng(), **kw)
    bottom = dis.compute_modularity_explicitness(DATA, hash_rep, rng(), **kw)
    assert top["modularity"] > 0.95 and top["explicitness_test"] > 0.9
    assert bottom["modularity"] < top["modularity"] - 0.2
    assert 0.4 < bottom["explicitness_test"] < 0.6
    scaled = transformed(identity_rep, perm=[2, 3, 0, 1], scale=np.array([4.0, 0.25, 2.0, 8.0]))
    other = dis.compute_modularity_explicitness(DATA, scaled, rng(), **kw)
    assert other["modularity"] == pytest.approx(top["modularity"], abs=1e-12)
    assert other["explicitness_test"] == pytest.approx(top["explicitness_test"], abs=1e-3)


# ----- BetaVAE -----


def test_beta_vae_features_keep_the_fixed_factor():
    feats, labels = beta_vae.beta_vae_features(DATA, identity_rep, 40, rng(), batch_size=16)
    assert feats.shape == (40, 4) and set(labels) <= set(range(4))
    fixed = feats[np.arange(40), labels]
    assert np.all(fixed < 1e-5)
    others = np.ma.masked_array(feats, np.eye(4, dtype=bool)[labels])
    assert others.min() > 0.05


def test_beta_vae_top_bottom_permutation_determinism():
    kw = dict(num_train=300, num_eval=200, batch_size=16)
    top = dis.compute_beta_vae(DATA, identity_rep, rng(), **kw)
    bottom = dis.compute_beta_vae(DATA, hash_rep, rng(), **kw)
    assert top["eval_accuracy"] > 0.95
    assert bottom["eval_accuracy"] < 0.45  # chance is 1/4
    permuted = dis.compute_beta_vae(DATA, transformed(identity_rep, perm=[1, 2, 3, 0]), rng(), **kw)
    assert permuted["eval_accuracy"] == pytest.approx(top["eval_accuracy"], abs=0.02)
    assert dis.compute_beta_vae(DATA, hash_rep, rng(), **kw) == bottom


# ----- FactorVAE -----


def test_factor_vae_from_votes_matches_loop():
    train = rng(6).integers(0, 20, size=(4, 7))
    test = rng(7).integers(0, 20, size=(4, 7))
    correct = 0
    for i in range(7):
        best = max(range(4), key=lambda k: (train[k, i], -k))  # ties go to the first factor
        correct += test[best, i]
    out = dis.factor_vae_from_votes(train, test)
    assert out["eval_accuracy"] == pytest.approx(correct / test.sum(), rel=1e-12)


def test_factor_vae_top_bottom_invariances_pruning():
    kw = dict(num_variance_estimate=500, num_train=300, num_eval=200, batch_size=16)
    top = dis.compute_factor_vae(DATA, identity_rep, rng(), **kw)
    assert top["eval_accuracy"] == 1.0 and top["num_active_dims"] == 4
    bottom = dis.compute_factor_vae(DATA, hash_rep, rng(), **kw)
    assert bottom["eval_accuracy"] < 0.45
    scale = np.array([2.0, 4.0, 0.5, 1.0])
    other = transformed(identity_rep, perm=[3, 2, 1, 0], scale=scale)
    assert dis.compute_factor_vae(DATA, other, rng(), **kw) == top

    def with_dead_dim(x):
        z = identity_rep(x)
        return np.concatenate([z, 0.01 * z[:, :1]], 1)  # std < 0.05: pruned

    pruned = dis.compute_factor_vae(DATA, with_dead_dim, rng(), **kw)
    assert pruned["num_active_dims"] == 4 and pruned["eval_accuracy"] == 1.0


# ----- Gaussian total correlation -----


def test_gaussian_total_correlation_matches_entropies():
    a = rng(8).normal(size=(5, 5))
    cov = a @ a.T + 0.5 * np.eye(5)
    marginals = sum(scipy.stats.norm(scale=np.sqrt(cov[i, i])).entropy() for i in range(5))
    ref = marginals - scipy.stats.multivariate_normal(cov=cov).entropy()
    assert dis.gaussian_total_correlation(cov) == pytest.approx(ref, rel=1e-10)
    rho = 0.6
    assert dis.gaussian_total_correlation([[4.0, 2 * rho], [2 * rho, 1.0]]) == pytest.approx(
        -0.5 * np.log(1 - rho**2), rel=1e-12
    )
    assert dis.gaussian_total_correlation(np.diag([1.0, 3.0])) == 0.0


def test_total_correlation_of_posteriors():
    means = rng(9).normal(size=(20_000, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 2]])
    log_vars = np.log(np.full_like(means, 0.3))
    out = dis.total_correlation_from_posteriors(means, log_vars, rng())
    cov = np.cov(means.T) + 0.3 * np.eye(3)
    assert out["aggregate_posterior"] == pytest.approx(dis.gaussian_total_correlation(cov))
    assert out["sampled"] == pytest.approx(out["aggregate_posterior"], abs=0.01)
    assert out["mean"] > out["aggregate_posterior"] + 0.02  # posterior noise decorrelates

    def posterior(x):
        z = identity_rep(x) @ np.array([[1.0, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        return z, np.full_like(z, -3.0)

    def rescaled(x):
        m, lv = posterior(x)
        return m * [2.0, 0.5, 1.0, 3.0], lv + 2 * np.log([2.0, 0.5, 1.0, 3.0])

    a = dis.compute_total_correlation(DATA, posterior, rng(), num_train=1000)
    b = dis.compute_total_correlation(DATA, rescaled, rng(), num_train=1000)
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-9)
    assert a["mean"] > 0.01


# ----- evaluate_all -----

SMALL = {
    "beta_vae": dict(num_train=100, num_eval=60, batch_size=8),
    "factor_vae": dict(num_variance_estimate=200, num_train=100, num_eval=60, batch_size=8),
    "mig": dict(num_train=300),
    "dci": dict(num_train=120, num_test=60),
    "sap": dict(num_train=200, num_test=100),
    "modularity_explicitness": dict(num_train=200, num_test=100),
    "total_correlation": dict(num_train=200),
}


def test_evaluate_all_flat_scores_and_determinism():
    def posterior(x):
        z = identity_rep(x)
        return z, np.full_like(z, -2.0)

    out = dis.evaluate_all(DATA, identity_rep, posterior, 0, protocol=SMALL)
    expected = {
        "beta_vae_accuracy", "factor_vae_accuracy", "mig", "dci_disentanglement",
        "dci_completeness", "dci_informativeness_test", "sap", "modularity",
        "explicitness_test", "gaussian_total_correlation_mean",
        "gaussian_total_correlation_sampled",
    }  # fmt: skip
    assert expected <= set(out.scores)
    assert all(isinstance(v, float) and np.isfinite(v) for v in out.scores.values())
    assert out.matrices["mig_mutual_information"].shape == (4, 4)
    assert out.matrices["dci_importance_matrix"].shape == (4, 4)
    assert out.scores["mig"] == dis.compute_mig(DATA, identity_rep, rng(0), num_train=300)["mig"]
    no_posterior = dis.evaluate_all(DATA, identity_rep, None, 0, protocol=SMALL)
    assert not any(k.startswith("gaussian_total") for k in no_posterior.scores)
    # Same seed, same numbers (each metric starts from its own generator).
    assert {k: out.scores[k] for k in no_posterior.scores} == no_posterior.scores
    np.testing.assert_array_equal(
        no_posterior.matrices["dci_importance_matrix"], out.matrices["dci_importance_matrix"]
    )


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="unknown metrics"):
        dis.evaluate_all(DATA, identity_rep, None, 0, metrics=["mgi"])
    with pytest.raises(ValueError, match="needs mean_and_logvar_fn"):
        dis.evaluate_all(DATA, identity_rep, None, 0, metrics=["total_correlation"])
    with pytest.raises(ValueError, match=r"expected \[N, D\] and \[N, F\]"):
        dis.mig_from_codes(np.zeros((10, 3)), np.zeros((9, 2), int))
    with pytest.raises(ValueError, match=r"returned shape \(16,\)"):
        dis.compute_mig(DATA, lambda x: np.zeros(x.shape[0]), rng(), num_train=16)
    with pytest.raises(ValueError, match="num must be a positive integer, got 0"):
        dis.compute_mig(DATA, identity_rep, rng(), num_train=0)
    with pytest.raises(ValueError, match="not positive definite"):
        dis.gaussian_total_correlation(np.ones((2, 2)))


# ----- encode once, look up -----


def test_fixed_batches_and_the_full_protocol_counts():
    calls = []

    def fn(x):
        calls.append(len(x))
        return x[:, :2] * 2.0, x[:, 2:]

    x = np.arange(37 * 3, dtype=np.float64).reshape(37, 3)
    means, rest = dis.fixed_batches(fn, 16)(x)
    assert calls == [16, 16, 16]  # the last 5 padded
    np.testing.assert_array_equal(means, x[:, :2] * 2.0)
    np.testing.assert_array_equal(rest, x[:, 2:])
    # The study's protocol on dSprites, counted by hand from each metric's docstring:
    # BetaVAE 15,000 points x 2 x 64, FactorVAE 10,000 + 15,000 x 64, MIG and TC 10,000 each,
    # DCI, SAP, modularity 15,000 each.
    drawn = 15_000 * 128 + (10_000 + 15_000 * 64) + 10_000 + 3 * 15_000 + 10_000
    dsprites = data.ProceduralDSprites()
    before = dis.plan(dsprites, tabulate=False)
    assert before.images == drawn == 2_955_000 and not any(before.tabulated.values())
    after = dis.plan(dsprites)  # the representation tabulated, the posterior (TC) not
    assert after.tabulated == {"representation": True, "posterior": False}
    assert after.images == 737_280 + 10_000
    assert dis.plan(DATA).tabulated == {"representation": False, "posterior": False}
    with pytest.raises(ValueError, match="no distinct_combinations"):
        dis.plan(DATA, tabulate=True)
    with pytest.raises(ValueError, match=r"unknown protocol keys \['num_points'\]"):
        dis.plan(dsprites, protocol={"mig": {"num_points": 5}})
