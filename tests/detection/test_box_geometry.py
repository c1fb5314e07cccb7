"""Overlaps, NMS and box-regression offsets against brute force."""

import numpy as np

from sppfeat.detection.geometry import apply_offsets, iou, nms, regression_targets


def brute_iou(a, b):
    """Pixel counting on a grid: boxes with integer corners, half-open."""
    grid_a = np.zeros((60, 60), bool)
    grid_b = np.zeros((60, 60), bool)
    grid_a[a[1]:a[3], a[0]:a[2]] = True
    grid_b[b[1]:b[3], b[0]:b[2]] = True
    union = (grid_a | grid_b).sum()
    return (grid_a & grid_b).sum() / union if union else 0.0


def random_boxes(rng, n):
    xy = rng.integers(0, 40, (n, 2))
    return np.concatenate([xy, xy + rng.integers(1, 20, (n, 2))], axis=1)


def test_iou_counts_pixels():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 30), random_boxes(rng, 20)
    expected = np.array([[brute_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(iou(a, b), expected)


def brute_nms(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(brute_iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def test_nms_equals_greedy_suppression():
    rng = np.random.default_rng(1)
    for _ in range(20):
        boxes = random_boxes(rng, 40)
        scores = rng.permutation(40).astype(float)  # distinct scores: one greedy order
        assert nms(boxes, scores, 0.3).tolist() == brute_nms(boxes, scores, 0.3)
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_offsets_move_windows_onto_their_targets():
    rng = np.random.default_rng(2)
    windows, targets = random_boxes(rng, 50).astype(float), random_boxes(rng, 50).astype(float)
    offsets = regression_targets(windows, targets)
    np.testing.assert_allclose(apply_offsets(windows, offsets), targets, atol=1e-9)
    np.testing.assert_allclose(apply_offsets(windows, np.zeros((50, 4))), windows)
