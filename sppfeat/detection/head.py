"""The detection head SPP-net fine-tunes on pooled windows, with the conv layers fixed (He et al.
2014, section 4.2; the softmax and box outputs as in Fast R-CNN).

Per image the stored conv map (C×H×W) goes through a learnt 1×1 convolution to R channels (with
ReLU), each window is max-pooled over the pyramid levels from that reduced map (R·Σn² values), then
fully-connected layers with ReLU and dropout, and two outputs: K+1 class logits (index 0 is
background; softmax gives probabilities, comparable across classes) and 4·K box offsets (R-CNN's
parameterisation, divided by BOX_STD). Reducing the map before pooling makes pooling R/C of its
cost and the first layer R·Σn² wide instead of C·Σn², for every window of every image.

Training pools with ``torchvision.ops.roi_pool`` (it has a gradient), which takes bin i of n over h
cells as floor(i·h/n) to ceil((i+1)·h/n), the pyramid's bins, except that rounding can add one
cell to the last bin of some sizes; detection pools exactly (:func:`sppfeat.roi.pyramid_pool_boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..roi import pyramid_pool_boxes

BOX_STD = (0.1, 0.1, 0.2, 0.2)  # offsets (dx, dy, dw, dh) are learnt divided by these (Fast R-CNN)


class WindowHead(nn.Module):
    """in_channels C of the conv map -> reduced R -> hidden layers -> (K+1 logits, 4·K offsets).

    levels: the pyramid of every window; n_classes K (without background)."""

    def __init__(self, in_channels: int, reduced: int, hidden: Sequence[int], levels: Sequence[int],
                 n_classes: int, dropout: float = 0.5):
        super().__init__()
        self.levels, self.n_classes = tuple(levels), n_classes
        self.shape = {"in_channels": in_channels, "reduced": reduced, "hidden": list(hidden),
                      "levels": list(levels), "n_classes": n_classes, "dropout": dropout}
        self.reduce = nn.Conv2d(in_channels, reduced, 1)
        layers, width = [], reduced * sum(n * n for n in self.levels)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        self.hidden = nn.Sequential(*layers)
        self.classify = nn.Linear(width, n_classes + 1)
        self.box = nn.Linear(width, 4 * n_classes)
        nn.init.normal_(self.classify.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.classify.bias)
        nn.init.zeros_(self.box.bias)

    @classmethod
    def from_record(cls, record: dict) -> "WindowHead":
        return cls(record["in_channels"], record["reduced"], record["hidden"], record["levels"],
                   record["n_classes"], record["dropout"])

    def reduced_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """N×C×H×W (or C×H×W) conv maps -> N×R×H×W (or R×H×W) float32, after ReLU."""
        weight = self.reduce.weight.to(fmap.device)
        return torch.relu(nn.functional.conv2d(fmap.float(), weight, self.reduce.bias))

    def pool_for_training(self, maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """maps N×R×H×W (reduced), cells M×5 (image index, x0, y0, x1, y1: half-open cells) ->
        M×(R·Σn²) in the pyramid's layout, with a gradient (roi_pool; see the module)."""
        from torchvision.ops import roi_pool  # here: torchvision takes ~1 s to import, detect needs none of it

        rois = cells.to(maps.dtype).clone()
        rois[:, 3:] -= 1  # roi_pool's boxes are inclusive
        return torch.cat([roi_pool(maps, rois, n, 1.0).flatten(1) for n in self.levels], dim=1)

    @torch.inference_mode()
    def pool(self, reduced: torch.Tensor, cells: np.ndarray) -> torch.Tensor:
        """R×H×W reduced map, U×4 cell boxes -> U×(R·Σn²), exact pyramid pooling."""
        return pyramid_pool_boxes(reduced, cells, self.levels, "max")

    def features(self, pooled: torch.Tensor) -> torch.Tensor:
        """M×(R·Σn²) pooled windows -> M×F, the last hidden layer."""
        return self.hidden(pooled)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """M×(R·Σn²) pooled windows -> (M×(K+1) logits, M×K×4 offsets, BOX_STD applied)."""
        h = self.features(pooled)
        return self.classify(h), self.box(h).view(len(h), self.n_classes, 4) * h.new_tensor(BOX_STD)

    @torch.inference_mode()
    def predict(self, fmap: torch.Tensor, cells: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, ...]:
        """C×H×W conv map, U×4 cell boxes -> (U×K probabilities of the classes, U×K×4 offsets,
        U×F last hidden layer)."""
        self.eval()
        width = self.shape["hidden"][-1]
        if len(cells) == 0:
            return (np.zeros((0, self.n_classes), np.float32), np.zeros((0, self.n_classes, 4), np.float32),
                    np.zeros((0, width), np.float32))
        reduced = self.reduced_map(fmap)
        probs, offsets, features = [], [], []
        for start in range(0, len(cells), chunk):
            h = self.features(self.pool(reduced, cells[start:start + chunk]))
            probs.append(torch.softmax(self.classify(h), dim=1)[:, 1:])
            offsets.append(self.box(h).view(len(h), self.n_classes, 4) * h.new_tensor(BOX_STD))
            features.append(h)
        return tuple(torch.cat(parts).cpu().numpy() for parts in (probs, offsets, features))
