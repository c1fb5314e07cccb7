"""Classification metrics: accuracy, per-class accuracy and the VOC 2007 11-point average precision."""

from __future__ import annotations

import numpy as np


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction correct among the test examples of each class (K floats; NaN for an absent class)."""
    out = np.full(n_classes, np.nan)
    for k in range(n_classes):
        members = y_true == k
        if members.any():
            out[k] = float((y_pred[members] == k).mean())
    return out


def precision_recall(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each rank of one class's ranking (two arrays, one value per ranked
    non-difficult example; empty without positives).

    scores: n floats; targets: n in {1, -1, 0}; 0 (difficult) counts neither as hit nor as miss.
    Ranking is by decreasing score, ties in input order (as the devkit's sort).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    ranked = targets[np.argsort(-scores, kind="stable")]
    ranked = ranked[ranked != 0]
    n_pos = int((ranked > 0).sum())
    if n_pos == 0:
        return np.zeros(0), np.zeros(0)
    tp = np.cumsum(ranked > 0)
    fp = np.cumsum(ranked < 0)
    return tp / (tp + fp), tp / n_pos


def eleven_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC 2007's interpolated AP of a precision-recall curve: mean over t = 0, 0.1, ..., 1 of the
    best precision at recall ≥ t (0 where no point reaches t); used by classification and detection."""
    total = 0.0  # summed, then divided once: a perfect curve gives exactly 1.0
    for t in np.linspace(0.0, 1.0, 11):
        reached = precision[recall >= t - 1e-12]
        total += reached.max() if reached.size else 0.0
    return float(total / 11)


def average_precision_11pt(scores: np.ndarray, targets: np.ndarray) -> float:
    """VOC 2007 AP of one class (:func:`eleven_point_ap` of :func:`precision_recall`). 0.0 without
    positives."""
    precision, recall = precision_recall(scores, targets)
    return eleven_point_ap(recall, precision) if len(recall) else 0.0


def mean_average_precision_11pt(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean of the per-class 11-point APs; scores and targets n×K."""
    return float(np.mean([average_precision_11pt(scores[:, k], targets[:, k]) for k in range(targets.shape[1])]))
