"""Variants of the window vectors tried by benchmarks/detection.py (accuracy --more-scales, --imagenet,
--context-levels);
experiments measured there, not options of sppfeat."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from sppfeat.classify.svm import normalize_features
from sppfeat.detection.maps import ImageMap, RegionVectors
from sppfeat.features.projection import best_scales
from sppfeat.roi import pyramid_pool_boxes


class CoarseContextVectors(RegionVectors):
    """Experiment: as RegionVectors' context, with the enlarged window pooled at `levels` only
    (e.g. (1,): 1,280 more values per window instead of 17,920)."""

    def __init__(self, config, device, factor: float, levels: tuple[int, ...]):
        super().__init__(config, device, factor)
        self.context_levels = levels
        channels = self.model.dim // sum(n * n for n in self.model.levels)
        self.dim = self.model.dim + channels * sum(n * n for n in levels)

    def pool_enlarged(self, image, cells):
        return self.pool_cells(image, cells, self.context_levels)


@dataclasses.dataclass
class ScaledMaps(ImageMap):
    """Experiment: an image's map at the first scale and its maps at further scales."""

    others: tuple = ()

    @classmethod
    def of(cls, image: ImageMap, others: tuple) -> "ScaledMaps":
        return cls(**{f.name: getattr(image, f.name) for f in dataclasses.fields(image)}, others=others)


class MultiScaleVectors(RegionVectors):
    """Experiment: each window pooled from the map of the scale where its area is closest to 224²
    (the paper's multi-scale detection); maps are ScaledMaps."""

    def pool_unique(self, image, boxes):
        boxes = np.asarray(boxes, np.float64)
        maps = (image,) + image.others
        _, upright = self.usable(image, boxes)
        choice = best_scales(upright, image.original_size, [m.input_size for m in maps])
        vectors, inverse, count = [], np.zeros(len(boxes), np.int64), 0
        for k, m in enumerate(maps):
            chosen = np.flatnonzero(choice == k)
            if len(chosen):
                v, index = super().pool_unique(m, boxes[chosen])
                vectors.append(v)
                inverse[chosen] = index + count
                count += len(v)
        return (np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)), inverse


class ImageNetVectors(RegionVectors):
    """Experiment: each window's vector followed by `weight` · √p, p the backbone's ImageNet class
    probabilities of the window (its cells averaged, then the network's own classifier, as the
    network classifies a whole image); √p has unit L2 norm."""

    def __init__(self, config, device, weight: float):
        from sppfeat.backbones.registry import load_backbone

        super().__init__(config, device)
        self.classifier = load_backbone(config.backbone, config.weights).net._fc.to(self.device).eval()
        self.weight = weight
        self.dim += self.classifier.out_features

    @torch.inference_mode()
    def pool_cells(self, image, cells):
        if len(cells) == 0:
            return np.zeros((0, self.dim), np.float32)
        mean = pyramid_pool_boxes(image.fmap.float(), cells, (1,), "avg")
        p = torch.softmax(self.classifier(mean), dim=1)
        return np.hstack([super().pool_cells(image, cells), self.weight * p.sqrt().cpu().numpy()])


class HiddenVectors:
    """Experiment (the paper's scoring after fine-tuning): a trained head's last hidden layer,
    L2-normalised, as the window vector of linear SVMs with hard-negative mining; the interface of
    RegionVectors that sppfeat.detection.mining and training use."""

    def __init__(self, rv: RegionVectors, head):
        self.rv, self.head, self.dim = rv, head.eval(), head.shape["hidden"][-1]

    def usable(self, image: ImageMap, boxes: np.ndarray):
        return self.rv.usable(image, boxes)

    def pool_unique(self, image: ImageMap, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells, inverse = self.rv.unique_cells(image, boxes)
        return normalize_features(self.head.predict(image.fmap, cells)[2]), inverse

    def pool(self, image: ImageMap, boxes: np.ndarray) -> np.ndarray:
        vectors, inverse = self.pool_unique(image, boxes)
        return vectors[inverse]
