"""COCO's detection metric, computed by pycocotools (COCOeval, iouType 'bbox'), on sppfeat's boxes.

What sppfeat feeds it: image ids 1..N in the ground truth's path order, category ids 1..K in its
class order (the detections' images and classes mapped to the same ids by name); boxes
[x1, y1, x2, y2] (pixels, half-open) as COCO's [x, y, w, h] = [x1, y1, x2 - x1, y2 - y1]; the
ground truth's `area` is w·h (COCO's small / medium / large split at 32² and 96² pixels); a
difficult box is ``iscrowd: 1``, which COCO ignores: a detection it matches is neither a true nor
a false positive (for a crowd box COCO's overlap is the intersection over the detection's area).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..data.boxes import BoxSet
from .metric import ClassResult, DetectionEvaluation, Detections, scored_rows

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six of COCOeval.stats, as summarize() prints them


def xywh(boxes: np.ndarray) -> np.ndarray:
    """N×4 [x1, y1, x2, y2] (half-open) -> N×4 COCO [x, y, w, h]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]


def coco_ground_truth(truth: BoxSet) -> dict:
    """The COCO dataset dict of `truth` (images, categories, annotations with bbox, area, iscrowd);
    boxes without a class (label -1) are left out."""
    annotations = []
    for n, (box, image, label, difficult) in enumerate(zip(xywh(truth.boxes), truth.image, truth.labels,
                                                            truth.difficult)):
        if label >= 0:
            annotations.append({"id": n + 1, "image_id": int(image) + 1, "category_id": int(label) + 1,
                                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": int(difficult)})
    return {"images": [{"id": i + 1, "file_name": path} for i, path in enumerate(truth.paths)],
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(truth.class_names)],
            "annotations": annotations}


def coco_results(detections: Detections, image: np.ndarray, label: np.ndarray) -> list[dict]:
    """COCO results (image_id, category_id, bbox, score) of the detections whose image and label
    (indices into the ground truth's paths and classes, -1 unknown) are known."""
    boxes = xywh(detections.boxes)
    return [{"image_id": int(image[d]) + 1, "category_id": int(label[d]) + 1, "bbox": boxes[d].tolist(),
             "score": float(detections.scores[d])} for d in np.flatnonzero((image >= 0) & (label >= 0))]


def evaluate_coco(detections: Detections, truth: BoxSet) -> DetectionEvaluation:
    """COCO's AP of `detections` against `truth` by pycocotools: mAP is COCO's AP (IoU 0.5:0.95,
    all areas, 100 detections per image and class), `coco` its summary, per-class AP the same
    average over one class; the curves are COCO's interpolated precision at IoU 0.5."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image, label, unknown_images, unknown_labels = scored_rows(detections, truth)
    results = coco_results(detections, image, label)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports its progress on stdout
        gt = COCO()
        gt.dataset = coco_ground_truth(truth)
        gt.createIndex()
        if results:
            found = gt.loadRes(results)
        else:  # loadRes needs one result at least
            found = COCO()
            found.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"],
                             "annotations": []}
            found.createIndex()
        evaluator = COCOeval(gt, found, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    summary = {key: None if value < 0 else float(value) for key, value in zip(COCO_KEYS, evaluator.stats)}
    precision = evaluator.eval["precision"]  # IoU thresholds × 101 recall steps × classes × areas × max detections
    per_class = {}
    for k, name in enumerate(truth.class_names):
        of_class = precision[:, :, k, 0, -1]
        n_objects = int(((truth.labels == k) & ~truth.difficult).sum())
        ap = float(of_class[of_class > -1].mean()) if (of_class > -1).any() else None
        curve = np.clip(of_class[0], 0, None)
        per_class[name] = ClassResult(ap, n_objects, int(((label == k) & (image >= 0)).sum()),
                                      np.asarray(evaluator.params.recThrs), curve)
    return DetectionEvaluation(float("nan") if summary["AP"] is None else summary["AP"], per_class, len(truth.paths),
                               len(detections.paths), unknown_images, unknown_labels, "coco", summary,
                               list(truth.skipped))
