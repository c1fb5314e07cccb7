"""Spatial pyramid pooling of many windows (boxes) of one conv map at once (He et al. 2014, section 4).

A box in cells is (x0, y0, x1, y1), integers, half-open: columns [x0, x1) and rows [y0, y1) of a
C×H×W map, non-empty and inside the map. It is pooled exactly as :func:`sppfeat.pyramid.spatial_pyramid_pool`
pools the map cropped to it: for a box of h rows and level n, bin i covers rows
[y0 + floor(i·h/n), y0 + ceil((i+1)·h/n)), and likewise for columns; same vector layout.

Every bin of every box and level is one window: max pooling runs them all through one call of
``torchvision.ops.roi_pool`` with a 1×1 output per window (its own floor/ceil arithmetic in floating
point is exact for a 1×1 output, and it overshoots the last bin by a cell for some sizes, e.g. 29 rows
in 11 bins, when asked for n×n); average pooling reads window sums off an integral image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.ops import roi_pool

from .pyramid import DEFAULT_LEVELS, check_pool


def check_cell_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """`boxes` as a K×4 int64 array of non-empty half-open cell boxes inside an height×width map;
    ValueError otherwise."""
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"boxes_in_cells must be a K×4 integer array, got {boxes.dtype} {boxes.shape}")
    x0, y0, x1, y1 = boxes.T
    if ((x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height) | (x1 <= x0) | (y1 <= y0)).any():
        raise ValueError(f"boxes_in_cells must be non-empty and inside the {height}×{width} map")
    return boxes.astype(np.int64)


def bin_windows(boxes: np.ndarray, levels: Sequence[int]) -> np.ndarray:
    """The pyramid bins of every box: K×B×4 windows (x0, y0, x1, y1) in cells, B = Σ n², in the
    vector's order (level, row, column)."""
    x0, y0, x1, y1 = (boxes[:, k:k + 1] for k in range(4))
    windows = []
    for n in levels:
        steps = np.arange(n)
        rows_lo, rows_hi = y0 + (steps * (y1 - y0)) // n, y0 - (-(steps + 1) * (y1 - y0)) // n  # K×n
        cols_lo, cols_hi = x0 + (steps * (x1 - x0)) // n, x0 - (-(steps + 1) * (x1 - x0)) // n
        grid = np.stack([np.repeat(cols_lo[:, None, :], n, 1), np.repeat(rows_lo[:, :, None], n, 2),
                         np.repeat(cols_hi[:, None, :], n, 1), np.repeat(rows_hi[:, :, None], n, 2)], axis=-1)
        windows.append(grid.reshape(len(boxes), n * n, 4))
    return np.concatenate(windows, axis=1)


def _window_max(feature_map: torch.Tensor, windows: np.ndarray) -> torch.Tensor:
    """C×H×W map, W×4 windows -> W×C maxima (roi_pool takes inclusive ends)."""
    rois = np.concatenate([np.zeros((len(windows), 1)), windows[:, :2], windows[:, 2:] - 1], axis=1)
    x = feature_map.unsqueeze(0)
    out = roi_pool(x, torch.as_tensor(rois, dtype=x.dtype, device=x.device), (1, 1), 1.0)
    return out.flatten(1)


def _window_mean(feature_map: torch.Tensor, windows: np.ndarray) -> torch.Tensor:
    """C×H×W map, W×4 windows -> W×C means, from an integral image summed in float64."""
    integral = torch.nn.functional.pad(feature_map.double().cumsum(1).cumsum(2), (1, 0, 1, 0))
    x0, y0, x1, y1 = (torch.as_tensor(windows[:, k], device=feature_map.device) for k in range(4))
    sums = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
    return (sums / ((x1 - x0) * (y1 - y0))).T.to(feature_map.dtype)


def pyramid_pool_boxes(feature_map: torch.Tensor, boxes_in_cells: np.ndarray,
                       levels: Sequence[int] = DEFAULT_LEVELS, pool: str = "max") -> torch.Tensor:
    """Pool K boxes of one C×H×W map into K×D, D = C · Σ n² (layout of ``spatial_pyramid_pool``).

    boxes_in_cells: K×4 integers (x0, y0, x1, y1), half-open cells inside the map (see
    :func:`sppfeat.features.projection.boxes_to_cells` for boxes in pixels). ValueError for a bad box.
    """
    check_pool(pool)
    if feature_map.dim() != 3:
        raise ValueError(f"feature_map must be C×H×W, got shape {tuple(feature_map.shape)}")
    channels, height, width = feature_map.shape
    boxes = check_cell_boxes(boxes_in_cells, height, width)
    windows = bin_windows(boxes, levels)  # K×B×4
    window_pool = _window_max if pool == "max" else _window_mean
    pooled = window_pool(feature_map, windows.reshape(-1, 4)).reshape(len(boxes), windows.shape[1], channels)
    out, first = [], 0
    for n in levels:  # each level: (channels, rows, cols)
        out.append(pooled[:, first:first + n * n].transpose(1, 2).flatten(1))
        first += n * n
    return torch.cat(out, dim=1)


class BoxPyramidPool(nn.Module):
    """nn.Module wrapper of :func:`pyramid_pool_boxes`: forward(C×H×W map, K×4 cell boxes) -> K×D."""

    def __init__(self, levels: Sequence[int] = DEFAULT_LEVELS, pool: str = "max"):
        super().__init__()
        self.levels = tuple(levels)
        self.pool = check_pool(pool)

    def forward(self, feature_map: torch.Tensor, boxes_in_cells: np.ndarray) -> torch.Tensor:
        return pyramid_pool_boxes(feature_map, boxes_in_cells, self.levels, self.pool)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, pool={self.pool!r}"
