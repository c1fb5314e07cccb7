"""Pooling many boxes of one map: every box equals spatial_pyramid_pool of the map cropped to it."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sppfeat.pyramid import spatial_pyramid_pool
from sppfeat import roi
from sppfeat.roi import BoxPyramidPool, pyramid_pool_boxes


def cropped_reference(fmap, boxes, levels, pool):
    """The independent reference: crop the map to each box, pool the crop as a whole image."""
    return torch.stack([spatial_pyramid_pool(fmap[:, y0:y1, x0:x1], levels, pool) for x0, y0, x1, y1 in boxes])


@st.composite
def map_and_boxes(draw):
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 24)), draw(st.integers(1, 24))
    boxes = []
    for _ in range(draw(st.integers(1, 12))):
        x0 = draw(st.integers(0, w - 1))
        y0 = draw(st.integers(0, h - 1))
        boxes.append((x0, y0, draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))))
    return c, h, w, np.array(boxes, dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(case=map_and_boxes(), levels=st.lists(st.integers(1, 12), min_size=1, max_size=4),
       pool=st.sampled_from(["max", "avg"]), seed=st.integers(0, 2**31))
def test_boxes_equal_the_cropped_map_reference(case, levels, pool, seed):
    c, h, w, boxes = case
    fmap = torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed))
    got = pyramid_pool_boxes(fmap, boxes, levels, pool)
    expected = cropped_reference(fmap, boxes, levels, pool)
    if pool == "max":  # a maximum is one of the values: bit-exact
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_awkward_boxes(pool):
    """One-cell boxes, boxes smaller than a level, boxes on every border, the whole map, and sizes where
    roi_pool asked for n×n bins overshoots the last one (29 rows in 11 bins, 57 in 7)."""
    fmap = torch.randn(3, 60, 40)
    boxes = np.array([[0, 0, 1, 1], [39, 59, 40, 60], [5, 7, 6, 8], [0, 0, 40, 60], [10, 3, 12, 32],
                      [0, 2, 40, 59], [3, 0, 4, 60], [1, 1, 30, 58], [39, 0, 40, 29]])
    levels = (11, 7, 6, 3, 2, 1)
    expected = cropped_reference(fmap, boxes, levels, pool)
    got = BoxPyramidPool(levels, pool)(fmap, boxes)
    torch.testing.assert_close(got, expected, rtol=1e-6 if pool == "avg" else 0, atol=1e-6 if pool == "avg" else 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_at_a_time", [None, 1, 2])
def test_max_pooling_keeps_the_maps_dtype_also_a_few_channels_at_a_time(monkeypatch, dtype, channels_at_a_time):
    """A float16 map is pooled in float16 (a maximum is exact in any dtype), also when the sparse
    table is too large for all channels at once (5 channels, 1 or 2 at a time: 2, 2, 1)."""
    height, width = 20, 30
    if channels_at_a_time:
        entries = sum((height - (1 << a) + 1) * (width - (1 << b) + 1)
                      for a in range(height.bit_length()) for b in range(width.bit_length()))
        monkeypatch.setattr(roi, "TABLE_BYTES", channels_at_a_time * entries * torch.tensor([], dtype=dtype).element_size())
    fmap = torch.randn(5, height, width).to(dtype)
    rng = np.random.default_rng(1)
    x0, y0 = rng.integers(0, width - 1, 40), rng.integers(0, height - 1, 40)
    boxes = np.stack([x0, y0, rng.integers(x0 + 1, width + 1), rng.integers(y0 + 1, height + 1)], axis=1)
    got = pyramid_pool_boxes(fmap, boxes, (3, 2, 1))
    assert got.dtype == dtype
    assert torch.equal(got.float(), cropped_reference(fmap.float(), boxes, (3, 2, 1), "max"))


def test_no_boxes_give_an_empty_array():
    assert pyramid_pool_boxes(torch.randn(2, 3, 3), np.zeros((0, 4), np.int64), (2, 1)).shape == (0, 10)


@pytest.mark.parametrize("boxes", [[[0, 0, 0, 1]], [[2, 0, 1, 1]], [[0, 0, 4, 1]], [[-1, 0, 1, 1]], [[0, 0, 1]]])
def test_bad_boxes_are_refused(boxes):
    with pytest.raises(ValueError, match="boxes_in_cells"):
        pyramid_pool_boxes(torch.randn(2, 3, 3), np.array(boxes), (1,))
