"""eval-detections as a user meets it: ground truth it cannot use is named, a detections file that
shares no image with the ground truth is an error, bad rows are refused by file, line and field,
COCO results read back only through the COCO ground truth, and the pictures (legend beside the
curves, no matplotlib notes on stderr). Expected APs are worked out by hand in each test."""

import json
import os
import re
import subprocess

import pytest
from click.testing import CliRunner

from conftest import sppfeat_command, voc_xml
from sppfeat.cli import main
from sppfeat.detection.evaluation import evaluate_detections

DETS = "path,x1,y1,x2,y2,label,score\n"


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def voc_truth(tmp_path):
    """a.xml: two cats in a.jpg; b.xml: one dog in b.jpg (VOC XML, 1-based inclusive in the files)."""
    folder = tmp_path / "Annotations"
    folder.mkdir()
    (folder / "a.xml").write_text(voc_xml("a.jpg", [((0, 0, 10, 10), "cat", False), ((20, 20, 30, 30), "cat", False)]))
    (folder / "b.xml").write_text(voc_xml("b.jpg", [((0, 0, 50, 50), "dog", False)]))
    return folder


def test_a_csv_box_without_a_class_leaves_its_image_out_and_no_class_at_all_is_an_error(tmp_path):
    # b.jpg: a dog and a box with an empty label; scored, b's cat detection there would be a false positive
    (tmp_path / "t.csv").write_text("path,x1,y1,x2,y2,label\na.jpg,0,0,10,10,cat\nb.jpg,0,0,50,50,dog\n"
                                    "b.jpg,60,60,70,70,\n")
    (tmp_path / "d.csv").write_text(DETS + "a.jpg,0,0,10,10,cat,0.9\nb.jpg,60,60,70,70,cat,0.95\n")
    result = run_cli("eval-detections", tmp_path / "d.csv", tmp_path / "t.csv")
    assert result.exit_code == 0, result.output
    assert result.stderr == ("sppfeat: skipped t.csv: a box of b.jpg (60, 60, 70, 70) has no class; image b.jpg "
                             "left out of the score\n"), result.stderr
    evaluation = evaluate_detections(tmp_path / "d.csv", tmp_path / "t.csv")
    assert evaluation.per_class["cat"].ap == 1.0 and evaluation.n_images == 1
    (tmp_path / "t.csv").write_text("path,x1,y1,x2,y2\na.jpg,0,0,10,10\n")
    result = run_cli("eval-detections", tmp_path / "d.csv", tmp_path / "t.csv")
    assert result.exit_code == 2 and "t.csv names no class to score" in result.output, result.output


def test_coco_ids_or_names_given_twice_are_refused(tmp_path):
    from sppfeat.data.boxes import read_boxes
    from sppfeat.detection.outputs import read_coco_ids

    def coco(images, categories):
        path = tmp_path / "t.json"
        path.write_text(json.dumps({"images": images, "categories": categories, "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}]}))
        return path

    one = [{"id": 1, "file_name": "a.jpg"}]
    cases = [(one + [{"id": 1, "file_name": "b.jpg"}], [{"id": 1, "name": "cat"}], "image id 1 is used twice"),
             (one, [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}], "category name 'cat' is used twice"),
             (one, [{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}], "category id 1 is used twice")]
    for images, categories, message in cases:
        for read in (lambda p: read_boxes(p, "coco"), read_coco_ids):
            with pytest.raises(ValueError, match=message):
                read(coco(images, categories))
    with pytest.raises(ValueError, match="file_name 'a.jpg' is used twice"):
        read_coco_ids(coco(one + [{"id": 2, "file_name": "a.jpg"}], [{"id": 1, "name": "cat"}]))


def test_a_truncated_annotation_is_named_not_dropped(voc_truth, tmp_path):
    text = (voc_truth / "b.xml").read_text()
    (voc_truth / "b.xml").write_text(text[:len(text) // 2])
    (tmp_path / "d.csv").write_text(DETS + "a.jpg,0,0,10,10,cat,0.9\na.jpg,20,20,30,30,cat,0.8\n")
    result = run_cli("eval-detections", tmp_path / "d.csv", voc_truth)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"sppfeat: skipped \S*b\.xml: .+\n", result.stderr), result.stderr  # named, with a reason
    assert "cat              AP 100.0%" in result.stdout  # both cats found
    assert evaluate_detections(tmp_path / "d.csv", voc_truth).skipped[0][0].endswith("b.xml")


def test_an_image_with_a_refused_box_is_left_out_of_the_score(voc_truth, tmp_path):
    # b.jpg: the dog, and a cat whose box is inverted (xmin 31 > xmax 20 in the file): where that cat is
    # nobody knows, so b.jpg is not scored; counted, the dog found there would give the dog AP 1
    (voc_truth / "b.xml").write_text(voc_xml("b.jpg", [((0, 0, 50, 50), "dog", False), ((30, 0, 20, 10), "cat", False)]))
    (tmp_path / "d.csv").write_text(DETS + "a.jpg,0,0,10,10,cat,0.9\na.jpg,20,20,30,30,cat,0.8\n"
                                           "b.jpg,0,0,50,50,dog,0.7\nb.jpg,60,60,70,70,cat,0.95\n")
    result = run_cli("eval-detections", tmp_path / "d.csv", voc_truth, "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"sppfeat: skipped \S*b\.xml: .*inverted.*; image b\.jpg left out of the score\n",
                        result.stderr), result.stderr
    (file, reason), = json.loads((tmp_path / "r.json").read_text())["skipped"]
    assert file.endswith("b.xml") and reason.endswith("left out of the score")
    evaluation = evaluate_detections(tmp_path / "d.csv", voc_truth)
    assert evaluation.per_class["dog"].ap is None and evaluation.per_class["cat"].ap == 1.0  # b's cat at 0.95 unscored
    assert evaluation.n_images == 1 and evaluation.n_detections == 2


def test_no_image_in_common_is_an_error_naming_both_files(voc_truth, tmp_path):
    (tmp_path / "d.csv").write_text(DETS + "000012.jpg,0,0,10,10,cat,0.9\n")
    result = run_cli("eval-detections", tmp_path / "d.csv", voc_truth)
    assert result.exit_code == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert f"none of the 1 images of {tmp_path / 'd.csv'} is an image of {voc_truth}" in result.stderr
    assert "000012.jpg" in result.stderr and "a.jpg" in result.stderr
    (tmp_path / "empty.csv").write_text(DETS)  # no detection at all: nothing was found, AP 0
    assert evaluate_detections(tmp_path / "empty.csv", voc_truth).mAP == 0.0


@pytest.mark.parametrize("score", ["nan", "inf", "-Infinity"])
def test_a_score_that_is_not_finite_is_refused_with_its_line(voc_truth, tmp_path, score):
    (tmp_path / "d.csv").write_text(DETS + "a.jpg,0,0,10,10,cat,0.9\n" + f"a.jpg,20,20,30,30,cat,{score}\n")
    result = run_cli("eval-detections", tmp_path / "d.csv", voc_truth)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert f"{tmp_path / 'd.csv'}, line 3: not a detection: score '{score}' is not a finite number" in result.stderr
    (tmp_path / "d.jsonl").write_text('{"path": "a.jpg", "x1": 0, "y1": 0, "x2": 10, "y2": 10, "label": "cat", '
                                      '"score": NaN}\n')  # Python's json reads NaN
    with pytest.raises(ValueError, match="d.jsonl, line 1: not a detection: score nan is not a finite number"):
        evaluate_detections(tmp_path / "d.jsonl", voc_truth)


def test_a_jsonl_row_without_fields_names_them(voc_truth, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"path": "a.jpg", "x1": 0, "y1": 0, "x2": 10, "y2": 10, "label": "cat", '
                                      '"score": 1}\n{"path": "a.jpg", "y1": 0, "y2": 10, "label": "cat", "score": 1}\n'
                                      '[1, 2]\n')
    result = run_cli("eval-detections", tmp_path / "d.jsonl", voc_truth)
    assert result.exit_code == 2
    assert result.stderr == f"sppfeat: {tmp_path / 'd.jsonl'}, line 2: not a detection: missing x1, x2\n"


def test_the_metric_is_chosen_and_named(voc_truth, tmp_path):
    # cats: found (0.9), a window on nothing (0.8), found (0.7): recall 1/2, 1/2, 1 at precision 1, 1/2, 2/3;
    # the dog is missed (AP 0). voc: (1/2 · 1 + 1/2 · 2/3 + 0) / 2 = 5/12; voc07: ((6 + 5 · 2/3) / 11 + 0) / 2
    (tmp_path / "d.csv").write_text(DETS + "a.jpg,0,0,10,10,cat,0.9\na.jpg,50,50,60,60,cat,0.8\n"
                                           "a.jpg,20,20,30,30,cat,0.7\n")
    for metric, expected in [("voc", 5 / 12), ("voc07", (6 + 5 * 2 / 3) / 11 / 2)]:
        report = tmp_path / f"{metric}.json"
        result = run_cli("eval-detections", tmp_path / "d.csv", voc_truth, "--metric", metric, "--report", report)
        assert result.exit_code == 0, result.output
        written = json.loads(report.read_text())
        assert written["metric"] == metric and written["mAP"] == pytest.approx(expected, abs=1e-4)
    assert "(all-point AP)" in run_cli("eval-detections", tmp_path / "d.csv", voc_truth, "--metric", "voc").stdout
    result = run_cli("eval-detections", tmp_path / "d.csv", voc_truth, "--metric", "coco", "--report",
                     tmp_path / "coco.json")
    written = json.loads((tmp_path / "coco.json").read_text())
    assert written["metric"] == "coco" and {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(written)
    assert "AP50" in result.stdout
    result = run_cli("eval-detections", tmp_path / "d.csv", voc_truth, "--metric", "voc12")
    assert result.exit_code == 2 and "--metric" in result.stderr


def coco_truth(path):
    """Ids as a COCO file may number them: not 1..N."""
    path.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 17, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 17, "bbox": [0, 0, 10, 10]},
                        {"id": 2, "image_id": 7, "category_id": 17, "bbox": [20, 20, 10, 10]},
                        {"id": 3, "image_id": 3, "category_id": 18, "bbox": [0, 0, 50, 50]}]}))
    return path


def test_coco_results_read_back_through_the_coco_ground_truth(voc_truth, tmp_path):
    gt = coco_truth(tmp_path / "gt.json")
    # the cat at [0, 10) x [0, 10) found, the dog at [0, 50)² found at [0, 50) x [0, 40) (IoU 0.8), the second
    # cat missed: VOC all-point AP cat 1/2, dog 1
    (tmp_path / "d.json").write_text(json.dumps([
        {"image_id": 7, "category_id": 17, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 3, "category_id": 18, "bbox": [0, 0, 50, 40], "score": 0.6}]))
    result = evaluate_detections(tmp_path / "d.json", gt, metric="voc")
    assert result.per_class["cat"].ap == pytest.approx(0.5) and result.per_class["dog"].ap == pytest.approx(1.0)
    # at IoU thresholds 0.5 ... 0.8 (7 of 10) the dog is found: COCO AP of the dog 0.7
    assert evaluate_detections(tmp_path / "d.json", gt, metric="coco").per_class["dog"].ap == pytest.approx(0.7)
    result = run_cli("eval-detections", tmp_path / "d.json", voc_truth)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "COCO results name images and classes by number" in result.stderr and "voc-xml" in result.stderr
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 5, "category_id": 17, "bbox": [0, 0, 1, 1],
                                                    "score": 0.1}]))
    with pytest.raises(ValueError, match=r"bad.json, results\[0\]: not a detection: image_id 5 is not an image"):
        evaluate_detections(tmp_path / "bad.json", gt)


def test_the_legend_leaves_the_curves_top_right_corner_free(voc_truth, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    (tmp_path / "d.csv").write_text(DETS + "a.jpg,0,0,10,10,cat,0.9\nb.jpg,0,0,50,50,dog,0.5\n")
    extents = []
    real_savefig = Figure.savefig

    def keep(figure, *args, **kwargs):  # the legend's and the axes' places in the picture as saved
        real_savefig(figure, *args, **kwargs)
        axes = figure.axes[0]
        if axes.get_legend() is not None:
            renderer = figure.canvas.get_renderer()
            extents.append((axes.get_legend().get_window_extent(renderer), axes.get_window_extent(renderer)))

    monkeypatch.setattr(Figure, "savefig", keep)
    evaluate_detections(tmp_path / "d.csv", voc_truth, plots=tmp_path / "plots")
    (legend, frame), = extents
    corner = ((frame.x0 + frame.x1) / 2, (frame.y0 + frame.y1) / 2, frame.x1, frame.y1)  # the top-right quarter
    overlap = min(legend.x1, corner[2]) > max(legend.x0, corner[0]) and min(legend.y1, corner[3]) > max(legend.y0,
                                                                                                      corner[1])
    assert not overlap, (legend, frame)


def test_matplotlib_notes_stay_off_stderr(voc_truth, tmp_path):
    """A fresh matplotlib config folder: matplotlib builds its font cache and logs 'generated new
    fontManager' at INFO; the command's stderr stays empty."""
    (tmp_path / "d.csv").write_text(DETS + "a.jpg,0,0,10,10,cat,0.9\n")
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    run = subprocess.run(sppfeat_command("eval-detections", tmp_path / "d.csv", voc_truth, "--plots",
                                         tmp_path / "plots"), capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert list((tmp_path / "mpl").glob("fontlist*.json"))  # the font cache was built in this run
