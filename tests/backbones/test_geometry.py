"""Receptive-field centres from the layers, against an empirical measurement: the input pixels that the
gradient of one cell reaches, in a copy of the network made linear (so no gradient vanishes)."""

import numpy as np
import pytest
import torch
from torch import nn

from sppfeat.backbones import get_backbone_spec
from sppfeat.backbones.geometry import cell_centres, trace_layers

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Sigmoid)


def linear_copy(name: str) -> nn.Module:
    """The trunk with random weights made positive, activations and squeeze-excite removed, max
    pooling made average pooling: the same layers' geometry, but every input pixel of a cell's
    receptive field has a non-zero gradient."""
    spec = get_backbone_spec(name)
    trunk = spec.trunk(spec.build().eval()).double()
    for parent in list(trunk.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, ACTIVATIONS) or type(child).__name__ == "SqueezeExcitation":
                setattr(parent, child_name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                         child.ceil_mode))
    with torch.no_grad():
        for p in trunk.parameters():
            p.abs_()
    return trunk


def measured_centre(trunk, height, width, cell, axis):
    """Midpoint of the input pixels (along `axis`) that cell `cell` of the map depends on, or None
    when its receptive field is cut by the image border."""
    x = torch.rand(1, 3, height, width, dtype=torch.float64, requires_grad=True)
    out = trunk(x)
    index = [0, slice(None), out.shape[2] // 2, out.shape[3] // 2]
    index[2 + axis] = cell
    out[tuple(index)].sum().backward()
    reached = np.flatnonzero(x.grad.abs().sum(dim=(0, 1, 3 - axis)).numpy() > 0)
    size = (height, width)[axis]
    if reached[0] == 0 or reached[-1] == size - 1:
        return None
    return (reached[0] + reached[-1]) / 2, out.shape[2 + axis]


@pytest.fixture(scope="module")
def lite0():
    spec = get_backbone_spec("efficientnet_lite0")
    return spec.trunk(spec.build().eval())


def test_lite0_centres_depend_on_the_size_as_its_same_padding_says(lite0):
    layers = trace_layers(lite0)
    for size, offset in ((224, 31), (225, 0), (688, 15)):
        centres = cell_centres(layers, size, 0)
        assert len(centres) == -(-size // 32)
        np.testing.assert_array_equal(centres, 32 * np.arange(len(centres)) + offset)


# Lite0's receptive field is about 850 pixels wide: sizes + 1024 keep the parity of every stride-2
# layer's input, so 1248, 1249 and 1712 measure the offsets of 224, 225 and 688
@pytest.mark.parametrize("size,axis,cell", [(1248, 0, 16), (1249, 1, 20), (1712, 0, 27), (1101, 1, 17)])
def test_lite0_centres_match_the_measured_receptive_fields(lite0, size, axis, cell):
    centres = cell_centres(trace_layers(lite0), size, axis)
    shape = (size, 8) if axis == 0 else (8, size)
    assert measured_centre(linear_copy("efficientnet_lite0"), *shape, cell, axis) == (centres[cell], len(centres))


@pytest.mark.parametrize("name,size", [("resnet50", 641), ("vgg16", 300), ("alexnet", 301),
                                       ("efficientnet_b0", 1130),
                                       ("efficientnet_lite0_os16", 1301)])
def test_other_backbones_centres_match_the_measured_receptive_fields(name, size):
    spec = get_backbone_spec(name)
    centres = cell_centres(trace_layers(spec.trunk(spec.build().eval())), size, 0)
    cell = len(centres) // 2
    assert measured_centre(linear_copy(name), size, 32, cell, 0) == (centres[cell], len(centres))
