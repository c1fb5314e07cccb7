"""`evaluate_detections`: a detections file against ground-truth boxes, by the VOC devkit's rules
(sppfeat.detection.metric) or COCO's (pycocotools, sppfeat.detection.coco), with a JSON report
and pictures."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from ..classify.plots import check_plots_folder
from ..data.box_set import Rejected
from ..data.boxes import BoxSet, read_boxes
from ..storage.hdf5 import check_output
from .drawing import plot_evaluation
from .metric import METRICS, DetectionEvaluation, Detections, evaluate_boxes
from .outputs import read_coco_ids, read_detections


def evaluate_detections(detections: str | os.PathLike, boxes: str | os.PathLike, *,
                        report: str | os.PathLike | None = None, plots: str | os.PathLike | None = None,
                        box_format: str = "auto", metric: str = "voc07",
                        overwrite: bool = False) -> DetectionEvaluation:
    """AP per class and mAP of `detections` (CSV or JSONL as ``detect`` writes them, or COCO
    results .json when `boxes` is the COCO JSON that numbered them) against `boxes` (COCO JSON,
    VOC XML folder or CSV, with difficult flags where the format has them). metric: 'voc07'
    (11-point AP), 'voc' (VOC 2010+ all-point AP) or 'coco' (pycocotools' AP at IoU 0.5:0.95 and
    its summary). report: write the scores as JSON; plots: a folder for precision_recall.png and
    ap_per_class.png. Both are refused when they exist (a non-empty folder) unless overwrite,
    which replaces the report and those two pictures. Ground-truth files and boxes that cannot be
    used are in ``skipped``; an image with a refused box is left out of the score, with its
    detections (leave_out_doubtful); detections naming images absent from `boxes` are counted in
    ``unknown_images``, not scored. ValueError when no detection names an image of `boxes`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if report is not None:
        check_output(report, overwrite, (detections, boxes))
    if plots is not None:
        check_plots_folder(plots, overwrite=overwrite)
    truth = read_boxes(boxes, box_format, keep_empty=True)
    if not truth.class_names:
        raise ValueError(f"{boxes} names no class to score: ground truth needs a class for each box (CSV: a label "
                         f"column)")
    coco_ids = None
    if Path(detections).suffix.lower() == ".json":
        if truth.format != "coco":
            raise ValueError(f"{detections}: COCO results name images and classes by number, which only the COCO "
                             f"JSON ground truth that numbered them can map; {boxes} is {truth.format}")
        coco_ids = read_coco_ids(boxes)
    found = read_detections(detections, coco_ids)
    if found.paths and not set(found.paths) & set(truth.paths):
        raise ValueError(f"none of the {len(set(found.paths))} images of {detections} is an image of {boxes} "
                         f"(e.g. {found.paths[0]} against {truth.paths[0] if truth.paths else 'no image at all'})")
    truth, found = leave_out_doubtful(unlabelled_refused(truth, Path(boxes).name), found)
    evaluation = evaluate_boxes(found, truth, metric=metric)
    if report is not None:
        Path(report).write_text(json.dumps(evaluation.report(), indent=1) + "\n")
    if plots is not None:
        plot_evaluation(evaluation, plots)
    return evaluation


def unlabelled_refused(truth: BoxSet, file: str) -> BoxSet:
    """`truth` with each box without a class (a CSV row with an empty label) refused as a reader
    refuses a box: what it is is not known, so its image is left out of the score."""
    refused = [Rejected(file, f"a box of {truth.paths[truth.image[b]]} ({', '.join(f'{v:g}' for v in truth.boxes[b])})"
                              f" has no class", truth.paths[truth.image[b]], tuple(truth.boxes[b]))
               for b in np.flatnonzero(truth.labels < 0)]
    if not refused:
        return truth
    return dataclasses.replace(truth, skipped=truth.skipped + [(r.file, r.reason) for r in refused],
                               rejected=truth.rejected + refused)


def leave_out_doubtful(truth: BoxSet, found: Detections) -> tuple[BoxSet, Detections]:
    """`truth` and `found` without the images that have a box the reader refused (truth.rejected:
    an object whose place or class is not known, so a detection there is neither right nor wrong);
    each refusal's line in `skipped` says its image was left out."""
    doubtful = {r.path for r in truth.rejected}
    if not doubtful:
        return truth, found
    notes = {(r.file, r.reason): f"; image {r.path} left out of the score" for r in truth.rejected}
    kept = truth.keep_images([i for i, path in enumerate(truth.paths) if path not in doubtful])
    kept = dataclasses.replace(kept, skipped=[(file, reason + notes.get((file, reason), ""))
                                              for file, reason in truth.skipped])
    rows = [d for d, path in enumerate(found.paths) if path not in doubtful]
    return kept, Detections([found.paths[d] for d in rows], found.boxes[rows], [found.labels[d] for d in rows],
                            found.scores[rows])
