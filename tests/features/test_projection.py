"""Boxes in pixels -> cells of the conv map, against a brute-force loop over the cells; EXIF orientation
against the decoded pixels; the multi-scale choice against a loop over the scales."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sppfeat.backbones import get_backbone_spec
from sppfeat.backbones.geometry import cell_centres, trace_layers
from sppfeat.data.decode import ResizePolicy, decode_image
from sppfeat.features.projection import BEST_SIDE, best_scales, boxes_to_cells, orient_boxes, usable_boxes


@pytest.fixture(scope="module")
def layers():
    spec = get_backbone_spec("efficientnet_lite0")
    return trace_layers(spec.trunk(spec.build().eval()))


def brute_force_cells(box, image_size, input_size, rows, cols):
    """Loop over the cells of each axis: those whose centre pixel's middle lies in the scaled box (an edge
    on the image border reaching every cell beyond it); none inside -> the cell nearest the box's middle."""
    out = []
    for lo, hi, full, size, centres in ((box[0], box[2], image_size[1], input_size[1], cols),
                                        (box[1], box[3], image_size[0], input_size[0], rows)):
        factor = size / full
        inside = [k for k, c in enumerate(centres)
                  if (lo <= 0 or c + 0.5 >= lo * factor) and (hi >= full or c + 0.5 < hi * factor)]
        if not inside:
            middle = (lo + hi) / 2 * factor
            inside = [min(range(len(centres)), key=lambda k: (abs(centres[k] + 0.5 - middle), k))]
        out.append((inside[0], inside[-1] + 1))
    (x0, x1), (y0, y1) = out
    return [x0, y0, x1, y1]


@settings(max_examples=60, deadline=None)
@given(height=st.integers(20, 700), width=st.integers(20, 700), scale=st.sampled_from([64, 128, 224, 225, 480, 688]),
       data=st.data())
def test_cells_equal_a_brute_force_loop(layers, height, width, scale, data):
    in_h, in_w, _ = ResizePolicy(scale, 2048).target_size(height, width)
    rows, cols = cell_centres(layers, in_h, 0), cell_centres(layers, in_w, 1)
    boxes = []
    for _ in range(8):
        x1 = data.draw(st.floats(0, width - 0.5))
        y1 = data.draw(st.floats(0, height - 0.5))
        boxes.append([x1, y1, data.draw(st.floats(x1 + 0.1, width)), data.draw(st.floats(y1 + 0.1, height))])
    got = boxes_to_cells(np.array(boxes), (height, width), (in_h, in_w), rows, cols)
    for box, cells in zip(boxes, got.tolist()):
        assert cells == brute_force_cells(box, (height, width), (in_h, in_w), rows, cols)


@pytest.mark.parametrize("size,scale", [((333, 500), 224), ((500, 333), 225), ((375, 500), 688), ((20, 900), 64)])
def test_whole_image_box_covers_the_whole_map(layers, size, scale):
    height, width = size
    in_h, in_w, _ = ResizePolicy(scale, 2048).target_size(height, width)
    rows, cols = cell_centres(layers, in_h, 0), cell_centres(layers, in_w, 1)
    cells = boxes_to_cells(np.array([[0, 0, width, height], [-50, -9, width + 3, height + 70]]), size, (in_h, in_w),
                           rows, cols)
    assert cells.tolist() == [[0, 0, len(cols), len(rows)]] * 2


def test_tiny_and_border_boxes_cover_one_cell(layers):
    # 224 × 224: centres at 32i + 31 (pixel middles 32i + 31.5); the last one is pixel 223
    rows = cols = cell_centres(layers, 224, 0)
    boxes = np.array([[100, 100, 101, 101],  # between centres: the nearest, centre 95 (4.5 away vs 27.5)
                      [0, 0, 1, 1],  # top-left pixel: the first cell
                      [223, 223, 224, 224],  # bottom-right pixel: on the border, the last cell
                      [127, 0, 128.5, 224]])  # contains the middle 127.5 of cell 3; full height
    cells = boxes_to_cells(boxes, (224, 224), (224, 224), rows, cols)
    assert cells.tolist() == [[2, 2, 3, 3], [0, 0, 1, 1], [6, 6, 7, 7], [3, 0, 4, 7]]


def test_boxes_scale_with_the_image(layers):
    """The same box on the same picture at twice the resolution covers the same cells."""
    rows, cols = cell_centres(layers, 224, 0), cell_centres(layers, 336, 1)
    small = boxes_to_cells(np.array([[40, 30, 200, 150]]), (224, 336), (224, 336), rows, cols)
    large = boxes_to_cells(np.array([[80, 60, 400, 300]]), (448, 672), (224, 336), rows, cols)
    assert small.tolist() == large.tolist() == [[1, 0, 6, 4]]  # rows: middles 31.5 ... 127.5 in [30, 150)


def test_unusable_boxes_have_a_reason_and_others_are_clipped():
    boxes = np.array([[10, 10, 20, 20], [-5, 5, 30, 200], [20, 5, 10, 9], [3, 3, 3, 9], [60, 60, 80, 80],
                      [1, np.nan, 2, 3]])
    clipped, reasons = usable_boxes(boxes, height=50, width=40)
    assert reasons == [None, None, "inverted box (x2 < x1 or y2 < y1)", "empty box (zero width or height)",
                       "box outside the image", "box not finite"]
    assert clipped[1].tolist() == [0, 5, 30, 50]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_turn_with_the_exif_orientation(tmp_path, orientation):
    """A red rectangle drawn at a box of the stored pixels is found, after decoding (which applies the
    orientation), exactly where orient_boxes puts the box."""
    stored = np.zeros((30, 50, 3), np.uint8)
    box = np.array([[7, 4, 19, 11]])  # x1, y1, x2, y2 of the stored image
    stored[4:11, 7:19] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.png"
    Image.fromarray(stored).save(path, exif=exif)
    shown = decode_image(str(path), ResizePolicy(0)).pixels
    ys, xs = np.nonzero(shown[..., 0] > 128)
    assert orient_boxes(box, orientation, (30, 50)).tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]


@settings(max_examples=50, deadline=None)
@given(height=st.integers(50, 1000), width=st.integers(50, 1000), data=st.data())
def test_best_scale_is_the_one_closest_to_224_squared(height, width, data):
    scales = data.draw(st.lists(st.sampled_from([224, 480, 576, 688, 864, 1200]), min_size=1, max_size=5, unique=True))
    sizes = [ResizePolicy(s, 2048).target_size(height, width)[:2] for s in scales]
    x1, y1 = data.draw(st.floats(0, width - 1)), data.draw(st.floats(0, height - 1))
    box = [x1, y1, data.draw(st.floats(x1 + 1, width)), data.draw(st.floats(y1 + 1, height))]
    area = (box[2] - box[0]) * (box[3] - box[1])
    gaps = [abs(area * h / height * w / width - BEST_SIDE ** 2) for h, w in sizes]
    assert best_scales(np.array([box]), (height, width), sizes).tolist() == [gaps.index(min(gaps))]
