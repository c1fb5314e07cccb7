"""Box arithmetic of detection: overlaps, non-maximum suppression, box voting and the box-regression
offsets.

Boxes are K×4 (x1, y1, x2, y2), pixels, half-open: width = x2 - x1. The VOC devkit's boxes are
1-based and inclusive, its width xmax - xmin + 1; read as [xmin - 1, xmax) (sppfeat.data.boxes)
they have the same widths, so the overlaps here equal the devkit's.
"""

from __future__ import annotations

import numpy as np

NMS_IOU = 0.3  # the paper's threshold for non-maximum suppression of one class's windows
VOTE_IOU = 0.5  # box voting: the windows that place a kept box (vote_boxes)


def box_area(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A×B intersection over union of the boxes a (A×4) and b (B×4); 0 where the union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first (ties in
    input order): a box is dropped when its IoU with a kept, better-scoring box exceeds
    `threshold`. In numpy (torchvision's nms would cost detect ~1 s of start-up to import)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranked = np.asarray(boxes, np.float64).reshape(-1, 4)[order]
    overlapping = iou(ranked, ranked) > threshold
    suppressed, keep = np.zeros(len(order), dtype=bool), []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlapping[i]
    return order[np.array(keep, dtype=np.int64)]


def vote_boxes(kept: np.ndarray, boxes: np.ndarray, weights: np.ndarray, threshold: float = VOTE_IOU) -> np.ndarray:
    """Box voting (Gidaris and Komodakis, 2015): each of the M×4 `kept` boxes becomes the mean of
    the N×4 `boxes` overlapping it by IoU >= threshold, weighted by their N `weights` (>= 0); a box
    whose neighbours all weigh 0 stays as it is."""
    kept = np.asarray(kept, np.float64).reshape(-1, 4)
    near = np.where(iou(kept, boxes) >= threshold, np.asarray(weights, np.float64)[None, :], 0.0)
    total = near.sum(axis=1, keepdims=True)
    voted = near @ np.asarray(boxes, np.float64).reshape(-1, 4) / np.where(total > 0, total, 1)
    return np.where(total > 0, voted, kept)


def regression_targets(windows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """K×4 offsets (dx, dy, dw, dh) that move each window onto its target box (R-CNN's
    parameterisation: centre shifts in window widths/heights, log size ratios)."""
    w, h = windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1]
    tw, th = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    return np.stack([(targets[:, 0] + tw / 2 - windows[:, 0] - w / 2) / w,
                     (targets[:, 1] + th / 2 - windows[:, 1] - h / 2) / h,
                     np.log(tw / w), np.log(th / h)], axis=1)


def apply_offsets(windows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The boxes that K×4 `offsets` (see regression_targets) make of the windows."""
    w, h = windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1]
    cx, cy = windows[:, 0] + w / 2 + offsets[:, 0] * w, windows[:, 1] + h / 2 + offsets[:, 1] * h
    nw, nh = w * np.exp(np.clip(offsets[:, 2], -4, 4)), h * np.exp(np.clip(offsets[:, 3], -4, 4))
    return np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], axis=1)
