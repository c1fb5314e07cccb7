"""Spatial pyramid pooling (He et al. 2014, appendix): a conv map of any size to a fixed-length vector.

For a C×H×W map and a level n, bin (i, j) covers rows [floor(i·H/n), ceil((i+1)·H/n)) and
columns [floor(j·W/n), ceil((j+1)·W/n)).  Every bin is non-empty, also when the map is smaller
than the level (H < n): neighbouring bins then share rows.  This is exactly the window rule of
PyTorch's adaptive pooling, which does the work here.

Output layout: the levels in the order given; each level flattened as (channels, rows, cols);
concatenated.  So the dimension is D = C · Σ n².
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import DEFAULT_LEVELS, check_pool, pyramid_dim  # noqa: F401  (pyramid_dim: part of this op's API)

def spatial_pyramid_pool(
    feature_map: torch.Tensor, levels: Sequence[int] = DEFAULT_LEVELS, pool: str = "max"
) -> torch.Tensor:
    """Pool an N×C×H×W (or C×H×W) map into N×D (or D) with D = C · Σ n²."""
    check_pool(pool)
    squeeze = feature_map.dim() == 3
    x = feature_map.unsqueeze(0) if squeeze else feature_map
    if x.dim() != 4:
        raise ValueError(f"expected a C×H×W or N×C×H×W map, got shape {tuple(feature_map.shape)}")
    pool_fn = F.adaptive_max_pool2d if pool == "max" else F.adaptive_avg_pool2d
    out = torch.cat([pool_fn(x, n).flatten(1) for n in levels], dim=1)
    return out[0] if squeeze else out


class SpatialPyramidPool(nn.Module):
    """nn.Module wrapper of :func:`spatial_pyramid_pool`."""

    def __init__(self, levels: Sequence[int] = DEFAULT_LEVELS, pool: str = "max"):
        super().__init__()
        self.levels = tuple(levels)
        self.pool = check_pool(pool)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return spatial_pyramid_pool(feature_map, self.levels, self.pool)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, pool={self.pool!r}"
