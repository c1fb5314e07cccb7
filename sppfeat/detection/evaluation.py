"""`evaluate_detections`: a detections file against ground-truth boxes, by the VOC 2007 devkit's
rules (sppfeat.detection.metric), with a JSON report and pictures."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..classify.plots import check_plots_folder
from ..data.boxes import read_boxes
from ..storage.hdf5 import check_output
from .drawing import plot_evaluation
from .metric import DetectionEvaluation, evaluate_boxes
from .outputs import read_detections


def evaluate_detections(detections: str | os.PathLike, boxes: str | os.PathLike, *,
                        report: str | os.PathLike | None = None, plots: str | os.PathLike | None = None,
                        box_format: str = "auto", overwrite: bool = False) -> DetectionEvaluation:
    """11-point AP per class and mAP of `detections` (CSV or JSONL, as ``detect`` writes them)
    against `boxes` (COCO JSON, VOC XML folder or CSV, with difficult flags where the format has
    them). report: write the scores as JSON; plots: a folder for precision_recall.png and
    ap_per_class.png. Both are refused when they exist (a non-empty folder) unless overwrite,
    which replaces the report and those two pictures.
    Detections naming images absent from `boxes` are counted in ``unknown_images``, not scored."""
    if report is not None:
        check_output(report, overwrite)
    if plots is not None:
        check_plots_folder(plots, overwrite=overwrite)
    truth = read_boxes(boxes, box_format, keep_empty=True)
    evaluation = evaluate_boxes(read_detections(detections), truth)
    if report is not None:
        Path(report).write_text(json.dumps(evaluation.report(), indent=1) + "\n")
    if plots is not None:
        plot_evaluation(evaluation, plots)
    return evaluation
