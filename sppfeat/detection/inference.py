"""`detect`: a detector model on new photos. Per image: windows (given, or selective search with the
model's settings) -> one conv pass -> every window pooled and scored for every class (the model's
fine-tuned head: softmax probabilities; or its SVMs: margins) -> box regression (when the model
has it) -> per-class non-maximum suppression at IoU 0.3 -> box voting (each kept box the mean of
the class's windows overlapping it by IoU >= 0.5, weighted by their score above the model's
vote_floor: 0 for probabilities, -1 for margins) -> at most MAX_PER_IMAGE detections, best first.
Probabilities are comparable across classes; SVM margins only within a class.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ..backbones.registry import sha256_file
from ..shards import check_shard, record_path, shard_bounds, shard_path
from ..storage.merge import JOINED
from ..storage.progress import listing_fingerprint, parts_path
from .geometry import NMS_IOU, apply_offsets, nms, vote_boxes
from .maps import ImageMap, RegionVectors
from .model import DetectorModel, load_detector
from .proposal_file import is_proposal_file, load_proposals
from .proposals import list_inputs
from .runs import ImageResult, check_cores, run_images, split_cores, start_run, torch_threads
from .settings import check_threshold
from .training import WindowSource

MAX_PER_IMAGE = 100
TOP_PER_CLASS = 300  # windows of a class that reach NMS, the highest scoring


@dataclass
class Detection:
    """One detected object: path (relative to the input folder), box (x1, y1, x2, y2) in pixels of
    the image as stored, half-open; label (class name); score (of that class: the head's probability
    or the SVM's margin, as the model's score_kind says)."""

    path: str
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    score: float


@dataclass
class DetectResult:
    """detections (best first within each image, images in input order); skipped (path, reason);
    seconds; output (the file written, or None)."""

    detections: list[Detection]
    skipped: list[tuple[str, str]]
    seconds: float
    output: Path | None = None
    stage_seconds: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.detections)


def detect_windows(model: DetectorModel, rv: RegionVectors, image_map: ImageMap, windows: np.ndarray,
                   threshold: float | None = None, timings: dict | None = None,
                   box_voting: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes M×4, class indices M, scores M) detected among `windows` (K×4, pixels as stored) of
    an image whose map is `image_map`, best first; `timings` (if given) accumulates seconds per
    stage ('pool_score', 'nms': regression, NMS and voting)."""
    start = time.perf_counter()
    ok, _ = rv.usable(image_map, windows)
    windows = np.asarray(windows, np.float64)[ok]
    scored_windows = model.score_windows(rv, image_map, windows)
    scores = scored_windows.scores
    scored = time.perf_counter()
    height, width = image_map.stored_size
    out_boxes, out_labels, out_scores = [], [], []
    classes = model.trained_classes()
    tops = [np.argsort(-scores[:, k], kind="stable")[:TOP_PER_CLASS] for k in classes]
    moves = scored_windows.offsets(np.concatenate(tops)) if tops else None  # every class's at once
    ends = np.cumsum([len(top) for top in tops])
    for k, top, end in zip(classes, tops, ends):
        boxes = windows[top] if moves is None else apply_offsets(windows[top], moves[end - len(top):end, k])
        boxes = np.clip(boxes, 0, [width, height, width, height])
        keep = nms(boxes, scores[top, k], NMS_IOU)  # the same above any threshold: only better boxes suppress
        if threshold is not None:
            keep = keep[scores[top[keep], k] > threshold]
        out_boxes.append(vote_boxes(boxes[keep], boxes, np.clip(scores[top, k] - model.vote_floor, 0, None))
                         if box_voting else boxes[keep])
        out_labels.append(np.full(len(keep), k))
        out_scores.append(scores[top[keep], k])
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.float32)
    boxes, labels, values = np.concatenate(out_boxes), np.concatenate(out_labels), np.concatenate(out_scores)
    best = np.argsort(-values, kind="stable")[:MAX_PER_IMAGE]
    if timings is not None:
        timings["pool_score"] = timings.get("pool_score", 0.0) + scored - start
        timings["nms"] = timings.get("nms", 0.0) + time.perf_counter() - scored
    return boxes[best], labels[best], values[best]


def _work(model: DetectorModel, rv: RegionVectors, source: WindowSource, image_list, threshold, box_voting, timings,
          index: int, windows: np.ndarray | ValueError) -> ImageResult:
    """Image `index` given its windows (WindowSource.found: K×4, or why there are none)."""
    start = time.perf_counter()
    try:
        if isinstance(windows, ValueError):
            raise windows
        image_map = rv.image_map(image_list.file(index))
        source.check_size(image_list.paths[index], image_map.stored_size)
        if not rv.usable(image_map, windows)[0].any():
            raise ValueError(f"none of its {len(windows)} window{'s' * (len(windows) != 1)} is inside the image")
    except ValueError as exc:
        return ImageResult(index, {}, str(exc))
    timings["conv"] = timings.get("conv", 0.0) + time.perf_counter() - start
    boxes, labels, scores = detect_windows(model, rv, image_map, windows, threshold, timings, box_voting)
    return ImageResult(index, {"boxes": boxes.astype(np.float32), "label": labels.astype(np.int32),
                               "score": scores.astype(np.float32)})


def detect(model: str | os.PathLike, images: str | os.PathLike, output: str | os.PathLike | None = None, *,
           proposals: str | os.PathLike | None = None, threshold: float | None = None,
           draw: str | os.PathLike | None = None, draw_threshold: float | None = None, device: str = "auto",
           cores: int | None = None, shard: tuple[int, int] | None = None, resume: bool = False,
           overwrite: bool = False, quiet: bool = False, box_voting: bool = True,
           coco_ids: str | os.PathLike | None = None,
           on_rows: Callable[[list[Detection]], None] | None = None) -> DetectResult:
    """Detect the objects of the model's classes in `images` (a folder or one image). output:
    DETS.csv or DETS.jsonl (columns path,x1,y1,x2,y2,label,score; it reads back as a box file),
    DETS.json (COCO results: image_id, category_id, bbox [x, y, w, h], score), or None; proposals:
    a proposal or box file for the images (default: selective search with the model's settings);
    threshold: keep only scores above it (default: every detection after NMS, at most
    MAX_PER_IMAGE per image, as AP needs); draw: a folder for a picture of each image with
    the detections scoring at least draw_threshold (default by the model's score_kind: 0.5 for
    probabilities, 0 for margins), at most 20, the best (drawing.DrawRule; the output keeps all);
    cores: CPU cores (default: the usable ones); without proposals, selective search runs in that
    many worker processes ahead of the network here (runs.split_cores), with the same windows as
    one process; shard (i, n): only the i-th of n parts of the sorted image list, into
    OUT.shard-0000i-of-0000n.csv beside its run record (shards.record_path), joined by
    storage.merge.merge_detections in the rows of a single run;
    box_voting: False keeps the boxes NMS kept as they are (the paper's way); coco_ids: for a .json
    output (COCO results), the COCO ground truth whose image and category ids to use (default:
    images 1..N in sorted path order, classes 1..K in the model's order).
    An interrupted run keeps its images in ``OUT.parts/``; resume=True finishes it (needs output),
    pictures included: those drawn stay, the rest are drawn.
    on_rows sees each image's detections as they come (`sppfeat detect` also calls
    sppfeat.libc.keep_large_blocks first: faster, process-wide). ValueError for bad arguments."""
    from .drawing import check_draw_folder, clear_pictures, draw_detections, draw_rule, picture_path
    from .outputs import coco_ids_for, detection_format, write_detections

    start = time.monotonic()
    detector = load_detector(model)
    index, count = check_shard(shard)
    if output is not None:
        detection_format(output)
        if shard is not None and Path(output).suffix.lower() not in JOINED:
            raise ValueError(f"shard={shard} writes a .csv or .jsonl file (sppfeat merge joins those), got "
                             f"{Path(output).name!r}")
        output = shard_path(output, index, count) if shard is not None else Path(output)
    elif resume or shard is not None:
        raise ValueError(f"{'resume=True' if resume else f'shard={shard}'} needs an output file")
    if threshold is not None:
        check_threshold("threshold", threshold)
    if draw is None and draw_threshold is not None:
        raise ValueError(f"draw_threshold={draw_threshold} needs a draw folder")
    if detector.score_kind == "probability" and threshold is not None and not 0 <= threshold < 1:
        raise ValueError(f"threshold={threshold} with probabilities (in [0, 1]): keep it in [0, 1)")
    rule = draw_rule(detector.score_kind, draw_threshold)
    processes, threads = split_cores(check_cores(cores), searching=proposals is None)
    image_list = list_inputs(images)
    lo, hi = shard_bounds(len(image_list.paths), index, count)
    pictures = {i: picture_path(draw, image_list.paths[i]) for i in range(lo, hi)} if draw is not None else {}
    own = None if count == 1 else list(pictures.values())  # a shard's pictures: the other shards draw beside them
    resuming = resume and output is not None and parts_path(output).is_dir()
    if draw is not None:
        check_draw_folder(draw, own, overwrite or resuming)
    ids = coco_ids_for(output, coco_ids, image_list.paths, detector.class_names)
    source = WindowSource(load_proposals(proposals) if proposals is not None else None,
                          detector.proposal_settings)
    if source.proposal_set is not None and all(source.proposal_set.of(p) is None for p in image_list.paths):
        raise ValueError(f"none of the images of {images} is in the proposal file {proposals} (its paths, e.g. "
                         f"{source.proposal_set.paths[0] if source.proposal_set.paths else 'none'}, are relative "
                         f"to the folder it was made from)")
    rv = RegionVectors(detector.feature_settings, device, detector.context)
    widths = {detector.coef.shape[1]} if detector.head is None else set()
    if detector.head is None and detector.regression is not None:
        widths.add(detector.regression.shape[2] - 1)
    if widths - {rv.dim}:
        raise ValueError(f"{model} is a damaged detector model: its SVMs take {max(widths - {rv.dim})} values, its "
                         f"feature settings give window vectors of {rv.dim}")
    timings: dict = {}
    names = detector.class_names

    def rows_of(result: ImageResult) -> list[Detection]:
        if result.reason:
            return []
        path = image_list.paths[result.index]
        c = result.columns
        return [Detection(path, *map(float, box), names[int(k)], float(s))
                for box, k, s in zip(c["boxes"], c["label"], c["score"])]

    results: dict[int, ImageResult] = {}

    def on_result(result: ImageResult) -> None:
        results[result.index] = result
        rows = rows_of(result)
        if draw is not None and not result.reason:
            draw_detections(image_list.file(result.index), rows, pictures[result.index], rule)
        if on_rows and rows:
            on_rows(rows)

    # what decides the rows, as shards on other machines can compare it (shards.record_path)
    record = {"model_sha256": sha256_file(Path(model)), "n_images": len(image_list.paths),
              "listing_sha256": listing_fingerprint(image_list.paths, image_list.labels, image_list.skipped, None),
              "threshold": threshold, "box_voting": box_voting,
              "proposals": None if proposals is None else Path(proposals).name, "shard": [index, count]}
    manifest = {**record, "images": str(Path(images).resolve()), "draw": None if draw is None else
                str(Path(draw).resolve()), "draw_threshold": rule.threshold,
                "proposals": None if proposals is None else str(Path(proposals).resolve())}
    work = partial(_work, detector, rv, source, image_list, threshold, box_voting, timings)
    if output is not None and output.exists() and resume and not overwrite:
        raise ValueError(f"{output} is already complete")
    parts = (start_run(output, manifest, resume, overwrite, (model, proposals, coco_ids)) if output is not None
             else None)
    if draw is not None and overwrite and not resuming:
        clear_pictures(draw, own)
    done = parts.done() if parts is not None else set()
    todo = [i for i in range(lo, hi) if i not in done]
    with torch_threads(threads):
        run_images(work, todo, parts, total=hi - lo, processes=processes, desc="detect", quiet=quiet,
                   prepare=lambda i: source.found(image_list.paths[i], image_list.file(i)), on_result=on_result)
    if parts is not None:
        results = parts.results()  # with the images of an interrupted run
    detections = [row for i in range(lo, hi) for row in rows_of(results[i])]
    # named by shard 0: files that are no images, and the rows of a box file of windows that are no windows
    refused = [] if proposals is None or is_proposal_file(proposals) else source.proposal_set.skipped
    skipped = (list(image_list.skipped) + list(refused) if index == 0 else []) + [
        (image_list.paths[i], r.reason) for i, r in sorted(results.items()) if r.reason]
    if output is not None and shard is not None:
        record_path(output).write_text(json.dumps(record))  # before the shard file: a file without one is unfinished
    if output is not None:
        write_detections(output, detections, ids)
        parts.remove()
    return DetectResult(detections, skipped, time.monotonic() - start, None if output is None else Path(output),
                        timings)
