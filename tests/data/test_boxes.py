"""Box readers: COCO JSON, VOC XML, CSV, each converted to 0-based half-open pixels."""

import json

import numpy as np
import pytest

from conftest import VOC_SAMPLE, voc_xml
from sppfeat.data.boxes import read_boxes
from sppfeat.data.discover import VOC_CLASSES

# the same three objects in each format: (file, internal box, class, difficult)
OBJECTS = [("b.jpg", [10, 20, 40, 60], "dog", False), ("a.jpg", [0, 0, 5, 7], "cat", True),
           ("b.jpg", [1.5, 2, 3.5, 9], "cat", False)]


def write_coco(path):
    names = sorted({o[2] for o in OBJECTS}, key=VOC_CLASSES.index)
    files = sorted({o[0] for o in OBJECTS})
    path.write_text(json.dumps({
        "images": [{"id": 100 + i, "file_name": f} for i, f in enumerate(files)],
        "categories": [{"id": VOC_CLASSES.index(n) + 1, "name": n} for n in reversed(names)],
        "annotations": [{"image_id": 100 + files.index(f), "category_id": VOC_CLASSES.index(c) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1]} for f, (x1, y1, x2, y2), c, _ in OBJECTS]}))
    return path


def write_voc(folder):
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        objects = [(box, c, d) for f, box, c, d in OBJECTS if f == name]
        (folder / name.replace(".jpg", ".xml")).write_text(voc_xml(name, objects))
    return folder


def write_csv(path):
    path.write_text("path,x1,y1,x2,y2,label\n" + "".join(f"{f},{','.join(map(str, b))},{c}\n" for f, b, c, _ in OBJECTS))
    return path


@pytest.mark.parametrize("writer,fmt", [(write_coco, "coco"), (write_voc, "voc-xml"), (write_csv, "csv")])
def test_each_format_gives_the_internal_boxes(tmp_path, writer, fmt):
    boxes = read_boxes(writer(tmp_path / f"boxes.{fmt}"))
    assert boxes.format == fmt and boxes.paths == ["a.jpg", "b.jpg"]
    # grouped by image in path order, each image's boxes in file order
    assert boxes.image.tolist() == [0, 1, 1]
    assert boxes.boxes.tolist() == [[0, 0, 5, 7], [10, 20, 40, 60], [1.5, 2, 3.5, 9]]
    assert [boxes.class_names[k] for k in boxes.labels] == ["cat", "dog", "cat"]
    expected_classes = ["cat", "dog"] if fmt == "csv" else (list(VOC_CLASSES) if fmt == "voc-xml" else ["cat", "dog"])
    assert boxes.class_names == expected_classes
    assert boxes.difficult.tolist() == ([True, False, False] if fmt == "voc-xml" else [False] * 3)


def test_csv_without_labels_and_voc_with_other_classes(tmp_path):
    (tmp_path / "b.csv").write_text("path,x1,y1,x2,y2\nx.png,1,2,3,4\n\n")
    boxes = read_boxes(tmp_path / "b.csv")
    assert boxes.labels.tolist() == [-1] and boxes.class_names == []
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "1.xml").write_text(voc_xml("1.jpg", [([0, 0, 2, 2], "zebra", False), ([0, 0, 2, 2], "ant", False)]))
    (folder / "2.xml").write_text("<annotation><filename>2.jpg</filename><object><name>ant</name></object>")
    boxes = read_boxes(folder)
    assert boxes.class_names == ["ant", "zebra"] and boxes.labels.tolist() == [1, 0]
    assert boxes.skipped == [("ann/2.xml", "unreadable XML, truncated or not XML (no element found: line 1, "
                                           "column 71); its image is unknown")]
    assert boxes.paths == ["1.jpg"] and boxes.rejected == []  # a truncated file's image is not guessed


@pytest.mark.parametrize("name,content,message", [
    ("b.csv", "file,x,y,w,h\na,1,2,3,4\n", "header must be path,x1,y1,x2,y2 .* or filename,width,height,class,"),
    ("b.csv", "path,x1,y1,x2,y2\nnot-a-path-column\n,1,2,3,4\n",
     r"no readable row in .*b.csv \(line 2 \(not-a-path-column\) has 1 columns, the header 5\)"),
    ("b.json", '{"images": [], "annotations": [{"image_id": 1}]}', r"not COCO JSON boxes \(missing key 'categories'\)"),
    ("b.json", "{not json", "not COCO JSON boxes"),
])
def test_malformed_files_give_one_line_errors(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_boxes(tmp_path / name)
    assert "\n" not in str(info.value)


def test_missing_source_and_wrong_format(tmp_path):
    with pytest.raises(ValueError, match="boxes not found"):
        read_boxes(tmp_path / "nothing.json")
    with pytest.raises(ValueError, match="voc-xml boxes are a folder"):
        read_boxes(write_csv(tmp_path / "b.csv"), "voc-xml")


@pytest.mark.skipif(not (VOC_SAMPLE / "boxes.coco.json").is_file(), reason="VOC 2007 sample not available")
def test_the_voc_sample_boxes():
    boxes = read_boxes(VOC_SAMPLE / "boxes.coco.json")
    assert len(boxes.boxes) == 5161 and len(boxes.paths) == 1680 and boxes.class_names == list(VOC_CLASSES)
    first = json.loads((VOC_SAMPLE / "boxes.coco.json").read_text())["annotations"][0]  # image 12, [155, 96, 195, 173]
    x, y, w, h = first["bbox"]
    assert [x, y, x + w, y + h] in boxes.boxes[boxes.image == boxes.paths.index("000012.jpg")].tolist()
    assert (np.diff(boxes.image) >= 0).all()


def test_a_sound_csv_is_read_at_once_as_row_by_row(tmp_path, monkeypatch):
    """The all-rows path of read_csv gives the row-by-row reader's BoxSet; one bad row sends the
    file row by row, which names it."""
    import sppfeat.data.box_files as box_files

    rng = np.random.default_rng(3)
    lines = ["path,x1,y1,x2,y2,label,score,difficult"]
    for k in range(300):
        x, y = rng.random(2) * 100
        lines.append(f"img{k % 7}.jpg,{x:.2f},{y:.2f},{x + 1 + rng.random() * 50:.2f},{y + 5:.1f},"
                     f"{'cat' if k % 3 else ''},{rng.random():.4f},{k % 2}")
    path = tmp_path / "boxes.csv"
    path.write_text("\n".join(lines) + "\n")
    at_once = read_boxes(path, "csv")
    monkeypatch.setattr(box_files, "_sound_csv", lambda *args: False)
    by_row = read_boxes(path, "csv")
    assert at_once.paths == by_row.paths and at_once.class_names == by_row.class_names == ["cat"]
    for field in ("boxes", "image", "labels", "difficult", "scores"):
        np.testing.assert_array_equal(getattr(at_once, field), getattr(by_row, field))
    monkeypatch.undo()
    path.write_text("\n".join(lines[:5] + ["img1.jpg,10,10,5,20,cat,0.5,0"] + lines[5:]) + "\n")
    mixed = read_boxes(path, "csv")
    assert len(mixed.boxes) == 300
    assert mixed.skipped == [("boxes.csv", "line 6 (img1.jpg, cat) x1 10 > x2 5 (inverted)")]
