"""YOLO txt labels: converted by hand from their normalised numbers and the image's size as stored,
class names from classes.txt or data.yaml, images found in Ultralytics' and LabelImg's layouts,
and eval-detections on a labels folder as on an XML folder."""

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import VOC_SAMPLE
from sppfeat.cli import main
from sppfeat.data.boxes import read_boxes
from sppfeat.data.yolo import yaml_names
from sppfeat.detection.evaluation import evaluate_detections

VOC = VOC_SAMPLE / "VOCdevkit" / "VOC2007"


def ultralytics(tmp_path, names_yaml="names:\n  0: cat\n  1: dog\n"):
    """dataset/images/train/{x.jpg 640×480, y.png 100×50}, dataset/labels/train/{x,y}.txt, dataset/data.yaml."""
    images, labels = tmp_path / "dataset" / "images" / "train", tmp_path / "dataset" / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    Image.new("RGB", (640, 480)).save(images / "x.jpg")
    Image.new("RGB", (100, 50)).save(images / "y.png")
    (tmp_path / "dataset" / "data.yaml").write_text("path: .\ntrain: images/train\n" + names_yaml)
    (labels / "x.txt").write_text("1 0.5 0.25 0.2 0.1\n\n0 0.1 0.9 0.1 0.2\n")
    (labels / "y.txt").write_text("")
    return images, labels


def test_ultralytics_layout_converted_by_hand(tmp_path):
    images, labels = ultralytics(tmp_path)
    boxes = read_boxes(labels, keep_empty=True)
    assert boxes.format == "yolo" and boxes.paths == ["x.jpg", "y.png"] and boxes.class_names == ["cat", "dog"]
    # x.jpg is 640 × 480: dog at cx 0.5, cy 0.25, w 0.2, h 0.1 -> x (0.5 ∓ 0.1)·640 = 256..384,
    # y (0.25 ∓ 0.05)·480 = 96..144; cat at cx 0.1, cy 0.9, w 0.1, h 0.2 -> x (0.1 ∓ 0.05)·640 = 32..96,
    # y (0.9 ∓ 0.1)·480 = 384..480
    assert boxes.boxes.tolist() == [pytest.approx([256, 96, 384, 144]), pytest.approx([32, 384, 96, 480])]
    assert [boxes.class_names[k] for k in boxes.labels] == ["dog", "cat"] and boxes.image.tolist() == [0, 0]
    assert read_boxes(labels).paths == ["x.jpg"]  # the empty label file: an image without objects


@pytest.mark.skipif(not VOC.is_dir(), reason="needs ../shared/data/voc2007-sample")
def test_a_real_image_and_its_official_box(tmp_path):
    """000012.jpg (500 × 333 as stored), its VOC car xmin 156 ymin 97 xmax 351 ymax 270 = pixels
    [155, 96, 351, 270]: as YOLO writes it, cx = (155 + 351) / 2 / 500, w = 196 / 500, cy = 183 / 333,
    h = 174 / 333; read beside the image (LabelImg's layout)."""
    (tmp_path / "000012.jpg").symlink_to(VOC / "JPEGImages" / "000012.jpg")
    (tmp_path / "classes.txt").write_text("\n".join(["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car"])
                                          + "\n")
    (tmp_path / "000012.txt").write_text("6 0.506000 0.549550 0.392000 0.522523\n")
    boxes = read_boxes(tmp_path)
    assert boxes.paths == ["000012.jpg"] and boxes.class_names[boxes.labels[0]] == "car"
    assert boxes.boxes.tolist() == [pytest.approx([155, 96, 351, 270], abs=1e-3)]


def test_class_names_from_classes_txt_above_and_yaml_forms(tmp_path):
    images, labels = ultralytics(tmp_path, names_yaml="names: ['cat', \"dog\"]  # two\n")
    assert read_boxes(labels).class_names == ["cat", "dog"]
    (labels.parent / "classes.txt").write_text("ant\nbee\n")  # nearer than data.yaml: it wins
    assert read_boxes(labels).class_names == ["ant", "bee"]
    assert yaml_names("names:\n- cat\n- 'hot dog' # food\nnc: 2\n") == ["cat", "hot dog"]
    assert yaml_names("nc: 3\nnames: {0: a, 2: 'c, d', 1: b}\n") == ["a", "b", "c, d"]
    assert yaml_names("names: ['person', 'bicycle',\n        'car']  # class names\ntrain: x\n") == \
        ["person", "bicycle", "car"]
    assert yaml_names("names:\n  0: it's\n  1: \"say \\\"hi\\\"\"\n") == ["it's", 'say "hi"']
    for bad, message in (("nc: 2\n", "no 'names:' key"), ("names:\n  1: a\n  2: b\n", "not 0 to 1"),
                         ("names: cat\n", "neither a list nor a mapping")):
        with pytest.raises(ValueError, match=message):
            yaml_names(bad)


def test_missing_images_bad_lines_and_no_class_names(tmp_path):
    images, labels = ultralytics(tmp_path)
    (labels / "z.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "x.txt").write_text("1 0.5 0.25 0.2\n7 0.5 0.5 0.5 0.5\n0 0.5 0.5 0 0.1\n0 0.5 0.5 0.1 zero\n"
                                  "1 0.5 0.25 0.2 0.1\n")
    boxes = read_boxes(labels, keep_empty=True)
    assert boxes.paths == ["x.jpg", "y.png"] and boxes.boxes.tolist() == [pytest.approx([256, 96, 384, 144])]
    assert [reason for _, reason in boxes.skipped[:4]] == [
        "line 1 has 4 values, not 5 (class cx cy width height)",
        "line 2 (class 7) is not among the 2 classes of data.yaml",
        "line 3 (class 0, cat) width 0 (zero width)",
        "line 4 height 'zero' is not a number"]
    assert [r.box for r in boxes.rejected] == [None, pytest.approx((160, 120, 480, 360)), None, None]
    file, reason = boxes.skipped[4]
    assert file == "train/z.txt" and reason.startswith("no image z.* in ") and str(images) in reason
    assert reason.endswith(": YOLO's normalised boxes need the image's size")
    (tmp_path / "dataset" / "data.yaml").unlink()
    with pytest.raises(ValueError, match="YOLO labels need their class names: a classes.txt") as info:
        read_boxes(labels, "yolo")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="holds neither VOC XML files"):
        read_boxes(labels)


def test_the_image_folder_given_is_looked_in_first(tmp_path):
    """train-detector IMAGES LABELS: the image under IMAGES gives the size and the path."""
    images, labels = ultralytics(tmp_path)
    other = tmp_path / "photos"
    other.mkdir()
    Image.new("RGB", (320, 240)).save(other / "x.jpeg")
    boxes = read_boxes(labels, images=other)
    assert boxes.paths == ["x.jpeg"] and boxes.boxes[0].tolist() == pytest.approx([128, 48, 192, 72])


def test_eval_detections_on_a_labels_folder(tmp_path):
    """Detections name images relative to detect's input folder (images/train), as with an XML folder."""
    images, labels = ultralytics(tmp_path)
    dets = tmp_path / "dets.csv"
    dets.write_text("path,x1,y1,x2,y2,label,score\nx.jpg,256,96,384,144,dog,0.9\nx.jpg,32,384,96,480,cat,0.8\n"
                    "y.png,0,0,10,10,cat,0.1\n")
    assert evaluate_detections(dets, labels).mAP == 1.0  # each object found first, y.png's detection after
    result = CliRunner().invoke(main, ["eval-detections", str(dets), str(labels), "--box-format", "yolo"])
    assert result.exit_code == 0 and "mAP 100.00%" in result.output, result.output
