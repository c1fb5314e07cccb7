"""Boxes in pixels of an image -> the cells of its conv map that they cover.

A box is (x1, y1, x2, y2), half-open, in pixels of the original image. It is turned upright with the
image (EXIF orientation: boxes refer to the image as stored on disk), clipped to the image, scaled
by the factor the image was resized by (per axis), and covers the cells whose receptive-field
centres (:mod:`sppfeat.backbones.geometry`) fall inside it. A box edge on the image border reaches
every cell beyond it, so a whole-image box covers the whole map. A box between two centres covers
the nearest cell; every box covers at least one cell and stays inside the map.
"""

from __future__ import annotations

import numpy as np

BEST_SIDE = 224  # multi-scale boxes are pooled at the scale where their area is closest to 224 × 224

# EXIF orientation -> (transpose, flip left-right, flip top-bottom), applied in that order: what
# Pillow's ImageOps.exif_transpose does to the pixels
ORIENTATIONS = {1: (False, False, False), 2: (False, True, False), 3: (False, True, True), 4: (False, False, True),
                5: (True, False, False), 6: (True, True, False), 7: (True, True, True), 8: (True, False, True)}


def orient_boxes(boxes: np.ndarray, orientation: int, stored_size: tuple[int, int]) -> np.ndarray:
    """K×4 boxes in pixels of the image as stored (stored_size = (height, width)) -> the same boxes in
    the image as displayed after its EXIF `orientation` (1-8; anything else: unchanged)."""
    transpose, flip_x, flip_y = ORIENTATIONS.get(orientation, ORIENTATIONS[1])
    x1, y1, x2, y2 = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T
    height, width = stored_size
    if transpose:
        x1, y1, x2, y2, height, width = y1, x1, y2, x2, width, height
    if flip_x:
        x1, x2 = width - x2, width - x1
    if flip_y:
        y1, y2 = height - y2, height - y1
    return np.stack([x1, y1, x2, y2], axis=1)


def usable_boxes(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, list[str | None]]:
    """Boxes clipped to a height×width image, and per box None or the reason it cannot be used
    (not finite, inverted, empty, outside the image)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        clipped = np.clip(boxes, 0, [width, height, width, height])
        size = boxes[:, 2:] - boxes[:, :2]
        covered = clipped[:, 2:] - clipped[:, :2]
    finite = np.isfinite(boxes).all(axis=1)
    problems = [(~finite, "box not finite"), ((size < 0).any(axis=1), "inverted box (x2 < x1 or y2 < y1)"),
                ((size == 0).any(axis=1), "empty box (zero width or height)"),
                ((covered <= 0).any(axis=1), "box outside the image")]
    reasons = np.select([mask for mask, _ in problems], [reason for _, reason in problems], None).tolist()
    return clipped, reasons


def _axis_cells(lo: np.ndarray, hi: np.ndarray, full: int, factor: float, centres: np.ndarray):
    """Cells [first, end) along one axis of the boxes [lo, hi) of an axis `full` pixels long."""
    points = centres + 0.5  # a pixel index's centre as a coordinate: pixel k covers [k, k + 1)
    start = np.where(lo <= 0, -np.inf, lo * factor)
    stop = np.where(hi >= full, np.inf, hi * factor)
    first, end = np.searchsorted(points, start), np.searchsorted(points, stop)
    middle = (lo + hi) / 2 * factor
    right = np.clip(np.searchsorted(points, middle), 0, len(points) - 1)
    left = np.clip(right - 1, 0, len(points) - 1)
    nearest = np.where(np.abs(points[left] - middle) <= np.abs(points[right] - middle), left, right)
    none = end <= first
    first, end = np.where(none, nearest, first), np.where(none, nearest + 1, end)
    return np.clip(first, 0, len(points) - 1), np.clip(end, 1, len(points))


def boxes_to_cells(boxes: np.ndarray, image_size: tuple[int, int], input_size: tuple[int, int],
                   row_centres: np.ndarray, column_centres: np.ndarray) -> np.ndarray:
    """Usable boxes (K×4, pixels of the upright original image of image_size = (height, width)) -> K×4
    int64 cell boxes (x0, y0, x1, y1) of the map of that image resized to input_size; the centres
    are the cells' receptive-field centres in input pixels (geometry.cell_centres)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    (height, width), (in_h, in_w) = image_size, input_size
    x0, x1 = _axis_cells(boxes[:, 0], boxes[:, 2], width, in_w / width, column_centres)
    y0, y1 = _axis_cells(boxes[:, 1], boxes[:, 3], height, in_h / height, row_centres)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def best_scales(boxes: np.ndarray, image_size: tuple[int, int], input_sizes: list[tuple[int, int]]) -> np.ndarray:
    """Per box, the index of the input size at which its area is closest to BEST_SIDE² pixels (the
    first such size on a tie): the paper's choice of one scale per window."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    height, width = image_size
    factors = np.array([(h / height) * (w / width) for h, w in input_sizes])
    return np.abs(area[:, None] * factors[None, :] - BEST_SIDE ** 2).argmin(axis=1)
