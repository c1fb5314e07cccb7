"""detect --output DETS.json: COCO's results format (image_id, category_id, bbox [x, y, w, h],
score), ids from a COCO ground truth or numbered, checked by hand against the same run's CSV; and
resume into a .json. A detector with made-up weights on three demo photos keeps it to seconds."""

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, interrupt_at_call
from sppfeat import ExtractionConfig
from sppfeat.cli import main
from sppfeat.detection import inference
from sppfeat.detection.inference import Detection
from sppfeat.detection.model import DetectorModel, save_detector
from sppfeat.detection.outputs import CocoIds, coco_ids_for, numbered_ids, read_detections, write_detections
from sppfeat.detection.proposals import ProposalConfig
from sppfeat.features.interrupts import ExtractionInterrupted

PHOTOS = ["image_0013.jpg", "image_0011.jpg", "image_0012.jpg"]


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_write_coco_results_by_hand(tmp_path):
    rows = [Detection("b.jpg", 1.0, 2.0, 30.5, 40.0, "cat", 0.712344), Detection("a.jpg", 0, 0, 9, 9, "dog", -1.5)]
    ids = CocoIds({"a.jpg": 4, "b.jpg": 9}, {"cat": 17, "dog": 18})
    write_detections(tmp_path / "d.json", rows, ids)
    assert json.loads((tmp_path / "d.json").read_text()) == [
        {"image_id": 9, "category_id": 17, "bbox": [1.0, 2.0, 29.5, 38.0], "score": 0.71234},
        {"image_id": 4, "category_id": 18, "bbox": [0, 0, 9, 9], "score": -1.5}]
    back = read_detections(tmp_path / "d.json", ids)
    assert back.paths == ["b.jpg", "a.jpg"] and back.labels == ["cat", "dog"]
    np.testing.assert_allclose(back.boxes, [[1, 2, 30.5, 40], [0, 0, 9, 9]])
    with pytest.raises(ValueError, match="reading them needs the COCO ground truth"):
        read_detections(tmp_path / "d.json")
    write_detections(tmp_path / "none.json", [], ids)
    assert json.loads((tmp_path / "none.json").read_text()) == []


def test_ids_numbered_or_from_the_ground_truth(tmp_path):
    assert numbered_ids(["b.jpg", "a/c.jpg", "a.jpg"], ["dog", "cat"]) == \
        CocoIds({"a.jpg": 1, "a/c.jpg": 2, "b.jpg": 3}, {"dog": 1, "cat": 2})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 5, "file_name": "a.jpg"}], "categories": [{"id": 2, "name": "cat"}],
                              "annotations": []}))
    assert coco_ids_for(tmp_path / "d.json", gt, ["a.jpg"], ["cat"]) == CocoIds({"a.jpg": 5}, {"cat": 2})
    assert coco_ids_for(tmp_path / "d.csv", None, ["a.jpg"], ["cat"]) is None
    with pytest.raises(ValueError, match="1 of the 2 images are not among the images of .*gt.json.*e.g. b.jpg"):
        coco_ids_for(tmp_path / "d.json", gt, ["a.jpg", "b.jpg"], ["cat"])
    with pytest.raises(ValueError, match="classes of the model are not among the categories of .*: dog"):
        coco_ids_for(tmp_path / "d.json", gt, ["a.jpg"], ["cat", "dog"])
    with pytest.raises(ValueError, match=r"coco_ids=FILE is for an output ending in \.json"):
        coco_ids_for(tmp_path / "d.csv", gt, ["a.jpg"], ["cat"])
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="bad.json is not COCO JSON with images and categories \\(missing key"):
        coco_ids_for(tmp_path / "d.json", tmp_path / "bad.json", [], [])


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    """A two-class detector with random SVMs at 64 px, level 1; three photos; six windows each."""
    root = tmp_path_factory.mktemp("coco_out")
    (root / "photos").mkdir()
    for name in PHOTOS:
        shutil.copy(ROOT / "examples" / "demo_images" / "pizza" / name, root / "photos" / name)
    record = ExtractionConfig(scales=(64,), levels=(1,)).resolved("folder", None, "cpu").to_record()
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(2, record["feature_dim"])).astype(np.float32)
    save_detector(root / "m.h5", DetectorModel(coef, np.zeros(2), ["pizza", "dog"], record,
                                               ProposalConfig().to_record()))
    (root / "windows.csv").write_text("path,x1,y1,x2,y2\n" + "".join(
        f"{name},{x},{y},{x + 60},{y + 50}\n" for name in PHOTOS for x in (0, 40, 80) for y in (0, 30)))
    return root


def test_detect_writes_coco_results_with_numbered_or_given_ids(made_up, tmp_path):
    args = ["detect", made_up / "m.h5", made_up / "photos", "--proposals", made_up / "windows.csv", "--device", "cpu",
            "-q"]
    assert run_cli(*args, "-o", tmp_path / "d.csv").exit_code == 0
    assert run_cli(*args, "-o", tmp_path / "d.json").exit_code == 0
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    results = json.loads((tmp_path / "d.json").read_text())
    assert len(results) == len(rows) > 0
    image_id = {"image_0011.jpg": 1, "image_0012.jpg": 2, "image_0013.jpg": 3}  # sorted paths
    category_id = {"pizza": 1, "dog": 2}  # the model's order
    for row, result in zip(rows, results):
        x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        assert result == {"image_id": image_id[row["path"]], "category_id": category_id[row["label"]],
                          "bbox": pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-6),
                          "score": pytest.approx(float(row["score"]), abs=1e-5)}
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 100 + i, "file_name": name} for i, name in enumerate(PHOTOS)],
                              "categories": [{"id": 7, "name": "dog"}, {"id": 8, "name": "pizza"}],
                              "annotations": []}))
    assert run_cli(*args, "-o", tmp_path / "g.json", "--coco-ids", gt).exit_code == 0
    given = json.loads((tmp_path / "g.json").read_text())
    image_id = {"image_0013.jpg": 100, "image_0011.jpg": 101, "image_0012.jpg": 102}
    assert [(r["image_id"], r["category_id"]) for r in given] == \
        [(image_id[row["path"]], {"pizza": 8, "dog": 7}[row["label"]]) for row in rows]
    result = run_cli(*args, "-o", tmp_path / "x.csv", "--coco-ids", gt)
    assert result.exit_code == 2 and "--coco-ids FILE is for an output ending in .json" in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_detect_resumes_into_a_json_file(made_up, tmp_path, monkeypatch):
    options = {"proposals": made_up / "windows.csv", "device": "cpu", "quiet": True}
    inference.detect(made_up / "m.h5", made_up / "photos", tmp_path / "whole.json", **options)
    real = interrupt_at_call(monkeypatch, inference, "detect_windows", 2, 15)
    out = tmp_path / "d.json"
    with pytest.raises(ExtractionInterrupted):
        inference.detect(made_up / "m.h5", made_up / "photos", out, **options)
    assert not out.exists()
    monkeypatch.setattr(inference, "detect_windows", real)
    inference.detect(made_up / "m.h5", made_up / "photos", out, resume=True, **options)
    assert out.read_text() == (tmp_path / "whole.json").read_text()
