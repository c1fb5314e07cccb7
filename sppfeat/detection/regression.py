"""Box regression for the SVM detector (R-CNN's): per class, a ridge regression from a window's
vector (and a constant 1) to the offsets onto the object it overlaps (geometry.regression_targets).

One class at a time, on at most ``regression_per_class`` of its samples (a uniform draw under the
seed), pooled from the images' maps when that class is solved: memory is bounded by that number,
not by the training images (a class's XᵀX at 17,920 values would be 2.6 GB and 2 TFLOP to solve,
so the smaller of XᵀX and XXᵀ is solved, as it always was).
"""

from __future__ import annotations

import numpy as np

from .geometry import regression_targets
from .maps import RegionVectors
from .settings import TrainingSettings


def class_samples(labels: np.ndarray, k: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of the samples of class k among `labels`: all of them, or `limit` drawn uniformly."""
    rows = np.flatnonzero(labels == k)
    return np.sort(rng.choice(rows, limit, replace=False)) if len(rows) > limit else rows


def ridge(x: np.ndarray, t: np.ndarray, penalty: float) -> np.ndarray:
    """W (d×m) minimising |xW - t|² + penalty·|W|² for x n×d float32, t n×m: through the n×n system
    W = xᵀ(xxᵀ + λI)⁻¹t when n < d, else (xᵀx + λI)⁻¹xᵀt (float32 products, solved in float64)."""
    small = len(x) < x.shape[1]
    gram = (x @ x.T if small else x.T @ x).astype(np.float64)
    gram[np.diag_indices_from(gram)] += penalty
    if small:
        return x.T @ np.linalg.solve(gram, t).astype(np.float32)
    return np.linalg.solve(gram, (x.T @ t.astype(np.float32)).astype(np.float64)).astype(np.float32)


def fit_regression(images: list, n_classes: int, rv: RegionVectors, settings: TrainingSettings) -> np.ndarray:
    """K×4×(D+1) regressors from the regression samples of `images` (mining.TrainingImage:
    reg_windows, reg_labels, reg_targets); a class without samples gets zeros (no move)."""
    out = np.zeros((n_classes, 4, rv.dim + 1), np.float32)
    rng = np.random.default_rng(settings.seed)
    owner = np.concatenate([np.full(len(im.reg_windows), i) for i, im in enumerate(images)] + [np.zeros(0, int)])
    index = np.concatenate([np.arange(len(im.reg_windows)) for im in images] + [np.zeros(0, int)])
    labels = np.concatenate([im.reg_labels for im in images] + [np.zeros(0, int)])
    for k in range(n_classes):
        rows = class_samples(labels, k, settings.regression_per_class, rng)
        if len(rows) == 0:
            continue
        x = np.ones((len(rows), rv.dim + 1), np.float32)
        t = np.empty((len(rows), 4))
        runs = np.flatnonzero(np.diff(owner[rows], prepend=-1))  # rows are sorted: an image's samples are one run
        for a, b in zip(runs, np.append(runs[1:], len(rows))):
            at = slice(a, b)
            im, samples = images[owner[rows[a]]], index[rows[at]]
            windows = im.boxes(im.reg_windows[samples])
            x[at, :-1] = rv.pool(im.image_map.load(), windows)
            t[at] = regression_targets(windows, im.reg_targets[samples])
        out[k] = ridge(x, t, settings.ridge).T
        del x
    return out
