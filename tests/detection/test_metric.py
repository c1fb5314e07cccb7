"""The detection metrics against hand-worked cases, an independent, loop-by-loop re-implementation
of the devkit's VOCevaldet.m and VOCap.m (written here from their description, not from sppfeat's
code), a brute-force area for the all-point AP, and pycocotools on cases whose answer is derived
here."""

import numpy as np
import pytest

from sppfeat.data.boxes import BoxSet
from sppfeat.detection.metric import Detections, all_point_ap, eleven_point_ap, evaluate_boxes


def truth(paths, objects, classes=("cat", "dog")):
    """objects: (image index, box, class index, difficult)."""
    objects = sorted(objects, key=lambda o: o[0])
    return BoxSet("csv", list(paths), np.array([o[1] for o in objects], float).reshape(-1, 4),
                  np.array([o[0] for o in objects], np.int64), np.array([o[2] for o in objects], np.int64),
                  np.array([o[3] for o in objects], bool), list(classes), [])


def dets(rows):
    """rows: (path, box, label, score)."""
    return Detections([r[0] for r in rows], np.array([r[1] for r in rows], float).reshape(-1, 4),
                      [r[2] for r in rows], np.array([r[3] for r in rows], float))


def devkit_ap(rows, objects, paths, name, class_index, all_point=False):
    """VOCevaldet.m as loops: 1-based inclusive boxes, +1 in widths, as the devkit computes them;
    all_point: VOC 2010+'s VOCap.m instead of the 11 points."""
    gt = {p: [] for p in paths}
    for image, box, k, difficult in objects:
        if k == class_index:
            x1, y1, x2, y2 = box
            gt[paths[image]].append({"bb": (x1 + 1, y1 + 1, x2, y2), "diff": difficult, "det": False})
    npos = sum(not g["diff"] for boxes in gt.values() for g in boxes)
    mine = [r for r in rows if r[2] == name]
    order = sorted(range(len(mine)), key=lambda i: -mine[i][3])  # Python's sort is stable, as MATLAB's
    tp, fp = [], []
    for i in order:
        path, (x1, y1, x2, y2), _, _ = mine[i]
        bb = (x1 + 1, y1 + 1, x2, y2)
        ovmax, jmax = -np.inf, None
        for j, g in enumerate(gt.get(path, [])):
            bbgt = g["bb"]
            bi = (max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3]))
            iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1) - iw * ih
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= 0.5:
            g = gt[path][jmax]
            if g["diff"]:
                continue
            if not g["det"]:
                g["det"] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos if npos else tp * 0.0
    prec = tp / np.maximum(tp + fp, np.finfo(float).eps)
    if all_point:  # VOCap.m: mrec = [0; rec; 1], mpre = [0; prec; 0], envelope from the right, sum of steps
        mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
    ap = 0.0
    for t in np.arange(0, 1.1, 0.1):
        p = prec[rec >= t].max() if (rec >= t).any() else 0
        ap += p / 11
    return ap


def test_duplicates_are_false_positives():
    # two cats; the best window found cat 0, a duplicate of it, then cat 1
    t = truth(["a.jpg"], [(0, (0, 0, 10, 10), 0, False), (0, (20, 20, 30, 30), 0, False)])
    d = dets([("a.jpg", (0, 0, 10, 10), "cat", 0.9), ("a.jpg", (0, 0, 10, 9), "cat", 0.8),
              ("a.jpg", (20, 20, 30, 30), "cat", 0.7)])
    result = evaluate_boxes(d, t)
    # recall .5 .5 1, precision 1 .5 2/3: 6 thresholds up to .5 at precision 1, 5 at 2/3
    assert result.per_class["cat"].ap == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert result.per_class["dog"].ap is None  # no dog to find: not in the mean
    assert result.mAP == pytest.approx(result.per_class["cat"].ap)


def test_difficult_boxes_are_neither_found_nor_missed():
    t = truth(["a.jpg"], [(0, (0, 0, 10, 10), 0, True), (0, (50, 50, 60, 60), 0, False)])
    d = dets([("a.jpg", (0, 0, 10, 10), "cat", 0.9), ("a.jpg", (50, 50, 60, 60), "cat", 0.1)])
    r = evaluate_boxes(d, t).per_class["cat"]
    assert r.n_objects == 1 and r.ap == pytest.approx(1.0)  # the difficult hit is ignored, not a false positive


def test_a_low_overlap_is_a_false_positive_and_no_detection_scores_zero():
    t = truth(["a.jpg", "b.jpg"], [(0, (0, 0, 10, 10), 0, False), (1, (0, 0, 10, 10), 1, False)])
    d = dets([("a.jpg", (5, 0, 15, 10), "cat", 0.9)])  # IoU 1/3
    result = evaluate_boxes(d, t)
    assert result.per_class["cat"].ap == 0.0
    assert result.per_class["dog"].ap == 0.0 and result.per_class["dog"].n_detections == 0
    assert result.mAP == 0.0


def test_unknown_images_and_labels_are_counted_not_scored():
    t = truth(["a.jpg"], [(0, (0, 0, 10, 10), 0, False)])
    d = dets([("a.jpg", (0, 0, 10, 10), "cat", 0.5), ("z.jpg", (0, 0, 10, 10), "cat", 0.9),
              ("a.jpg", (0, 0, 10, 10), "horse", 0.9)])
    result = evaluate_boxes(d, t)
    assert result.unknown_images == {"z.jpg": 1} and result.unknown_labels == {"horse": 1}
    assert result.per_class["cat"].ap == 1.0
    report = result.report()
    assert report["mAP"] == 1.0 and report["ap"]["dog"] is None and report["objects"]["cat"] == 1


def test_eleven_point_interpolation():
    assert eleven_point_ap(np.array([0.2, 0.4]), np.array([1.0, 0.5])) == pytest.approx((3 * 1 + 2 * 0.5) / 11)
    assert eleven_point_ap(np.zeros(0), np.zeros(0)) == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_random_cases_match_the_devkit_loops(seed):
    rng = np.random.default_rng(seed)
    paths = [f"{i}.jpg" for i in range(6)]
    objects = []
    for image in range(6):
        for _ in range(rng.integers(0, 4)):
            x, y = rng.integers(0, 80, 2)
            w, h = rng.integers(5, 40, 2)
            objects.append((image, (x, y, x + w, y + h), int(rng.integers(0, 2)), bool(rng.random() < 0.2)))
    rows = []
    for image, box, k, _ in objects:  # detections near the objects, some exact, some off, some duplicated
        for _ in range(rng.integers(0, 3)):
            jitter = rng.integers(-6, 7, 4)
            rows.append((paths[image], tuple(np.array(box) + jitter), ("cat", "dog")[rng.integers(0, 2)],
                         float(np.round(rng.random(), 1))))  # rounded: ties in score happen
    for _ in range(10):
        x, y = rng.integers(0, 90, 2)
        rows.append((paths[rng.integers(0, 6)], (x, y, x + 10, y + 10), "cat", float(rng.random())))
    for metric in ("voc07", "voc"):
        result = evaluate_boxes(dets(rows), truth(paths, objects), metric=metric)
        for k, name in enumerate(("cat", "dog")):
            npos = sum(1 for o in objects if o[2] == k and not o[3])
            if npos == 0:
                assert result.per_class[name].ap is None
            else:
                expected = devkit_ap(rows, objects, paths, name, k, all_point=metric == "voc")
                assert result.per_class[name].ap == pytest.approx(expected)


def test_three_detections_two_objects_by_hand():
    # cat A found (0.9), a window on nothing (0.8), cat B found (0.7): recall 1/2, 1/2, 1; precision 1, 1/2, 2/3
    t = truth(["a.jpg"], [(0, (0, 0, 10, 10), 0, False), (0, (20, 20, 30, 30), 0, False)])
    d = dets([("a.jpg", (0, 0, 10, 10), "cat", 0.9), ("a.jpg", (50, 50, 60, 60), "cat", 0.8),
              ("a.jpg", (20, 20, 30, 30), "cat", 0.7)])
    voc07 = evaluate_boxes(d, t, metric="voc07")
    np.testing.assert_allclose(voc07.per_class["cat"].recall, [0.5, 0.5, 1])
    np.testing.assert_allclose(voc07.per_class["cat"].precision, [1, 0.5, 2 / 3])
    # 11 points: recall >= 0, .1, ..., .5 (6 points) reach precision 1; .6 ... 1 (5 points) reach 2/3
    assert voc07.per_class["cat"].ap == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # all points: the envelope is 1 up to recall 1/2, then 2/3 up to 1: 1/2 · 1 + 1/2 · 2/3 = 5/6
    voc = evaluate_boxes(d, t, metric="voc")
    assert voc.per_class["cat"].ap == pytest.approx(5 / 6) and voc.mAP == pytest.approx(5 / 6)
    assert voc.report()["metric"] == "voc" and voc07.report()["metric"] == "voc07"
    with pytest.raises(ValueError, match="metric must be one of voc07, voc, coco, got 'voc12'"):
        evaluate_boxes(d, t, metric="voc12")


def brute_force_area(recall, precision, steps=200_000):
    """The area under p(r) = max precision at recall >= r (0 where none), r in (0, 1], by midpoints."""
    r = (np.arange(steps) + 0.5) / steps
    reached = recall[None, :] >= r[:, None]
    return float(np.where(reached, precision[None, :], 0).max(axis=1).mean())


@pytest.mark.parametrize("seed", range(6))
def test_all_point_ap_is_the_area_under_the_envelope(seed):
    rng = np.random.default_rng(seed)
    npos = int(rng.integers(1, 8))
    hits = rng.random(int(rng.integers(1, 20))) < 0.5
    hits[np.flatnonzero(hits)[npos:]] = False  # at most npos true positives
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall, precision = tp / npos, tp / (tp + fp)
    assert all_point_ap(recall, precision) == pytest.approx(brute_force_area(recall, precision), abs=1e-4)


def test_all_point_ap_by_hand():
    assert all_point_ap(np.array([0.25, 0.5, 0.5, 1.0]), np.array([1.0, 1.0, 2 / 3, 0.5])) == pytest.approx(0.75)
    assert all_point_ap(np.zeros(0), np.zeros(0)) == 0.0
