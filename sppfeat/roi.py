"""Spatial pyramid pooling of many windows (boxes) of one conv map at once (He et al. 2014, section 4).

A box in cells is (x0, y0, x1, y1), integers, half-open: columns [x0, x1) and rows [y0, y1) of a
C×H×W map, non-empty and inside the map. It is pooled exactly as :func:`sppfeat.pyramid.spatial_pyramid_pool`
pools the map cropped to it: for a box of h rows and level n, bin i covers rows
[y0 + floor(i·h/n), y0 + ceil((i+1)·h/n)), and likewise for columns; same vector layout.

Every bin of every box and level is one window, and each window costs the same whatever its size:
max pooling reads four entries of a sparse table (the maxima of every 2^a × 2^b block of the map,
built once per map; the four blocks of a window's largest power-of-two size from its corners cover
it exactly), average pooling four entries of an integral image. (``torchvision.ops.roi_pool``
reads every cell of every window, and asked for n×n bins it overshoots the last one by a cell for
some sizes, e.g. 29 rows in 11 bins.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

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


TABLE_BYTES = 1 << 26  # sparse tables are built for as many channels at a time as fit 64 MB


def _window_max(feature_map: torch.Tensor, windows: np.ndarray) -> torch.Tensor:
    """C×H×W map, W×4 windows -> W×C maxima, from the map's sparse table (see the module), in the
    map's dtype (a maximum is exact in any: a float16 map moves half the bytes of float32)."""
    channels, height, width = feature_map.shape
    x0, y0, x1, y1 = windows.T
    a = np.floor(np.log2(y1 - y0)).astype(np.int64)  # blocks of 2^a rows × 2^b columns
    b = np.floor(np.log2(x1 - x0)).astype(np.int64)
    rows_log, cols_log = height.bit_length(), width.bit_length()
    offsets, first = np.zeros((rows_log, cols_log), np.int64), 0
    for i in range(rows_log):
        for j in range(cols_log):
            offsets[i, j] = first
            first += (height - (1 << i) + 1) * (width - (1 << j) + 1)
    row_width = width - (1 << b) + 1
    corners = [(y, x) for y in (y0, y1 - (1 << a)) for x in (x0, x1 - (1 << b))]
    index = [torch.as_tensor(offsets[a, b] + y * row_width + x, device=feature_map.device) for y, x in corners]
    step = max(1, TABLE_BYTES // (first * feature_map.element_size()))
    out = feature_map.new_empty((len(windows), channels))
    other = feature_map.new_empty((len(windows), min(step, channels)))  # reused: fresh ones cost page faults
    for c in range(0, channels, step):
        table = _sparse_table(feature_map[c:c + step], rows_log, cols_log)
        best, gathered = out[:, c:c + table.shape[1]], other[:, :table.shape[1]]
        torch.index_select(table, 0, index[0], out=best)
        for i in index[1:]:
            torch.index_select(table, 0, i, out=gathered)
            torch.maximum(best, gathered, out=best)
    return out


def _sparse_table(feature_map: torch.Tensor, rows_log: int, cols_log: int) -> torch.Tensor:
    """C×H×W map -> N×C: the maxima of every 2^a × 2^b block (a < rows_log, b < cols_log), tables
    in (a, b) order, each (H - 2^a + 1)×(W - 2^b + 1) blocks by their top-left cell, row-major."""
    tables = []
    by_rows = feature_map.permute(1, 2, 0).contiguous()  # H×W×C
    for a in range(rows_log):
        if a:
            half = 1 << (a - 1)
            by_rows = torch.maximum(by_rows[:-half], by_rows[half:])
        block = by_rows
        for b in range(cols_log):
            if b:
                half = 1 << (b - 1)
                block = torch.maximum(block[:, :-half], block[:, half:])
            tables.append(block.reshape(-1, feature_map.shape[0]))
    return torch.cat(tables)


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
    out, first = pooled.new_empty((len(boxes), channels * windows.shape[1])), 0
    for n in levels:  # each level: (channels, rows, cols)
        level = out[:, channels * first:channels * (first + n * n)].view(len(boxes), channels, n * n)
        level.copy_(pooled[:, first:first + n * n].transpose(1, 2))
        first += n * n
    return out


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
