"""The scikit-learn classifiers of disentanglement_lib, with the settings its study ran under.

disentanglement_lib calls ``LogisticRegression()`` with no arguments. Under the scikit-learn of
its study (0.20, 2018-19) that meant the liblinear solver, one-vs-rest for several classes, L2
penalty with ``C = 1``, an (also penalised) intercept; today's default (lbfgs, multinomial)
would be a different classifier, so the old one is spelled out here.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import exceptions, linear_model, multiclass, svm


def logistic_regression(seed: int) -> multiclass.OneVsRestClassifier:
    """One-vs-rest L2 logistic regression, ``C = 1``, liblinear (scikit-learn 0.20's default)."""
    return multiclass.OneVsRestClassifier(
        linear_model.LogisticRegression(C=1.0, solver="liblinear", random_state=seed)
    )


def linear_svc(seed: int) -> svm.LinearSVC:
    """SAP's classifier: ``LinearSVC(C=0.01, class_weight="balanced")``, squared hinge loss."""
    return svm.LinearSVC(C=0.01, class_weight="balanced", random_state=seed)


def fit_quietly(model, x: np.ndarray, y: np.ndarray):
    """``model.fit(x, y)`` without liblinear's convergence warnings (the protocol's iteration
    limits are part of the protocol)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
        return model.fit(x, y)
