"""The descriptor network: input normalisation, the backbone trunk and spatial pyramid pooling, and
describing decoded images one batch per shape (exact or bucketed sizes; never padded)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backbones import LoadedBackbone, WeightsUnavailable, load_backbone
from ..config import ExtractionConfig, pyramid_dim
from ..pyramid import spatial_pyramid_pool


class SPPDescriptor(nn.Module):
    """uint8 images N×H×W×3 (one shape per call) -> float32 SPP vectors N×D, D = C · Σ n².

    The backbone's batch norms are folded into its convolutions when it supports it (``fuse()``).
    compute: 'float32', or 'bfloat16' (the trunk under autocast; the pooled vectors are float32).
    """

    def __init__(self, backbone: LoadedBackbone, levels: Sequence[int], pool: str = "max", compute: str = "float32"):
        super().__init__()
        if compute not in ("float32", "bfloat16"):
            raise ValueError(f"compute must be 'float32' or 'bfloat16', got {compute!r}")
        self.compute = compute
        spec = backbone.spec
        net = backbone.net
        if hasattr(net, "fuse"):
            net.fuse()
        self.trunk = spec.trunk(net).eval()
        self.levels = tuple(levels)
        self.pool = pool
        self.channels = spec.channels
        self.dim = pyramid_dim(spec.channels, self.levels)
        norm = spec.normalization
        self.register_buffer("mean", torch.tensor(norm.mean).reshape(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(norm.std).reshape(1, 3, 1, 1))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 -> last conv map N×C×h×w.

        The NHWC pixels become an NCHW tensor in channels-last memory layout, which the CPU
        convolutions run faster on (measured: +14 % images/s with one thread, docs/benchmarks.md).
        """
        x = images.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
        x = (x - self.mean) * self.inv_std
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.compute == "bfloat16"):
            return self.trunk(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return spatial_pyramid_pool(self.feature_map(images).float(), self.levels, self.pool)


def build_descriptor(config: ExtractionConfig, device: torch.device) -> tuple[SPPDescriptor, ExtractionConfig, Path]:
    """Load the weights of `config` and build its network on `device`. Returns the network, the
    config with ``weights_sha256`` filled in and shapes and compute resolved for `device`, and the
    weights file. WeightsUnavailable when the weights cannot be found, or differ from a pinned
    ``weights_sha256``."""
    config = config.for_device(device.type)
    loaded = load_backbone(config.backbone, config.weights)
    if config.weights_sha256 and config.weights_sha256 != loaded.weights_sha256:
        raise WeightsUnavailable(f"{loaded.weights_path} is not the weights file the settings were made with "
                                 f"(sha256 {loaded.weights_sha256[:12]}..., expected {config.weights_sha256[:12]}...)")
    model = SPPDescriptor(loaded, config.levels, config.pool, config.compute).to(device)
    return model, config.replace(weights_sha256=loaded.weights_sha256), loaded.weights_path


@dataclass
class DecodedItem:
    """One image through the pipeline: after decoding, its pixels at each scale (H×W×3 uint8 each;
    None for a scale not needed); after the model, its SPP vector (D float32). `error` is the skip
    reason of a bad file."""

    index: int
    pixels: list[np.ndarray | None] | None
    original_size: tuple[int, int]
    upsampled: bool
    error: str | None
    vector: np.ndarray | None = None

    def outputs(self) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
        """What a described item adds to the output: rows R×D, per-row columns (R each) and notes
        (skip reasons for parts of the image); here one row, no columns, no notes."""
        return self.vector[None], {}, []


def group_by_shape(items: list[DecodedItem]) -> dict[tuple[int, ...], list[tuple[DecodedItem, int]]]:
    """Group (item, scale index) pairs by pixel shape; every group runs as one forward pass."""
    groups: dict[tuple[int, ...], list[tuple[DecodedItem, int]]] = defaultdict(list)
    for item in items:
        if item.error is None:
            for k, pixels in enumerate(item.pixels):
                if pixels is not None:
                    groups[tuple(pixels.shape)].append((item, k))
    return groups


def forward_groups(network, items: list[DecodedItem], device: torch.device):
    """Run `network` (uint8 N×H×W×3 -> N×...) on every shape group of the items' pixels, one batch
    per group (no padding); yields (group, outputs) with outputs[j] for group[j]. On a GPU the
    pixels go through pinned memory and are copied without waiting."""
    for group in group_by_shape(items).values():
        batch = torch.from_numpy(np.stack([item.pixels[k] for item, k in group]))
        if device.type == "cuda":
            batch = batch.pin_memory()
        yield group, network(batch.to(device, non_blocking=True))


@torch.inference_mode()
def describe_items(model: SPPDescriptor, items: list[DecodedItem], device: torch.device) -> list[DecodedItem]:
    """Fill in the SPP vector of every decoded item and drop its pixels; the vectors of all shape
    groups come to the host in one copy. With several scales, an image's vectors are combined bin
    by bin: maximum for max pooling, mean for average pooling."""
    groups, outputs = [], []
    for group, vectors in forward_groups(model, items, device):
        groups.append(group)
        outputs.append(vectors)
    per_scale: dict[int, list[np.ndarray]] = defaultdict(list)
    if outputs:
        host = torch.cat(outputs).cpu().numpy()
        rows = iter(host)
        for group in groups:
            for (item, _), vector in zip(group, rows):
                per_scale[item.index].append(vector)
    for item in items:
        vectors = per_scale.get(item.index)
        if vectors:
            item.vector = combine_scales(vectors, model.pool)
        item.pixels = None
    return items


def combine_scales(vectors: list[np.ndarray], pool: str) -> np.ndarray:
    """Vectors (or K×D arrays) of one image at several scales, combined bin by bin: maximum for max
    pooling, mean for average pooling."""
    if len(vectors) == 1:
        return vectors[0]
    return np.maximum.reduce(vectors) if pool == "max" else np.mean(vectors, axis=0)
