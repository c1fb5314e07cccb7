"""Ground truth and windows for detection from every box format: difficult flags (VOC difficult,
COCO iscrowd / ignore, a CSV column), images without objects, scores, and a detections file read
back as a box file."""

import json

import numpy as np
import pytest

from conftest import voc_xml
from sppfeat.data.boxes import read_boxes
from sppfeat.detection.inference import Detection
from sppfeat.detection.outputs import read_detections, write_detections
from sppfeat.detection.proposal_file import load_proposals


def test_coco_crowds_are_difficult_and_images_without_objects_are_kept(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "empty.jpg"}],
            "categories": [{"id": 3, "name": "cat"}],
            "annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 20]},
                            {"image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10], "iscrowd": 1},
                            {"image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2], "ignore": 1}]}
    (tmp_path / "b.json").write_text(json.dumps(coco))
    boxes = read_boxes(tmp_path / "b.json", keep_empty=True)
    assert boxes.paths == ["a.jpg", "empty.jpg"] and boxes.difficult.tolist() == [False, True, True]
    assert boxes.boxes[0].tolist() == [0, 0, 10, 20]
    assert read_boxes(tmp_path / "b.json").paths == ["a.jpg"]  # regions' default: images with boxes only


def test_voc_files_without_objects_are_images_to_keep(tmp_path):
    (tmp_path / "1.xml").write_text(voc_xml("1.jpg", [((0, 0, 10, 10), "dog", True)]))
    (tmp_path / "2.xml").write_text(voc_xml("2.jpg", []))
    boxes = read_boxes(tmp_path, keep_empty=True)
    assert boxes.paths == ["1.jpg", "2.jpg"] and boxes.image.tolist() == [0] and boxes.difficult.tolist() == [True]
    assert boxes.boxes.tolist() == [[0, 0, 10, 10]]  # 1-based inclusive in the file


def test_csv_with_score_and_difficult_columns(tmp_path):
    (tmp_path / "b.csv").write_text("path,x1,y1,x2,y2,difficult,label,score\n"
                                    "a.jpg,0,0,5,5,1,cat,0.5\nb.jpg,,,,,,,\na.jpg,1,1,4,4,0,dog,-1.25\n")
    boxes = read_boxes(tmp_path / "b.csv", keep_empty=True)
    assert boxes.paths == ["a.jpg", "b.jpg"] and boxes.class_names == ["cat", "dog"]
    assert boxes.difficult.tolist() == [True, False] and boxes.scores.tolist() == [0.5, -1.25]
    proposals = load_proposals(tmp_path / "b.csv")
    assert proposals.of("a.jpg").tolist() == [[0, 0, 5, 5], [1, 1, 4, 4]]
    assert proposals.of("b.jpg") is None  # an image without windows: a recorded skip, not an empty list
    (tmp_path / "bad.csv").write_text("path,x1,y1,x2,y2,difficult\na.jpg,0,0,5,5,maybe\n")
    with pytest.raises(ValueError, match=r"bad.csv \(line 2 \(a.jpg\) difficult 'maybe' is not 0 or 1\)"):
        read_boxes(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("path,x1,y1,x2,y2,colour\n")
    with pytest.raises(ValueError, match="header"):
        read_boxes(tmp_path / "bad2.csv")


def test_flags_that_are_not_0_or_1_are_refused_and_a_bom_is_read(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 3, "name": "cat"}],
            "annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 20]},
                            {"image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10], "iscrowd": "yes"},
                            {"image_id": 1, "category_id": 3, "bbox": [True, 1, 2, 2]}]}
    (tmp_path / "b.json").write_text(json.dumps(coco), encoding="utf-8-sig")
    boxes = read_boxes(tmp_path / "b.json")
    assert boxes.boxes.tolist() == [[0, 0, 10, 20]]
    assert [reason for _, reason in boxes.skipped] == [
        "annotation 1 (id None, a.jpg, cat) iscrowd 'yes' or ignore 0 is not 0 or 1",
        "annotation 2 (id None, a.jpg, cat) bbox [True, 1, 2, 2] is not 4 numbers"]
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "1.xml").write_text(voc_xml("1.jpg", [((0, 0, 10, 10), "dog", False)]).replace(
        "<difficult>0</difficult>", "<difficult>yes</difficult>"))
    assert read_boxes(tmp_path / "voc").skipped == [("voc/1.xml", "object 0 (dog) <difficult> 'yes' is not 0 or 1")]
    (tmp_path / "b.csv").write_text("path,x1,y1,x2,y2,label\na.jpg,0,0,5,5,cat\n", encoding="utf-8-sig")
    assert read_boxes(tmp_path / "b.csv").class_names == ["cat"]  # Excel's "CSV UTF-8" starts with a BOM


@pytest.mark.parametrize("name", ["d.csv", "d.jsonl"])
def test_detections_read_back(tmp_path, name):
    rows = [Detection("x/a.jpg", 1.0, 2.0, 30.5, 40.0, "cat", 0.71234), Detection("b.jpg", 0, 0, 9, 9, "dog", -1.5)]
    write_detections(tmp_path / name, rows)
    back = read_detections(tmp_path / name)
    assert back.paths == ["x/a.jpg", "b.jpg"] and back.labels == ["cat", "dog"]
    np.testing.assert_allclose(back.boxes, [[1, 2, 30.5, 40], [0, 0, 9, 9]])
    np.testing.assert_allclose(back.scores, [0.71234, -1.5])
    with pytest.raises(ValueError, match="must end in .csv or .jsonl"):
        write_detections(tmp_path / "d.txt", rows)
    (tmp_path / name).write_text((tmp_path / name).read_text() + ("b.jpg,0,0,9,9,dog,high\n" if name.endswith("csv")
                                                                   else '{"path": "b.jpg"}\n'))
    with pytest.raises(ValueError, match=f"line {4 if name.endswith('csv') else 3}: not a detection"):
        read_detections(tmp_path / name)
