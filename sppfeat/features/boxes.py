"""Describing boxes: every image is decoded once and run through the network once per scale it needs;
each of its boxes is projected onto the conv map and pooled with the pyramid (sppfeat.roi). One row
per usable box; the others are skipped with a reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..backbones.geometry import cell_centres, trace_layers
from ..config import ExtractionConfig
from ..data.boxes import BoxSet
from ..data.decode import DecodedImage
from ..data.discover import ImageList
from ..roi import pyramid_pool_boxes
from ..storage.hdf5 import STR
from ..storage.progress import Segment, listing_fingerprint
from .descriptor import DecodedItem, SPPDescriptor, combine_scales, forward_groups
from .jobs import ImageJob
from .projection import best_scales, boxes_to_cells, orient_boxes, usable_boxes
from .runtime import Describe, ImageFiles

ALL_SCALES = -1  # scale_used of a box pooled at every one of several scales (combine='max')


@dataclass
class RegionItem(DecodedItem):
    """An image with boxes. boxes: K×4 pixels of the original image as stored on disk; orientation:
    its EXIF orientation (original_size is after it); first_box: global index of its first box.
    Described: rows R×D (its usable boxes), box_ids (R, global), scale_used (R), notes (why the
    other boxes were skipped)."""

    boxes: np.ndarray | None = None
    orientation: int = 1
    first_box: int = 0
    rows: np.ndarray | None = None
    box_ids: np.ndarray | None = None
    scale_used: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def outputs(self) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
        return self.rows, {"box": self.box_ids, "scale": self.scale_used}, self.notes


def region_item(index: int, images: list[DecodedImage], boxes: np.ndarray, first_box: int) -> RegionItem:
    """The item of an image decoded at every scale, with its boxes given in pixels as stored on disk."""
    return RegionItem(index, [image.pixels for image in images], images[0].original_size,
                      any(image.upsampled for image in images), None, boxes=boxes,
                      orientation=images[0].orientation, first_box=first_box)


def upright_boxes(item: RegionItem) -> np.ndarray:
    """The item's boxes in pixels of the image as displayed (its EXIF orientation applied)."""
    height, width = item.original_size
    stored = (width, height) if item.orientation in (5, 6, 7, 8) else (height, width)
    return orient_boxes(item.boxes, item.orientation, stored)


class BoxedImageFiles(ImageFiles):
    """ImageFiles whose items carry their boxes (RegionItem)."""

    def __init__(self, image_list: ImageList, box_set: BoxSet, policies, indices: np.ndarray, timeout: float):
        super().__init__(image_list, policies, indices, timeout)
        self.box_set = box_set

    def item(self, index: int, images: list[DecodedImage]) -> RegionItem:
        first, end = np.searchsorted(self.box_set.image, [index, index + 1])
        return region_item(index, images, self.box_set.boxes[first:end], int(first))


class RegionDescriber:
    """Describes batches of RegionItems: (items, device) -> items with their rows (see the module)."""

    def __init__(self, model: SPPDescriptor, config: ExtractionConfig, device: torch.device | str = "cpu"):
        self.model, self.scales, self.combine = model, config.scales, config.combine
        self.layers = trace_layers(model.trunk, device)

    def cells(self, boxes: np.ndarray, item: RegionItem, scale: int, map_size: tuple[int, int]) -> np.ndarray:
        """Usable boxes of `item` -> cell boxes of its map at scale index `scale`."""
        in_h, in_w = item.pixels[scale].shape[:2]
        rows, cols = cell_centres(self.layers, in_h, 0), cell_centres(self.layers, in_w, 1)
        if (len(rows), len(cols)) != map_size:
            raise RuntimeError(f"the traced layers give a {len(rows)}×{len(cols)} map for {in_h}×{in_w} pixels, "
                               f"the network {map_size[0]}×{map_size[1]}")
        return boxes_to_cells(boxes, item.original_size, (in_h, in_w), rows, cols)

    @torch.inference_mode()
    def __call__(self, items: list[DecodedItem], device: torch.device) -> list[DecodedItem]:
        plans = {}
        for item in items:
            if item.error is None:
                plans[item.index] = self.plan(item)
        pooled: dict[int, dict[int, np.ndarray]] = {index: {} for index in plans}
        for group, maps in forward_groups(self.model.feature_map, items, device):
            for (item, scale), feature_map in zip(group, maps):
                boxes, choice = plans[item.index]
                chosen = boxes if choice is None else boxes[choice == scale]
                cells = self.cells(chosen, item, scale, tuple(feature_map.shape[-2:]))
                pooled[item.index][scale] = pyramid_pool_boxes(feature_map.float(), cells, self.model.levels,
                                                               self.model.pool).cpu().numpy()
        for item in items:
            if item.error is None:
                self.finish(item, plans[item.index][1], pooled[item.index])
            item.pixels = None
        return items

    def plan(self, item: RegionItem) -> tuple[np.ndarray, np.ndarray | None]:
        """Clip the item's boxes, note the unusable ones, choose each usable box's scale ('best'; None:
        every scale) and drop the pixels of scales no box needs. Returns (usable boxes, choice)."""
        clipped, reasons = usable_boxes(upright_boxes(item), *item.original_size)
        usable = np.array([reason is None for reason in reasons], dtype=bool)
        item.notes = [f"{reason} (box {k}: {', '.join(f'{v:g}' for v in item.boxes[k])})"
                      for k, reason in enumerate(reasons) if reason is not None]
        item.box_ids = item.first_box + np.flatnonzero(usable)
        choice = None
        if not usable.any():
            item.pixels = [None] * len(item.pixels)
        elif self.combine == "best":
            choice = best_scales(clipped[usable], item.original_size, [p.shape[:2] for p in item.pixels])
            item.pixels = [p if k in choice else None for k, p in enumerate(item.pixels)]
        return clipped[usable], choice

    def finish(self, item: RegionItem, choice: np.ndarray | None, pooled: dict[int, np.ndarray]) -> None:
        """The rows of the item's usable boxes from their pooled scales."""
        if choice is None:
            item.rows = combine_scales([pooled[k] for k in sorted(pooled)], self.model.pool) if pooled else None
            used = self.scales[0] if len(self.scales) == 1 else ALL_SCALES
            item.scale_used = np.full(len(item.box_ids), used, dtype=np.int32)
        else:
            item.rows = np.zeros((len(choice), self.model.dim), dtype=np.float32)
            for scale, vectors in pooled.items():
                item.rows[choice == scale] = vectors
            item.scale_used = np.array(self.scales, dtype=np.int32)[choice]
        if item.rows is None or len(item.box_ids) == 0:
            item.rows = np.zeros((0, self.model.dim), dtype=np.float32)


class BoxJob(ImageJob):
    """One SPP vector per usable box of the images of `box_set` (image_list: those images)."""

    extra_datasets = {"boxes": (4, np.float32), "box_image": (None, np.int64), "scale_used": (None, np.int32),
                      "difficult": (None, np.int8), "images/paths": (None, STR), "images/sizes": (2, np.int32)}

    def __init__(self, image_list: ImageList, box_set: BoxSet, source: str):
        super().__init__(image_list)
        self.box_set, self.source = box_set, source

    def provenance(self) -> dict:
        return {"boxes_file": self.source}

    def fingerprint(self) -> str:
        boxes = self.box_set
        return listing_fingerprint(self.image_list.paths, [], self.image_list.skipped, None,
                                   [boxes.boxes, boxes.image, boxes.labels, boxes.difficult])

    def dataset(self, indices: np.ndarray, config: ExtractionConfig, timeout: float) -> ImageFiles:
        return BoxedImageFiles(self.image_list, self.box_set, config.resize_policies(), indices, timeout)

    def describer(self, model: SPPDescriptor, config: ExtractionConfig) -> Describe:
        return RegionDescriber(model, config, next(model.parameters()).device)

    def rows(self, segment: Segment) -> dict:
        boxes, box = self.box_set, segment.columns.get("box", np.zeros(0, dtype=np.int64))
        image = boxes.image[box]
        first_of_image = np.searchsorted(boxes.image, image)
        size_of = dict(zip(segment.indices.tolist(), segment.image_sizes.tolist()))
        table_sizes = [size_of.get(i, (0, 0)) for i in range(segment.start, segment.end)]
        return {"paths": [f"{self.image_list.paths[i]}#{k}" for i, k in zip(image, box - first_of_image)],
                "labels": np.where(boxes.difficult[box], -1, boxes.labels[box]),
                "image_sizes": [size_of[i] for i in image.tolist()], "features": segment.features,
                "extras": {"boxes": boxes.boxes[box], "box_image": image,
                           "scale_used": segment.columns.get("scale", np.zeros(0, dtype=np.int32)),
                           "difficult": boxes.difficult[box], "images/paths": self.image_list.paths[segment.start:
                                                                                                   segment.end],
                           "images/sizes": table_sizes}}
