"""DetectorModel.score_windows with SVMs: margins and box offsets of any rows for every class,
against the per-window, per-class formulas (w·x + b; W_k·[x, 1])."""

import numpy as np

from sppfeat.detection.model import DetectorModel


class PooledVectors:
    """Stands in for RegionVectors: U given vectors and each window's index among them."""

    def __init__(self, unique: np.ndarray, inverse: np.ndarray):
        self.unique, self.inverse = unique, inverse

    def pool_unique(self, image_map, windows):
        return self.unique, self.inverse


def test_offsets_of_any_rows_are_each_class_regression():
    rng = np.random.default_rng(0)
    n_classes, dim, n_unique, n_windows = 3, 40, 7, 12
    unique = rng.standard_normal((n_unique, dim)).astype(np.float32)
    inverse = np.r_[np.arange(n_unique), rng.integers(0, n_unique, n_windows - n_unique)]
    regression = rng.standard_normal((n_classes, 4, dim + 1)).astype(np.float32)
    model = DetectorModel(rng.standard_normal((n_classes, dim)).astype(np.float32), rng.standard_normal(n_classes),
                          ["a", "b", "c"], {}, {}, regression=regression)
    scored = model.score_windows(PooledVectors(unique, inverse), None, np.zeros((n_windows, 4)))
    for rows in (np.array([3, 3, 0, 11]), np.arange(n_windows), np.array([5]), np.zeros(0, np.int64)):
        moves = scored.offsets(rows)  # some vectors, all of them, one, none
        assert moves.shape == (len(rows), n_classes, 4)
        for i, row in enumerate(rows):
            x = unique[inverse[row]].astype(np.float64)
            for k in range(n_classes):
                expected = regression[k, :, :-1].astype(np.float64) @ x + regression[k, :, -1]
                np.testing.assert_allclose(moves[i, k], expected, rtol=1e-4, atol=1e-4)
    margins = unique[inverse].astype(np.float64) @ model.coef.T.astype(np.float64) + model.intercept
    np.testing.assert_allclose(scored.scores, margins, rtol=1e-4, atol=1e-4)
    without = DetectorModel(model.coef, model.intercept, model.class_names, {}, {})
    assert without.score_windows(PooledVectors(unique, inverse), None, np.zeros((n_windows, 4))).offsets(rows) is None
