"""The primal squared-hinge SVM reaches scikit-learn's (liblinear's) optimum of the same objective."""

import numpy as np
import pytest
import torch

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


def test_8bit_positives_in_blocks_then_negatives_reach_the_optimum_of_the_same_values_in_one_array(monkeypatch):
    """Training reads a class's positives quantized to 8 bits, a block at a time, then its negatives
    widened from the cache; the optimum must be the one found on the same values in one array."""
    from sppfeat.detection.negatives import NegativeStore
    from sppfeat.detection.solver import ArrayRows, QuantizedRows, StackedRows, products, quantize, transposed_products

    monkeypatch.setattr(NegativeStore, "BLOCK", 64)
    monkeypatch.setattr(QuantizedRows, "SIZE", 7)
    rng = np.random.default_rng(2)
    store = NegativeStore(80, 1)
    store.add(np.abs(rng.normal(size=(700, 80))).astype(np.float32), 0, np.arange(700))
    rows = rng.permutation(700)[:500]
    positives = np.abs(rng.normal(size=(60, 80))) + 0.4 * np.clip(rng.normal(size=80), 0, None)
    codes, low, step = quantize(positives)
    widened = codes * step[:, None] + low[:, None]
    assert np.abs(widened - positives).max() <= step.max() / 2 * 1.0001
    blocks = StackedRows(QuantizedRows(codes, low, step), ArrayRows(store.take(rows)))
    dense = np.concatenate([widened, store.take(rows)])
    w = torch.from_numpy(rng.normal(size=80).astype(np.float32))
    g = torch.from_numpy(rng.normal(size=560).astype(np.float32))
    np.testing.assert_allclose(products(blocks, w).numpy(), dense @ w.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(transposed_products(blocks, g).numpy(), dense.T @ g.numpy(), rtol=1e-4, atol=1e-3)
    y = np.r_[np.ones(60), np.zeros(500)]
    ours = LinearSVM(C=1.0, positive_weight=2.0).fit(blocks, y)
    reference = LinearSVM(C=1.0, positive_weight=2.0).fit(dense, y)
    assert ours.objective(dense, y) == pytest.approx(reference.objective(dense, y), rel=1e-4)
    assert ours.objective(blocks, y) == pytest.approx(ours.objective(dense, y), rel=1e-6)
    assert np.corrcoef(ours.decision_function(dense), reference.decision_function(dense))[0, 1] > 0.9999
