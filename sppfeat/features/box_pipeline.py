"""`regions`: read the boxes -> list their images -> the extraction run of `extract` (shards, progress
segments, resume, interruptions, workers), one row per box (features.boxes.BoxJob)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import REGION_DEFAULTS, ExtractionConfig
from ..data.boxes import read_boxes
from ..data.discover import ImageList, check_image_file
from .boxes import BoxJob
from .pipeline import run
from .runtime import Runtime


@dataclass
class RegionsResult:
    """path: the box file written (a shard's own file for a shard); n_boxes: rows (usable boxes);
    n_skipped: images and boxes not described; dim: D; seconds: wall time of this call (0 when the
    file was already complete); skip_reasons: {reason without details: count}."""

    path: Path
    n_boxes: int
    n_skipped: int
    dim: int
    seconds: float
    skip_reasons: dict[str, int]


def regions(images: str | os.PathLike, boxes: str | os.PathLike, output: str | os.PathLike,
            config: ExtractionConfig | None = None, runtime: Runtime | None = None, *, box_format: str = "auto",
            shard: tuple[int, int] | None = None, resume: bool = False, overwrite: bool = False,
            strict: bool = False, quiet: bool = False) -> RegionsResult:
    """Write one SPP vector per box of `boxes` (a COCO JSON or CSV file, or a folder of VOC XML files;
    box_format 'auto', 'coco', 'voc-xml' or 'csv') to the HDF5 file `output`; image paths in the boxes
    are relative to the folder `images`. Each image is decoded once and run through the network
    once per scale it needs; its boxes are pooled from the conv map.

    config: the settings (default REGION_DEFAULTS: at most 16 KB per box); with several scales,
    combine='best' pools each box at the scale where its area is closest to 224 × 224 (stored in
    ``scale_used``), combine='max' at every scale, bin by bin. runtime, shard, resume, overwrite,
    strict and quiet as for :func:`sppfeat.extract` (shards and segments cut the list of images).
    Raises what extract raises; ValueError for unreadable boxes.
    """
    config = config or REGION_DEFAULTS
    result = run(lambda: list_boxes(images, boxes, box_format, strict), images, output, config, runtime or Runtime(),
                 shard=shard, resume=resume, overwrite=overwrite, strict=strict, quiet=quiet, inputs=(boxes,))
    return RegionsResult(result.path, result.n_images, result.n_skipped, result.dim, result.seconds,
                         result.skip_reasons)


def list_boxes(images: str | os.PathLike, boxes: str | os.PathLike, box_format: str, strict: bool) -> BoxJob:
    """The job of describing the boxes: their images that exist under `images` (the others are
    skipped with their number of boxes). ValueError when none is left, or when `strict` and one is
    missing."""
    root = Path(images)
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root}")
    box_set = read_boxes(boxes, box_format)
    counts = np.bincount(box_set.image, minlength=len(box_set.paths))
    keep, skipped = [], list(box_set.skipped)
    for i, path in enumerate(box_set.paths):
        file = root / path
        reason = check_image_file(str(file)) if file.is_file() else "missing file"
        if reason:
            skipped.append((path, f"{reason} ({counts[i]} boxes)"))
        else:
            keep.append(i)
    if not keep:
        raise ValueError(f"no image of {boxes} found under {root}" + (
            f" (e.g. {skipped[-1][0]}: {skipped[-1][1]})" if skipped else ""))
    if strict and skipped:
        raise ValueError(f"--strict: {skipped[0][0]}: {skipped[0][1]}")
    box_set = box_set.keep_images(keep)
    image_list = ImageList(root, box_set.format, box_set.paths, [-1] * len(box_set.paths), box_set.class_names,
                           skipped=skipped)
    return BoxJob(image_list, box_set, str(Path(boxes).resolve()))
