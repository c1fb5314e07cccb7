"""The descriptor network: input normalisation, the backbone trunk and spatial pyramid pooling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .backbones import LoadedBackbone
from .pyramid import pyramid_dim, spatial_pyramid_pool


class SPPDescriptor(nn.Module):
    """uint8 images N×H×W×3 (one shape per call) -> float32 SPP vectors N×D, D = C · Σ n².

    The backbone's batch norms are folded into its convolutions when it supports it (``fuse()``).
    """

    def __init__(self, backbone: LoadedBackbone, levels: Sequence[int], pool: str = "max"):
        super().__init__()
        spec = backbone.spec
        net = backbone.net
        if hasattr(net, "fuse"):
            net.fuse()
        self.trunk = spec.trunk(net).eval()
        self.levels = tuple(levels)
        self.pool = pool
        self.dim = pyramid_dim(spec.channels, self.levels)
        norm = spec.normalization
        self.register_buffer("mean", torch.tensor(norm.mean).reshape(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(norm.std).reshape(1, 3, 1, 1))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 -> last conv map N×C×h×w.

        The NHWC pixels become an NCHW tensor in channels-last memory layout, which the CPU
        convolutions run faster on (measured: +14 % images/s with one thread, README).
        """
        x = images.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
        x = (x - self.mean) * self.inv_std
        return self.trunk(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return spatial_pyramid_pool(self.feature_map(images).float(), self.levels, self.pool)
