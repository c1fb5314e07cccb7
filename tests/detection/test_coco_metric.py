"""COCO's metric through pycocotools, on hand-made cases whose answers are derived here: what
sppfeat feeds it (box convention, ids, area, difficult -> iscrowd) and the summary it reports."""

import pytest

from sppfeat.detection.coco import coco_ground_truth
from sppfeat.detection.metric import evaluate_boxes
from test_metric import dets, truth


def test_the_ground_truth_sppfeat_feeds_pycocotools():
    t = truth(["a.jpg", "b.jpg"], [(0, (10, 20, 40, 60), 1, False), (1, (0, 0, 5, 5), 0, True)])
    assert coco_ground_truth(t) == {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [  # half-open [10, 40) x [20, 60): x 10, y 20, w 30, h 40, area 1200
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 20, 30, 40], "area": 1200.0, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25.0, "iscrowd": 1}]}


def test_a_perfect_detection_is_ap_1():
    t = truth(["a.jpg"], [(0, (0, 0, 100, 100), 0, False)])
    result = evaluate_boxes(dets([("a.jpg", (0, 0, 100, 100), "cat", 0.9)]), t, metric="coco")
    # a 100 x 100 box: area 10,000 > 96² = 9,216, a large object; no small or medium one (COCO's -1)
    assert result.coco == pytest.approx({"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "APs": None, "APm": None, "APl": 1.0})
    assert result.mAP == pytest.approx(1.0) and result.per_class["cat"].ap == pytest.approx(1.0)
    assert result.per_class["dog"].ap is None  # no dog to find
    report = result.report()
    assert report["metric"] == "coco" and report["AP50"] == 1.0 and report["APs"] is None


def test_a_detection_at_iou_0_62_counts_at_0_5_to_0_6_only():
    # [0, 100) x [0, 62) inside [0, 100) x [0, 100): IoU 6,200 / 10,000 = 0.62, a match at the
    # thresholds 0.50, 0.55, 0.60 and a miss at 0.65 ... 0.95: AP = 3 / 10
    t = truth(["a.jpg"], [(0, (0, 0, 100, 100), 0, False)])
    result = evaluate_boxes(dets([("a.jpg", (0, 0, 100, 62), "cat", 0.9)]), t, metric="coco")
    assert result.coco["AP50"] == pytest.approx(1.0) and result.coco["AP75"] == 0.0
    assert result.coco["AP"] == pytest.approx(0.3) and result.per_class["cat"].ap == pytest.approx(0.3)


def test_a_detection_on_a_difficult_box_is_ignored_not_a_false_positive():
    # the first detection lies on the difficult (crowd) box; counted as a false positive it would
    # leave precision 1/2 at recall 1 (AP 0.5); ignored, the one true positive gives AP 1
    t = truth(["a.jpg"], [(0, (0, 0, 50, 50), 0, False), (0, (100, 100, 150, 150), 0, True)])
    result = evaluate_boxes(dets([("a.jpg", (100, 100, 150, 150), "cat", 0.9), ("a.jpg", (0, 0, 50, 50), "cat", 0.5)]),
                            t, metric="coco")
    assert result.coco["AP"] == pytest.approx(1.0) and result.per_class["cat"].n_objects == 1


def test_area_ranges_and_half_recall():
    # a small object (20 x 20 = 400 < 32²) found, a medium one (50 x 50 = 2,500) missed: recall 1/2
    # at precision 1, so the interpolated precision is 1 at the recall steps 0, 0.01, ..., 0.50
    # (51 of 101) and 0 above: AP = 51/101 at every IoU threshold; small 1, medium 0, no large
    t = truth(["a.jpg", "b.jpg"], [(0, (0, 0, 20, 20), 0, False), (1, (0, 0, 50, 50), 0, False)])
    result = evaluate_boxes(dets([("a.jpg", (0, 0, 20, 20), "cat", 0.9)]), t, metric="coco")
    assert result.coco == pytest.approx({"AP": 51 / 101, "AP50": 51 / 101, "AP75": 51 / 101, "APs": 1.0, "APm": 0.0,
                                         "APl": None})


def test_no_detection_scores_zero_and_unknowns_are_counted():
    t = truth(["a.jpg"], [(0, (0, 0, 50, 50), 1, False)])
    result = evaluate_boxes(dets([("z.jpg", (0, 0, 50, 50), "dog", 0.9), ("a.jpg", (0, 0, 50, 50), "horse", 0.9)]),
                            t, metric="coco")
    assert result.coco["AP"] == 0.0 and result.per_class["dog"].ap == 0.0 and result.per_class["cat"].ap is None
    assert result.unknown_images == {"z.jpg": 1} and result.unknown_labels == {"horse": 1}
