"""Detection average precision by the Pascal VOC devkit's rules (VOCevaldet.m); COCO's metric is
pycocotools' own (sppfeat.detection.coco), chosen here by `metric`.

For each class, detections are taken in descending score (ties in input order). Each is compared
with the ground-truth box of its image and class that overlaps it most (IoU): IoU < 0.5 -> a false
positive; that box difficult -> ignored; that box already matched -> a false positive (a
duplicate); else a true positive. Difficult boxes are not counted among the objects to find.
AP of the curve: 'voc07' the 11-point interpolated average (the mean over recall r in {0, 0.1,
..., 1} of the highest precision at recall >= r, 0 where none); 'voc' VOC 2010+'s all-point
average (VOCap: the area under that same envelope, taken at every recall reached).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..classify.metrics import eleven_point_ap
from ..data.boxes import BoxSet

MIN_IOU = 0.5
METRICS = ("voc07", "voc", "coco")
AP_NAMES = {"voc07": "11-point AP", "voc": "all-point AP", "coco": "COCO AP@[.5:.95]"}


@dataclass
class Detections:
    """D detections: paths (image of each, relative to the image folder), boxes D×4 (pixels as
    stored, half-open), labels D (class names), scores D."""

    paths: list[str]
    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray


@dataclass
class ClassResult:
    """ap: the metric's AP, in [0, 1] (None: no non-difficult object of the class); n_objects:
    non-difficult objects; n_detections; recall, precision: the curve (VOC: one point per counted
    detection; COCO: its interpolated precision at IoU 0.5 on 101 recall steps)."""

    ap: float | None
    n_objects: int
    n_detections: int
    recall: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)


@dataclass
class DetectionEvaluation:
    """mAP over the classes with objects (fraction in [0, 1]); per_class {class: ClassResult};
    unknown_images: detections naming images absent from the ground truth (not scored);
    unknown_labels: detections of classes absent from the ground truth (not scored); metric: one
    of METRICS; coco: COCO's summary {AP, AP50, AP75, APs, APm, APl} (None where COCO prints -1:
    no object of that size), metric 'coco' only; skipped: (file, reason) of ground truth not used."""

    mAP: float
    per_class: dict[str, ClassResult]
    n_images: int
    n_detections: int
    unknown_images: dict[str, int]
    unknown_labels: dict[str, int]
    metric: str = "voc07"
    coco: dict[str, float | None] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ap_name(self) -> str:
        """What AP means here, in words ('11-point AP', 'all-point AP', 'COCO AP@[.5:.95]')."""
        return AP_NAMES[self.metric]

    def report(self) -> dict:
        """The JSON report: the metric, mAP and AP rounded to 4 decimals (COCO's summary too), counts."""
        def rounded(value):
            return None if value is None or not np.isfinite(value) else round(float(value), 4)

        return {"metric": self.metric, "mAP": rounded(self.mAP), **{k: rounded(v) for k, v in (self.coco or {}).items()},
                "ap": {name: rounded(r.ap) for name, r in self.per_class.items()},
                "objects": {name: r.n_objects for name, r in self.per_class.items()},
                "detections": {name: r.n_detections for name, r in self.per_class.items()},
                "n_images": self.n_images, "n_detections": self.n_detections,
                "unknown_images": self.unknown_images, "unknown_labels": self.unknown_labels,
                "skipped": [list(s) for s in self.skipped]}


def all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC 2010+'s AP (the devkit's VOCap) of a curve (recall, precision: one point per counted
    detection, recall non-decreasing): the area under the envelope p(r) = the best precision at
    recall >= r (0 beyond the last point)."""
    r = np.r_[0.0, recall, 1.0]
    p = np.maximum.accumulate(np.r_[0.0, precision, 0.0][::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def match_class(boxes: np.ndarray, scores: np.ndarray, image: np.ndarray, truth: list[tuple[np.ndarray, np.ndarray]],
                min_iou: float = MIN_IOU) -> np.ndarray:
    """Per detection (boxes D×4, scores D, image D indices into truth) of one class: 1 true
    positive, 0 false positive, -1 ignored (its best box is difficult); truth[i] = (boxes G×4,
    difficult G) of image i and the class."""
    from .geometry import iou  # here: geometry imports torch, and the CLI imports this module to start

    outcome = np.zeros(len(scores), dtype=np.int8)
    matched = [np.zeros(len(g), dtype=bool) for g, _ in truth]
    for k in np.argsort(-scores, kind="stable"):
        gt, difficult = truth[image[k]]
        if len(gt) == 0:
            continue
        overlaps = iou(boxes[k:k + 1], gt)[0]
        best = int(overlaps.argmax())
        if overlaps[best] < min_iou:
            continue
        if difficult[best]:
            outcome[k] = -1
        elif not matched[image[k]][best]:
            matched[image[k]][best] = True
            outcome[k] = 1
    return outcome


def scored_rows(detections: Detections, truth: BoxSet) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """(image D: index into truth.paths, -1 unknown; label D: index into truth.class_names, -1
    unknown; unknown_images {path: count}; unknown_labels {name: count}) of the detections."""
    index = {path: i for i, path in enumerate(truth.paths)}
    label_of = {name: k for k, name in enumerate(truth.class_names)}
    image = np.array([index.get(p, -1) for p in detections.paths], dtype=np.int64)
    label = np.array([label_of.get(name, -1) for name in detections.labels], dtype=np.int64)
    unknown_images = dict(Counter(p for p, i in zip(detections.paths, image) if i < 0))
    unknown_labels = dict(Counter(n for n, i, k in zip(detections.labels, image, label) if i >= 0 and k < 0))
    return image, label, unknown_images, unknown_labels


def evaluate_boxes(detections: Detections, truth: BoxSet, min_iou: float = MIN_IOU,
                   metric: str = "voc07") -> DetectionEvaluation:
    """Score `detections` against the ground truth `truth` (its images, boxes, labels, difficult
    flags; images without boxes count as images with nothing to find) by `metric`, one of METRICS
    ('coco': pycocotools, its own IoU thresholds; min_iou is VOC's). ValueError for another metric."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "coco":
        from .coco import evaluate_coco

        return evaluate_coco(detections, truth)
    image, label, unknown_images, unknown_labels = scored_rows(detections, truth)
    per_class = {}
    for k, name in enumerate(truth.class_names):
        of_class = np.flatnonzero(truth.labels == k)  # truth.image is non-decreasing: split by image
        ends = np.searchsorted(truth.image[of_class], np.arange(len(truth.paths) + 1))
        truth_k = [(truth.boxes[of_class[a:b]], truth.difficult[of_class[a:b]]) for a, b in zip(ends[:-1], ends[1:])]
        n_objects = int((~truth.difficult[of_class]).sum())
        rows = np.flatnonzero((label == k) & (image >= 0))
        outcome = match_class(detections.boxes[rows], detections.scores[rows], image[rows], truth_k, min_iou)
        counted = outcome[np.argsort(-detections.scores[rows], kind="stable")]
        counted = counted[counted >= 0]
        tp, fp = np.cumsum(counted == 1), np.cumsum(counted == 0)
        recall = tp / n_objects if n_objects else np.zeros(len(tp))
        precision = tp / np.maximum(tp + fp, 1)
        area = eleven_point_ap if metric == "voc07" else all_point_ap
        per_class[name] = ClassResult(area(recall, precision) if n_objects else None, n_objects, len(rows), recall,
                                      precision)
    aps = [r.ap for r in per_class.values() if r.ap is not None]
    return DetectionEvaluation(float(np.mean(aps)) if aps else float("nan"), per_class, len(truth.paths),
                               len(detections.paths), unknown_images, unknown_labels, metric,
                               skipped=list(truth.skipped))
