import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sppfeat.pyramid import SpatialPyramidPool, pyramid_dim, spatial_pyramid_pool


def brute_force_spp(fmap: np.ndarray, levels, pool="max") -> np.ndarray:
    """Reference: an explicit loop over bins with the paper's floor/ceil window rule."""
    c, h, w = fmap.shape
    out = []
    for n in levels:
        level = np.empty((c, n, n), dtype=np.float64)
        for i in range(n):
            r0, r1 = math.floor(i * h / n), math.ceil((i + 1) * h / n)
            for j in range(n):
                c0, c1 = math.floor(j * w / n), math.ceil((j + 1) * w / n)
                window = fmap[:, r0:r1, c0:c1]
                assert window.size > 0
                level[:, i, j] = window.max(axis=(1, 2)) if pool == "max" else window.mean(axis=(1, 2))
        out.append(level.reshape(-1))  # (channels, rows, cols)
    return np.concatenate(out)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (7, 1), (5, 3), (6, 6), (13, 9), (2, 17)])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_matches_brute_force_on_awkward_sizes(h, w, pool):
    fmap = torch.randn(4, h, w, dtype=torch.float64)
    levels = (6, 3, 2, 1)
    got = spatial_pyramid_pool(fmap, levels, pool).numpy()
    np.testing.assert_allclose(got, brute_force_spp(fmap.numpy(), levels, pool), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 5), h=st.integers(1, 20), w=st.integers(1, 20),
       levels=st.lists(st.integers(1, 9), min_size=1, max_size=4), pool=st.sampled_from(["max", "avg"]))
def test_matches_brute_force_property(c, h, w, levels, pool):
    fmap = torch.randn(c, h, w, dtype=torch.float64)
    got = spatial_pyramid_pool(fmap, levels, pool).numpy()
    assert got.shape == (pyramid_dim(c, levels),)
    np.testing.assert_allclose(got, brute_force_spp(fmap.numpy(), levels, pool), rtol=1e-12, atol=1e-12)


def test_batched_equals_per_map_and_module_wrapper():
    maps = torch.randn(3, 8, 5, 11)
    module = SpatialPyramidPool((4, 2, 1), "max")
    batched = module(maps)
    assert batched.shape == (3, 8 * 21)
    for k in range(3):
        torch.testing.assert_close(batched[k], spatial_pyramid_pool(maps[k], (4, 2, 1)))


def test_layout_is_levels_then_channels_rows_cols():
    fmap = torch.arange(2 * 2 * 2, dtype=torch.float32).reshape(2, 2, 2)
    out = spatial_pyramid_pool(fmap, (2, 1))
    # level 2: each bin is one pixel, flattened (channel, row, col); level 1: channel maxima
    assert out.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 3, 7]


def test_unknown_pool_is_refused():
    with pytest.raises(ValueError, match="pool must be one of"):
        spatial_pyramid_pool(torch.zeros(1, 2, 2), (1,), "median")
    with pytest.raises(ValueError, match="pool must be one of"):
        SpatialPyramidPool((1,), "median")
