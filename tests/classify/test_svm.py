"""The kernel-dual SVM against scikit-learn's LinearSVC on real SPP features; splits."""

import numpy as np
import pytest
import torch

from sppfeat.classify.split import per_class_split, stratified_split
from sppfeat.classify.svm import LinearSVM, cross_validate_c, gram_matrix, kfold_indices, normalize_features
from sppfeat.storage.feature_file import open_features

sklearn_svm = pytest.importorskip("sklearn.svm")


@pytest.fixture(scope="module")
def demo_split(demo_features):
    ff = open_features(demo_features)
    x = normalize_features(ff.read_features())
    train, test = per_class_split(ff.labels, 5, 0, seed=1)
    return x[train], ff.labels[train], x[test], ff.labels[test]


@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_agrees_with_sklearn_linearsvc(demo_split, C):
    x_train, y_train, x_test, y_test = demo_split
    ours = LinearSVM(C=C).fit(x_train, y_train)  # default tolerance, as train-svm uses it
    ref = sklearn_svm.LinearSVC(C=C, tol=1e-6, max_iter=100_000).fit(x_train, y_train)
    acc_ours = (ours.predict(x_test) == y_test).mean()
    acc_ref = (ref.predict(x_test) == y_test).mean()
    assert abs(acc_ours - acc_ref) <= 0.005
    precise = LinearSVM(C=C, tol=1e-4).fit(x_train, y_train)  # the same optimum, to 1e-3 in the scores
    np.testing.assert_allclose(precise.decision_function(x_test), ref.decision_function(x_test), atol=2e-3)


def test_multilabel_leaves_difficult_out_and_agrees_with_binary_svc(demo_split):
    x_train, y_train, _, _ = demo_split
    targets = np.where(y_train[:, None] == np.arange(3)[None, :], 1, -1).astype(np.int8)
    targets[::4, 1] = 0  # "difficult"
    ours = LinearSVM(C=1.0, tol=1e-4).fit(x_train, targets)
    for k in range(3):
        keep = targets[:, k] != 0
        ref = sklearn_svm.LinearSVC(C=1.0, tol=1e-6, max_iter=100_000).fit(x_train[keep], targets[keep, k])
        np.testing.assert_allclose(ours.decision_function(x_train)[:, k], ref.decision_function(x_train), atol=2e-3)


def test_cross_validation_scores_agree_with_sklearn_on_the_same_folds(demo_split):
    """Each C's mean held-out accuracy equals LinearSVC's on the same folds (to one image in a
    fold), and the C chosen is one that scikit-learn scores best."""
    x, y = demo_split[0], demo_split[1]
    grid = (0.001, 0.01, 0.1, 1.0)  # from too weak to fit the 6 classes to fitting them
    best, scores = cross_validate_c(gram_matrix(x), y, 6, grid=grid, folds=3, seed=0)
    folds = kfold_indices(y, 3, seed=0)
    reference = {}
    for c in grid:
        accuracies = []
        for k, held_out in enumerate(folds):
            train = np.concatenate([folds[j] for j in range(3) if j != k])
            svc = sklearn_svm.LinearSVC(C=c, tol=1e-6, max_iter=100_000).fit(x[train], y[train])
            accuracies.append((svc.predict(x[held_out]) == y[held_out]).mean())
        reference[c] = np.mean(accuracies)
    one_image = 1 / min(len(f) for f in folds) / 3
    for c in grid:
        assert abs(scores[c] - reference[c]) <= one_image + 1e-9, (c, scores, reference)
    assert reference[best] >= max(reference.values()) - one_image
    assert min(reference.values()) < max(reference.values()) - 0.1  # the grid really separates the Cs


def test_per_class_split_is_seeded_disjoint_and_counted():
    labels = np.repeat(np.arange(3), [40, 31, 100])
    train, test = per_class_split(labels, 30, 50, seed=3)
    assert not set(train) & set(test)
    assert np.bincount(labels[train]).tolist() == [30, 30, 30]
    assert np.bincount(labels[test]).tolist() == [10, 1, 50]
    again = per_class_split(labels, 30, 50, seed=3)
    other = per_class_split(labels, 30, 50, seed=4)
    assert all((a == b).all() for a, b in zip((train, test), again))
    assert not (train == other[0]).all()
    assert len(per_class_split(labels, 30, 0, seed=3)[1]) == 10 + 1 + 70
    with pytest.raises(ValueError, match="class 1"):
        per_class_split(labels, 31)


def test_stratified_split():
    labels = np.repeat(np.arange(2), [8, 4])
    train, test = stratified_split(labels, 0.25, seed=0)
    assert np.bincount(labels[test]).tolist() == [2, 1] and len(train) + len(test) == 12
    assert not set(train) & set(test)


def test_normalize_features():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [4.0, 0.0]])
    np.testing.assert_allclose(normalize_features(x), [[0.6, 0.8], [0, 0], [1, 0]])
    np.testing.assert_allclose(normalize_features(x, 0.5)[0], np.sqrt([3, 4]) / np.sqrt(7), rtol=1e-6)


def test_normalize_features_keeps_a_nan_in_its_row():
    x = np.array([[1.0, -4.0], [np.nan, 1.0], [-9.0, 16.0]])
    got = normalize_features(x, 0.5)
    assert np.isnan(got[1]).all() and np.isfinite(got[[0, 2]]).all()
    np.testing.assert_allclose(got[0], np.array([1.0, -2.0]) / np.sqrt(5), rtol=1e-6)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("power", [1.0, 0.5, 0.75])
def test_normalize_features_takes_arrays_and_tensors_and_leaves_them_alone(power, signed):
    x = np.random.default_rng(0).normal(size=(5, 7))
    if not signed:  # ReLU features: non-negative, mostly zeros
        x = np.maximum(x - 0.5, 0)
    expected = np.sign(x) * np.abs(x) ** power
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    kept = x.copy()
    np.testing.assert_allclose(normalize_features(x, power), expected, rtol=1e-5, atol=1e-6)
    tensor = torch.from_numpy(x)
    got = normalize_features(tensor, power)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x, kept)


@pytest.mark.parametrize("signed", [True, False])
def test_normalize_features_does_not_overflow_at_large_powers(signed):
    """6^50 overflows float32: the result must still be the float64 computation's, and at a power
    that overflows float64 too, its limit (the sign of the largest |x| of the row, ties shared)."""
    x = np.random.default_rng(1).uniform(-6, 6, size=(4, 9))
    x[:, 0] = 6.0  # the largest |x| of every row, the value of the fuzzed SPP vectors
    x[1, 3] = -6.0 if signed else 6.0  # a tie
    x[3] = 0.0  # a row of zeros stays zeros
    if not signed:
        x = np.abs(x)
    expected = np.sign(x) * np.abs(x) ** 50.0  # float64: 6^50 ≈ 8e38 is finite
    expected /= np.maximum(np.linalg.norm(expected, axis=1, keepdims=True), 1e-300)
    got = normalize_features(x, 50.0)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    limit = np.where(np.abs(x) == 6.0, np.sign(x), 0.0)
    limit /= np.maximum(np.sqrt((limit != 0).sum(axis=1, keepdims=True)), 1.0)
    np.testing.assert_array_equal(normalize_features(x, 1e300), limit.astype(np.float32))
    np.testing.assert_allclose(normalize_features(torch.from_numpy(x), 1e300).numpy(), limit)


def test_the_c_grid_grows_until_the_best_c_is_inside_it(demo_split):
    """Started below the useful range, cross-validation walks up the 1-3-10 ladder and stops where a
    grid spanning both sides picks the same C."""
    x, y = demo_split[0], demo_split[1]
    gram = gram_matrix(x)
    best, scores = cross_validate_c(gram, y, 6, grid=(0.001, 0.003), folds=3, seed=0)
    tried = sorted(scores)
    assert tried[:2] == [0.001, 0.003] and len(tried) > 2 and tried[0] < best < tried[-1]
    assert all(b / a in (pytest.approx(10 / 3), pytest.approx(3)) for a, b in zip(tried, tried[1:]))
    wide, _ = cross_validate_c(gram, y, 6, grid=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), folds=3, seed=0)
    assert best == wide
    capped, capped_scores = cross_validate_c(gram, y, 6, grid=(1e4,), folds=3, seed=0)
    assert capped_scores and min(capped_scores) < 1e4  # at the cap it looks downwards only
