"""Overlaps, NMS, box voting, box-regression offsets and mirrored boxes against brute force."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from sppfeat.detection.geometry import apply_offsets, iou, nms, regression_targets, vote_boxes
from sppfeat.detection.maps import ImageMap, mirror_boxes


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


def test_voting_averages_the_overlapping_boxes_by_weight():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 40)
    weights = np.where(rng.random(40) < 0.3, 0.0, rng.random(40) * 3)
    kept = boxes[:12]
    for i, box in enumerate(vote_boxes(kept, boxes, weights, 0.5)):
        sum_w, sum_box = 0.0, np.zeros(4)
        for j in range(40):
            if brute_iou(kept[i], boxes[j]) >= 0.5:
                sum_w += weights[j]
                sum_box += weights[j] * boxes[j]
        np.testing.assert_allclose(box, sum_box / sum_w if sum_w > 0 else kept[i])
    # two boxes at IoU exactly 0.5 (one half of the other) vote for each other; a far one does not
    pair = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [30, 30, 40, 40]])
    np.testing.assert_allclose(vote_boxes(pair[:1], pair, [1.0, 3.0, 5.0], 0.5), [[0, 0, 10, 6.25]])
    assert vote_boxes(np.zeros((0, 4)), pair, [1.0, 1.0, 1.0]).shape == (0, 4)


def test_offsets_move_windows_onto_their_targets():
    rng = np.random.default_rng(2)
    windows, targets = random_boxes(rng, 50).astype(float), random_boxes(rng, 50).astype(float)
    offsets = regression_targets(windows, targets)
    np.testing.assert_allclose(apply_offsets(windows, offsets), targets, atol=1e-9)
    np.testing.assert_allclose(apply_offsets(windows, np.zeros((50, 4))), windows)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_mirrored_boxes_cover_the_same_pixels(orientation):
    """A box of the stored image, mirrored, covers in the upright flipped image exactly the pixels
    it covered in the stored one (pixels labelled with their stored position; Pillow's own
    EXIF transposition as the reference)."""
    height, width = 7, 11
    stored = Image.fromarray(np.arange(height * width, dtype=np.int32).reshape(height, width), mode="I")
    stored.getexif()[0x0112] = orientation
    shown = np.asarray(ImageOps.exif_transpose(stored))[:, ::-1]
    upright = shown.shape
    image = ImageMap(torch.zeros(1, 1, 1), upright, upright, (height, width), orientation)
    rng = np.random.default_rng(orientation)
    for _ in range(20):
        x0, x1 = sorted(rng.choice(width + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(height + 1, 2, replace=False))
        mx0, my0, mx1, my1 = mirror_boxes(image, np.array([[x0, y0, x1, y1]]))[0].astype(int)
        expected = np.arange(height * width).reshape(height, width)[y0:y1, x0:x1]
        assert sorted(shown[my0:my1, mx0:mx1].ravel()) == sorted(expected.ravel())


def test_nms_keeps_what_torchvision_keeps():
    import torch
    from torchvision.ops import nms as torchvision_nms

    rng = np.random.default_rng(7)
    for _ in range(50):
        corner = rng.random((300, 2)) * 400
        boxes = np.hstack([corner, corner + rng.random((300, 2)) * 200 + 1])
        scores = rng.random(300).astype(np.float32)  # distinct: no tie to order
        expected = torchvision_nms(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores), 0.3)
        assert nms(boxes, scores, 0.3).tolist() == expected.tolist()
