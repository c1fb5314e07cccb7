"""Where each cell of a conv map sits in the input image: the receptive-field centre of every cell,
computed from the network's layers for the actual input size, one axis at a time.

Only the layers on the path from the input to the map matter (kernel, stride, dilation and padding).
With TensorFlow "SAME" padding (EfficientNet-Lite) a strided layer pads by an amount that depends on
whether its input is even or odd, so the centres depend on the image size: for EfficientNet-Lite0,
cell i is centred on pixel 32i + 31 of a 224-pixel side, 32i of 225 and 32i + 15 of 688.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .layers import Conv2dSame, same_padding

PROBE_SIDE = 96  # pixels of the probe image the layers are traced with: a 3×3 map at stride 32, and cheap


@dataclass(frozen=True)
class Layer:
    """One spatial layer per axis (rows, columns): kernel, stride, dilation; padding before the
    input (None: TensorFlow "SAME", computed from the input size); ceil_mode of a pooling layer."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int] | None = (0, 0)
    ceil_mode: bool = False

    def span(self, axis: int) -> int:
        """Input pixels one output position reads along `axis`."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1

    def pad_before(self, size: int, axis: int) -> int:
        if self.padding is None:
            return same_padding(size, self.span(axis), self.stride[axis])[0]
        return self.padding[axis]

    def out_size(self, size: int, axis: int) -> int:
        """Output positions for an input of `size` along `axis` (the rules of TF SAME and of PyTorch)."""
        stride = self.stride[axis]
        if self.padding is None:
            return math.ceil(size / stride)
        pad, span = self.padding[axis], self.span(axis)
        if not self.ceil_mode:
            return (size + 2 * pad - span) // stride + 1
        out = math.ceil((size + 2 * pad - span) / stride) + 1
        return out - 1 if (out - 1) * stride >= size + pad else out


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def describe_layer(module: nn.Module) -> Layer | None:
    """The geometry of a convolution or pooling module; None for any other module."""
    if isinstance(module, Conv2dSame):
        padding = None if not module.static else module.padding
        return Layer(module.kernel_size, module.stride, module.dilation, padding)
    if isinstance(module, nn.Conv2d):
        same = module.padding == "same"
        return Layer(module.kernel_size, module.stride, module.dilation, None if same else _pair(module.padding))
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        dilation = _pair(getattr(module, "dilation", 1))
        return Layer(_pair(module.kernel_size), _pair(module.stride or module.kernel_size), dilation,
                     _pair(module.padding), module.ceil_mode)
    return None


@torch.no_grad()
def trace_layers(trunk: nn.Module, device: torch.device | str = "cpu") -> tuple[Layer, ...]:
    """The layers on the path from the input to the map, in order, found by running a small probe
    image through `trunk` (3 channels in; tracing on the meta device instead costs seconds of
    imports). A layer whose input is not the current map size is on a side branch (a residual's
    downsampling, a squeeze-excite) and is left out."""
    found: list[tuple[tuple[int, int], tuple[int, int], Layer]] = []

    def record(module, inputs, output):
        layer = describe_layer(module)
        if layer is not None:
            found.append((tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]), layer))

    hooks = [m.register_forward_hook(record) for m in trunk.modules()]
    try:
        trunk(torch.zeros(1, 3, PROBE_SIDE, PROBE_SIDE, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    path, size = [], (PROBE_SIDE, PROBE_SIDE)
    for before, after, layer in found:
        if before == size:
            path.append(layer)
            size = after
    return tuple(path)


def cell_centres(layers: tuple[Layer, ...], size: int, axis: int) -> np.ndarray:
    """The receptive-field centre of every cell along `axis` for an input `size` pixels long, as a
    pixel index (float: a centre between two pixels ends in .5). Cell count = len(result)."""
    sizes = [size]
    for layer in layers:
        sizes.append(layer.out_size(sizes[-1], axis))
    centre = np.arange(sizes[-1], dtype=np.float64)
    for layer, n_in in zip(reversed(layers), reversed(sizes[:-1])):
        centre = centre * layer.stride[axis] - layer.pad_before(n_in, axis) + (layer.span(axis) - 1) / 2
    return centre
