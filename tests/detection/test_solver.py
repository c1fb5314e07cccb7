"""The primal squared-hinge SVM reaches scikit-learn's (liblinear's) optimum of the same objective."""

import numpy as np
import pytest

from sppfeat.detection.solver import LinearSVM

sklearn_svm = pytest.importorskip("sklearn.svm")


@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_objective_matches_liblinear(C):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 60)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = (x @ rng.normal(size=60) + 0.3 * rng.normal(size=1500) > 0.5).astype(int)
    ours = LinearSVM(C=C, positive_weight=2.0, tol=1e-6).fit(x, y)
    ref = sklearn_svm.LinearSVC(C=C, loss="squared_hinge", intercept_scaling=10, class_weight={1: 2.0, 0: 1.0},
                                tol=1e-10, max_iter=100000).fit(x, y)
    theirs = LinearSVM(C=C, positive_weight=2.0)
    theirs.coef_, theirs.intercept_ = ref.coef_[0].astype(np.float32), float(ref.intercept_[0])
    assert ours.objective(x, y) <= theirs.objective(x, y) * (1 + 1e-4)
    assert np.corrcoef(ours.decision_function(x), ref.decision_function(x))[0, 1] > 0.9999


def test_warm_start_reaches_the_same_optimum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(800, 30)).astype(np.float32)
    y = (x[:, 0] > 0.3).astype(int)
    cold = LinearSVM(C=1.0, tol=1e-6).fit(x, y)
    warm = LinearSVM(C=1.0, tol=1e-6).fit(x, y, warm_start=(cold.coef_ * 0.5, cold.intercept_))
    assert warm.objective(x, y) == pytest.approx(cold.objective(x, y), rel=1e-4)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="positive and negative"):
        LinearSVM().fit(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        LinearSVM(C=0).fit(np.ones((2, 2)), np.array([0, 1]))


def test_default_tolerance_reaches_the_optimum_with_many_more_negatives_than_dimensions():
    """Detection's shape of problem: 20,000 normalised non-negative vectors, 1 % positives. The
    default tolerance must land within 0.1 % of liblinear's optimum (a looser one stopped early)."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(20000, 300))).astype(np.float32) ** 2
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ rng.normal(size=300)
    y = (s > np.quantile(s, 0.99)).astype(int)
    ref = sklearn_svm.LinearSVC(C=1.0, intercept_scaling=10, class_weight={1: 2.0, 0: 1.0}, tol=1e-8,
                                max_iter=20000).fit(x, y)
    theirs = LinearSVM(C=1.0, positive_weight=2.0)
    theirs.coef_, theirs.intercept_ = ref.coef_[0].astype(np.float32), float(ref.intercept_[0])
    ours = LinearSVM(C=1.0, positive_weight=2.0).fit(x, y)
    assert ours.objective(x, y) <= theirs.objective(x, y) * 1.001
    loose = LinearSVM(C=1.0, positive_weight=2.0, tol=1e-4).fit(x, y)
    assert loose.objective(x, y) > theirs.objective(x, y) * 1.005  # the problem tells tolerances apart
