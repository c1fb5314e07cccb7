"""Training with refused boxes: an image keeps its valid objects as positives, and a window near an
object whose box could not be used is never a negative (none of the image's windows when that
box cannot be located); the skipped line names the annotation file, the file's numbers and the
rule. Also: annotation files beside the photos are not reported by image discovery."""

import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO, fast_config
from sppfeat.data.discover import list_images
from sppfeat.detection.mining import label_windows
from sppfeat.detection.proposals import list_inputs
from sppfeat.detection.settings import TrainingSettings
from sppfeat.detection.training import prepare_image, read_truth


def voc(filename, objects):
    """objects: (name or None, (xmin, ymin, xmax, ymax) as the file writes them)."""
    body = "".join("<object>" + (f"<name>{name}</name>" if name else "") + "<difficult>0</difficult><bndbox>"
                   + "".join(f"<{tag}>{v}</{tag}>" for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
                   + "</bndbox></object>" for name, box in objects)
    return f"<annotation><filename>{filename}</filename>{body}</annotation>"


@pytest.fixture
def labelled(tmp_path):
    """Four 64 × 48 photos and their VOC files (no <size>: checked against the photos), a fifth
    file without its photo."""
    images, boxes = tmp_path / "images", tmp_path / "Annotations"
    images.mkdir()
    boxes.mkdir()
    for name in "abcd":
        Image.new("RGB", (64, 48), (40 * "abcd".index(name), 90, 160)).save(images / f"{name}.jpg")
    files = {"a": [("dog", (11, 11, 30, 30)), ("cat", (40, 5, 20, 20))],  # inverted: nowhere known
             "b": [("dog", (100, 1, 120, 10))],  # beyond the photo's 64 px: its only object
             "c": [("dog", (2, 2, 20, 20)), (None, (30, 5, 60, 40))],  # no class: its area is known
             "d": [("dog", (5, 5, 25, 25))],
             "e": [("cat", (9, 9, 1, 1))]}
    for name, objects in files.items():
        (boxes / f"{name}.xml").write_text(voc(f"{name}.jpg", objects))
    return images, boxes


def test_the_skipped_lines_say_the_rule_and_the_useless_image_is_dropped(labelled):
    truth, skipped = read_truth(*labelled, "auto")
    assert truth.paths == ["a.jpg", "c.jpg", "d.jpg"]
    assert skipped == [
        ("Annotations/a.xml", "object 1 (cat) xmin 40 > xmax 20 (inverted); "
                              "image a.jpg kept for its other objects, none of its windows used as negatives"),
        ("Annotations/b.xml", "object 0 (dog) xmin 100, xmax 120: beyond the image's width 64; "
                              "image b.jpg not used (no other object, and no window of it can be a negative)"),
        ("Annotations/c.xml", "object 1 has no <name>; image c.jpg kept, no window overlapping this box used "
                              "as a negative"),
        ("Annotations/e.xml", "object 0 (cat) xmin 9 > xmax 1 (inverted)"),
        ("e.jpg", "missing file")]


@pytest.mark.parametrize("fmt", ["voc-xml", "csv"])
def test_windows_near_a_refused_box_are_never_negatives(labelled, fmt):
    """The box of unknown class refused by the reader (VOC: no <name>), or read without a label (CSV)."""
    from sppfeat.detection.maps import RegionVectors

    images, boxes = labelled
    if fmt == "csv":
        boxes = images.parent / "b.csv"
        boxes.write_text("path,x1,y1,x2,y2,label\na.jpg,10,10,30,30,dog\na.jpg,40,5,20,20,cat\nc.jpg,1,1,20,20,dog\n"
                         "c.jpg,29,4,60,40,\n")
    truth, _ = read_truth(images, boxes, fmt)
    rv = RegionVectors(fast_config(), "cpu")
    settings, dog = TrainingSettings(), truth.class_names.index("dog")
    # c.jpg: the dog is [1, 1, 20, 20] in pixels, the box without a class [29, 4, 60, 40]
    windows = np.array([[29, 4, 60, 40], [31, 6, 60, 40], [0, 30, 10, 48], [1, 1, 20, 20], [10, 4, 40, 40]], float)
    # IoU with [29, 4, 60, 40]: 1; 29·34 / (31·36) = 0.88; 0; 0; 11·36 / (30·36 + 31·36 - 11·36) = 0.22.
    # With the dog: 0; 0; 0; 1; 10·16 / (30·36 + 19·19 - 10·16) = 0.12.
    image, notes = prepare_image(rv, truth, 1, rv.image_map(str(images / "c.jpg")), windows, settings,
                                 np.random.default_rng(0))
    assert notes == (["box 1 has no class: no window overlapping it used as a negative"] if fmt == "csv" else [])
    expected = np.ones((5, len(truth.class_names)), bool)
    expected[[0, 1]] = False  # near the object of unknown class: a negative of no class
    expected[3, dog] = False  # the dog itself
    np.testing.assert_array_equal(image.negative, expected)
    assert image.positive_labels.tolist() == [dog]
    # a.jpg: its cat's box is inverted, nobody knows where the cat is: no negative at all, the dog still a positive
    image, _ = prepare_image(rv, truth, 0, rv.image_map(str(images / "a.jpg")), windows, settings,
                             np.random.default_rng(0))
    assert not np.asarray(image.negative).any() and image.positive_labels.tolist() == [dog]


def test_label_windows_never_negative():
    windows = np.array([[50, 50, 60, 60], [50, 50, 60, 60], [0, 0, 10, 10]], float)
    negative, _ = label_windows(windows, np.array([[0, 0, 10, 10]], float), np.array([0]), np.array([False]), 2,
                                TrainingSettings(), np.random.default_rng(0), np.array([False, True, False]))
    assert negative.tolist() == [[True, True], [False, False], [False, True]]


def test_annotation_files_beside_the_photos_are_not_reported(tmp_path):
    """LabelImg's layout: x.xml or x.txt beside x.jpg, classes.txt; a file that pairs with no photo
    is still reported."""
    photo = sorted((DEMO / "pizza").glob("*.jpg"))[0]
    for name in ("x.jpg", "y.jpg", "sub/z.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(photo, tmp_path / name)
    for name in ("x.xml", "y.txt", "sub/z.json", "classes.txt", "data.yaml", "notes.txt", "sub/x.xml"):
        (tmp_path / name).write_text("<annotation/>")
    for found in (list_images(tmp_path), list_inputs(tmp_path)):
        assert found.paths == ["sub/z.jpg", "x.jpg", "y.jpg"]
        assert [path for path, _ in found.skipped] == ["notes.txt", "sub/x.xml"]
