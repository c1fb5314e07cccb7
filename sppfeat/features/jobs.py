"""What an extraction run describes and how its rows are laid out in the feature file: one row per
image here (``extract``); :class:`sppfeat.features.boxes.BoxJob` makes one row per box (``regions``).
The run itself (shards, progress segments, resume, interruptions, workers) is the same for both:
:func:`sppfeat.features.pipeline.run`."""

from __future__ import annotations

from functools import partial

import numpy as np

from ..config import ExtractionConfig
from ..data.discover import ImageList
from ..storage.progress import Segment, listing_fingerprint
from .descriptor import SPPDescriptor, describe_items
from .runtime import Describe, ImageFiles


class ImageJob:
    """One SPP vector per image of `image_list` (the images to decode, in row order; shards and
    progress segments cut it by index)."""

    extra_datasets: dict[str, tuple[int | None, object]] = {}  # datasets besides FeatureWriter's own

    def __init__(self, image_list: ImageList):
        self.image_list = image_list

    def provenance(self) -> dict:
        """What the file's record keeps about the run's input besides the image folder."""
        return {}

    def fingerprint(self) -> str:
        """sha256 of everything that decides the rows (resume and merge refuse another)."""
        images = self.image_list
        return listing_fingerprint(images.paths, images.labels, images.skipped, images.targets)

    def dataset(self, indices: np.ndarray, config: ExtractionConfig, timeout: float) -> ImageFiles:
        """The images `indices`, decoded at every scale of `config`."""
        return ImageFiles(self.image_list, config.resize_policies(), indices, timeout)

    def describer(self, model: SPPDescriptor, config: ExtractionConfig) -> Describe:
        """What turns a batch of decoded images into described ones."""
        return partial(describe_items, model)

    def rows(self, segment: Segment) -> dict:
        """The rows of a progress segment, as FeatureWriter.append's arguments."""
        images, rows = self.image_list, segment.indices
        return {"paths": [images.paths[i] for i in rows], "labels": [images.labels[i] for i in rows],
                "image_sizes": segment.image_sizes, "features": segment.features,
                "targets": images.targets[rows] if images.targets is not None else None}
