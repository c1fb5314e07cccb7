"""Layers shared by the backbones: TensorFlow-style "same" convolution and batch-norm folding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one spatial axis of length `size`.

    The output has ceil(size / stride) positions; the odd pixel of an uneven total goes after.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding, valid for any input size.

    With stride 1 and an odd kernel the padding is symmetric and fixed, so the convolution pads
    by itself; only strided convolutions compute their (possibly uneven) padding per input size.
    A dilated kernel pads as a kernel of its span, dilation · (kernel - 1) + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False, dilation: int = 1):
        self.static = stride == 1 and kernel_size % 2 == 1
        self.span = dilation * (kernel_size - 1) + 1
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding=(self.span - 1) // 2 if self.static else 0, dilation=dilation, groups=groups,
                         bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static:
            top, bottom = same_padding(x.shape[-2], self.span, self.stride[0])
            left, right = same_padding(x.shape[-1], self.span, self.stride[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an inference-mode BatchNorm that follows `conv` into the conv's weight and bias.

    After this, conv(x) equals bn(conv_before(x)); the caller replaces `bn` by nn.Identity().
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.bias = nn.Parameter(bias)
