"""`train_detector`: ground-truth boxes and proposals of a folder of images -> one linear SVM per
class on window vectors (hard-negative mining: sppfeat.detection.mining) -> a detector model file.

Every image is run through the network once; its conv map waits in a temporary file beside the
model (float16, ~1.7 MB at 688 px; deleted at the end) and windows are pooled from it whenever
mining needs them, so that memory holds the negatives rather than 2.6 GB of maps.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DETECTION_DEFAULTS, ExtractionConfig, provenance
from ..data.boxes import BoxSet, read_boxes
from ..data.discover import check_image_file
from ..libc import release_free_memory, return_large_blocks
from ..meter import Meter
from ..storage.hdf5 import check_output
from .geometry import iou
from .flags import Flags
from .maps import ImageMap, MapFile, RegionVectors
from .finetune import HeadImage, fit_head, head_image, object_counts
from .mining import TrainingImage, fit_detector, label_windows
from .model import DetectorModel, save_detector
from .proposal_file import ProposalSet, load_proposals
from .proposals import ProposalConfig, propose_file
from .runs import Workers, check_cores, split_cores, torch_threads
from .settings import DEFAULT_HEAD, HeadSettings, TrainingSettings

log = logging.getLogger("sppfeat")


@dataclass
class TrainDetectorResult:
    """path: the model written; classes; n_images: training images used; n_positives per class;
    skipped: (path, reason) of images and boxes not used; seconds; stats: mining rounds."""

    path: Path
    classes: list[str]
    n_images: int
    n_positives: list[int]
    skipped: list[tuple[str, str]]
    seconds: float
    stats: dict


class WindowSource:
    """The windows of each image: from a proposal set (paths relative to the image folder), or
    proposed here with `config` when the set is None."""

    def __init__(self, proposal_set: ProposalSet | None, config: ProposalConfig):
        self.proposal_set, self.config = proposal_set, config

    def record(self) -> dict:
        if self.proposal_set is None:
            return self.config.to_record()
        return dict(self.proposal_set.settings)

    def windows(self, path: str, file: str) -> np.ndarray:
        """K×4 windows of the image `path` (file: where it is); ValueError when there are none."""
        if self.proposal_set is None:
            return propose_file(file, self.config)[0]
        boxes = self.proposal_set.of(path)
        if boxes is None:
            raise ValueError("no proposals for this image in the proposal file")
        return boxes

    def check_size(self, path: str, stored_size: tuple[int, int]) -> None:
        """ValueError when the proposal set recorded another (height, width) for the image `path`:
        its windows were proposed on another photo of that name."""
        recorded = None if self.proposal_set is None else self.proposal_set.size_of(path)
        if recorded is not None and recorded != tuple(stored_size):
            raise ValueError(f"its size {stored_size[1]}x{stored_size[0]} is not the {recorded[1]}x{recorded[0]} "
                             f"the proposal file's windows were found on (another image of that name)")

    def found(self, path: str, file: str) -> np.ndarray | ValueError:
        """windows(), or the ValueError it raised (returned: a stream of images goes on past it)."""
        try:
            return self.windows(path, file)
        except ValueError as exc:
            return exc


def truth_of(truth: BoxSet, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes G×4, labels G, difficult G) of image i of `truth`."""
    a, b = np.searchsorted(truth.image, [i, i + 1])
    return truth.boxes[a:b], truth.labels[a:b], truth.difficult[a:b]


def unknown_ground(rv: RegionVectors, truth: BoxSet, i: int, image_map: ImageMap, windows: np.ndarray,
                   threshold: float) -> tuple[np.ndarray, list[str]]:
    """(mask W of the usable `windows` of image i that must not be negatives: IoU >= threshold
    with a box the reader refused (truth.rejected) or one without a class, all of them when such a
    box cannot be located (inverted, zero size, outside the image); notes on the boxes not used)."""
    boxes, labels, _ = truth_of(truth, i)
    box_ok, _ = rv.usable(image_map, boxes)
    height, width = image_map.stored_size
    notes = [f"box {k} ({', '.join(f'{v:g}' for v in boxes[k])}) is empty or outside the image as decoded "
             f"({width}x{height}): none of its windows used as negatives" for k in np.flatnonzero(~box_ok)]
    notes += [f"box {k} has no class: no window overlapping it used as a negative"
              for k in np.flatnonzero(box_ok & (labels < 0))]
    unknown = [r.box for r in truth.rejected if r.path == truth.paths[i]] + list(boxes[box_ok & (labels < 0)])
    nowhere = not box_ok.all() or any(box is None for box in unknown)
    if unknown and not nowhere and len(windows):
        areas = np.clip(np.array(unknown, np.float64), 0, [width, height, width, height])
        return iou(windows, areas).max(axis=1) >= threshold, notes
    return np.full(len(windows), nowhere), notes


def prepare_head_image(rv: RegionVectors, truth: BoxSet, i: int, image_map: ImageMap, windows: np.ndarray,
                       settings: HeadSettings) -> tuple[HeadImage, list[str]]:
    """Image i of `truth` ready for the head's training (sppfeat.detection.finetune.head_image): no
    window that would be an object of a refused box (IoU >= fg_iou) is background."""
    window_ok, _ = rv.usable(image_map, windows)
    windows = np.asarray(windows, np.float64)[window_ok]
    never, notes = unknown_ground(rv, truth, i, image_map, windows, settings.fg_iou)
    boxes, labels, difficult = truth_of(truth, i)
    return head_image(rv, image_map, windows, boxes, labels, difficult, settings, never), notes


def prepare_image(rv: RegionVectors, truth: BoxSet, i: int, image_map: ImageMap, windows: np.ndarray,
                  settings: TrainingSettings, rng: np.random.Generator,
                  mirrored: Callable[[], ImageMap] | None = None) -> tuple[TrainingImage, list[str]]:
    """Image i of `truth` (its conv map `image_map`) ready for mining, and notes on the boxes it
    could not use. Its usable objects are positives. A window overlapping a box the reader refused
    (truth.rejected) or a box without a class by IoU >= settings.negative_iou is a negative of no
    class; when such a box cannot be located (inverted, zero size, outside the image), no window
    of the image is a negative. mirrored: gives the map of the image flipped left-right, whose
    objects are positives too (asked only when there are some)."""
    boxes, labels, difficult = truth_of(truth, i)
    box_ok, _ = rv.usable(image_map, boxes)
    window_ok, _ = rv.usable(image_map, windows)
    windows = np.asarray(windows, np.float64)[window_ok]
    never_negative, notes = unknown_ground(rv, truth, i, image_map, windows, settings.negative_iou)
    box_ok &= labels >= 0
    boxes, labels, difficult = boxes[box_ok], labels[box_ok], difficult[box_ok]
    negative, (reg_windows, reg_labels, reg_targets) = label_windows(
        windows, boxes, labels, difficult, len(truth.class_names), settings, rng, never_negative)
    easy = ~difficult
    mirror_map = mirrored() if mirrored is not None and easy.any() else None
    return TrainingImage(truth.paths[i], image_map, windows.astype(np.float32), Flags(negative), boxes[easy],
                         labels[easy], reg_windows, reg_labels, reg_targets, mirror_map), notes


def read_truth(images: str | os.PathLike, boxes: str | os.PathLike, box_format: str) -> tuple[BoxSet, list]:
    """The ground truth of the images of `boxes` found under `images` (images without objects kept;
    every box checked against its image's size as stored), and (annotation file or image, reason)
    of what is not used. An image with a refused box is kept for its other objects (see
    prepare_image for its negatives); one whose refused box cannot be located and that has no
    other object is dropped: it would give nothing. ValueError when no image is left."""
    root = Path(images)
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root}")
    truth = read_boxes(boxes, box_format, keep_empty=True, images=root)
    keep, missing = [], []
    for i, path in enumerate(truth.paths):
        file = root / path
        reason = check_image_file(str(file)) if file.is_file() else "missing file"
        (missing.append((path, reason)) if reason else keep.append(i))
    easy = (truth.labels >= 0) & ~truth.difficult
    objects = dict(zip(truth.paths, np.bincount(truth.image[easy], minlength=len(truth.paths))))
    nowhere = {r.path for r in truth.rejected if r.box is None}
    found = {truth.paths[i] for i in keep}
    fate = {}
    for r in truth.rejected:
        if r.path not in found:
            continue
        if r.path not in nowhere:
            rule = "kept, no window overlapping this box used as a negative"
        elif objects[r.path]:
            rule = "kept for its other objects, none of its windows used as negatives"
        else:
            rule = "not used (no other object, and no window of it can be a negative)"
        fate[r.file, r.reason] = f"; image {r.path} {rule}"
    keep = [i for i in keep if truth.paths[i] not in nowhere or objects[truth.paths[i]]]
    skipped = [(file, reason + fate.get((file, reason), "")) for file, reason in truth.skipped] + missing
    if not keep:
        raise ValueError(f"no usable image of {boxes} under {root}" +
                         (f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    if not truth.class_names or (truth.labels < 0).all():
        raise ValueError(f"{boxes} has no labelled boxes: a detector needs a class per box")
    return truth.keep_images(keep), skipped


def prepare_images(rv: RegionVectors, truth: BoxSet, root: Path, source: WindowSource, settings: TrainingSettings,
                   maps: MapFile, quiet: bool = False, processes: int = 0,
                   head: HeadSettings | None = None) -> tuple[list[TrainingImage | HeadImage], list[tuple[str, str]]]:
    """The training images of `truth` with their maps (kept in `maps`), for the SVMs' mining or
    (head given) the head's training; skips with reasons. processes: worker processes finding the
    windows ahead of the network (0: here)."""
    rng = np.random.default_rng(settings.seed)
    prepared, skipped = [], []
    meter = Meter("conv maps", len(truth.paths), quiet=quiet)
    files = [str(root / path) for path in truth.paths]
    with Workers(lambda i: source.found(truth.paths[i], files[i]), processes) as workers:
        for (i, path), windows in zip(enumerate(truth.paths), workers.map(range(len(files)))):
            file = files[i]
            try:
                if isinstance(windows, ValueError):
                    raise windows
                image_map = rv.image_map(file)
                source.check_size(path, image_map.stored_size)
                if not rv.usable(image_map, windows)[0].any():
                    skipped.append((path, "no usable proposals (its objects are still positives)"))
                if head is not None:
                    image, notes = prepare_head_image(rv, truth, i, image_map, windows, head)
                else:
                    mirrored = (lambda: rv.image_map(file, mirrored=True)) if settings.mirror else None
                    image, notes = prepare_image(rv, truth, i, image_map, windows, settings, rng, mirrored)
            except ValueError as exc:
                image, notes = None, [str(exc)]
            skipped.extend((path, note) for note in notes)
            if image is not None:
                image.image_map = maps.keep(image.image_map)
                if isinstance(image, TrainingImage) and image.mirror_map is not None:
                    image.mirror_map = maps.keep(image.mirror_map)
                prepared.append(image)
            release_free_memory()  # the image's arrays sit among its freed temporaries
            meter.update(1)
    meter.close()
    return prepared, skipped


def train_detector(images: str | os.PathLike, boxes: str | os.PathLike, model: str | os.PathLike, *,
                   proposals: str | os.PathLike | None = None, config: ExtractionConfig | None = None,
                   settings: TrainingSettings | None = None, head: HeadSettings | None = DEFAULT_HEAD,
                   proposal_config: ProposalConfig | None = None, box_format: str = "auto", device: str = "auto",
                   cores: int | None = None, overwrite: bool = False, quiet: bool = False) -> TrainDetectorResult:
    """Train a detector of the classes of `boxes` (COCO JSON, VOC XML folder, CSV, YOLO labels;
    image paths relative to the folder `images`) on the windows of its images, and write it to
    `model`. head: the fine-tuned head's settings (its softmax probabilities score the windows),
    or None for one linear SVM per class on the pooled window vectors with hard-negative mining
    and ridge box regression (`settings`, TrainingSettings). proposals: a proposal file
    (``sppfeat proposals``) or box file of windows; None: selective search here with
    `proposal_config`. config: the window vectors' settings (default DETECTION_DEFAULTS, one
    scale). cores: CPU cores to use (default: the usable ones): torch threads, and, without
    proposals, selective search worker processes ahead of the network (runs.split_cores).
    ValueError for bad arguments, unreadable boxes, no usable image or a diverging head."""
    start = time.monotonic()
    check_output(model, overwrite, (boxes, proposals))
    return_large_blocks()
    settings = settings or TrainingSettings()
    if head is not None and settings.context:
        raise ValueError("context applies to the linear SVMs, not to a head")
    cores = check_cores(cores)
    processes, threads = split_cores(cores, searching=proposals is None)
    truth, skipped = read_truth(images, boxes, box_format)
    source = WindowSource(load_proposals(proposals) if proposals is not None else None,
                          proposal_config or ProposalConfig())
    rv = RegionVectors(config or DETECTION_DEFAULTS, device, settings.context)
    n_classes = len(truth.class_names)
    with tempfile.TemporaryDirectory(prefix=".sppfeat-maps-", dir=Path(model).resolve().parent) as folder:
        maps = MapFile(Path(folder) / "maps.f16")
        try:
            with torch_threads(threads):
                prepared, notes = prepare_images(rv, truth, Path(images), source, settings, maps, quiet, processes,
                                                 head)
            skipped += notes
            if not prepared:
                raise ValueError(f"no usable training image ({skipped[0][0]}: {skipped[0][1]})" if skipped else
                                 "no usable training image")
            with torch_threads(cores):
                if head is None:
                    fitted = fit_detector(prepared, n_classes, rv, settings, quiet)
                else:
                    fitted_head, stats = fit_head(prepared, n_classes, rv, head, quiet)
        finally:
            maps.close()
    record = {**rv.config.to_record(), **provenance(rv.weights_path, images, str(rv.device))}
    common = {"n_images": len(prepared), "boxes_file": str(Path(boxes).resolve()), "skipped": len(skipped)}
    if head is None:
        stats = fitted.stats
        detector = DetectorModel(fitted.coef, fitted.intercept, list(truth.class_names), record, source.record(),
                                 {**dataclasses.asdict(settings), **stats, **common}, fitted.regression)
    else:
        stats = {**stats, "positives": object_counts(prepared, n_classes)}
        detector = DetectorModel(None, None, list(truth.class_names), record, source.record(),
                                 {"head": dataclasses.asdict(head), **stats, **common}, head=fitted_head)
    save_detector(model, detector)
    return TrainDetectorResult(Path(model), list(truth.class_names), len(prepared), stats["positives"],
                               skipped, time.monotonic() - start, stats)
