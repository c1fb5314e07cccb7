"""Boxes refused as they are read, in every format: the reason in the file's own numbers, the
annotation file named, the same pixels given the same answer whatever the format, and the images
of refused boxes kept in `rejected` (with the box's area when its numbers are sound)."""

import json

import pytest
from PIL import Image

from sppfeat.data.boxes import Rejected, read_boxes

# Pixel column 49 of a 500 × 333 image, rows 19..59, written in each format's convention: kept, 1 pixel wide.
ONE_PIXEL = [49, 19, 50, 60]
# The same left edge with no width: refused in every format. (VOC: xmax = xmin - 1; YOLO: width 0.)
WRITTEN = {
    "voc": {"one": (50, 20, 50, 60), "zero": (51, 20, 50, 60)},
    "csv": {"one": (49, 19, 50, 60), "zero": (50, 19, 50, 60)},
    "coco": {"one": (49, 19, 1, 41), "zero": (50, 19, 0, 41)},
    "yolo": {"one": (49.5 / 500, 39.5 / 333, 1 / 500, 41 / 333), "zero": (50 / 500, 39.5 / 333, 0, 41 / 333)},
}
ZERO_REASON = {
    "voc": "xmin 51 > xmax 50 (zero width in VOC's inclusive pixels, where xmin = xmax is 1 pixel wide)",
    "csv": "x1 50 = x2 50 (zero width)",
    "coco": "width 0 (zero width)",
    "yolo": "width 0 (zero width)",
}


def voc_object(name, box, difficult=0):
    xmin, ymin, xmax, ymax = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def write(fmt, tmp_path, boxes):
    """A box file of image a.jpg (500 × 333) holding `boxes` (written numbers), all of class dog."""
    if fmt == "voc":
        (tmp_path / "Annotations").mkdir()
        (tmp_path / "Annotations" / "a.xml").write_text(
            "<annotation><filename>a.jpg</filename><size><width>500</width><height>333</height></size>"
            + "".join(voc_object("dog", b) for b in boxes) + "</annotation>")
        return tmp_path / "Annotations"
    if fmt == "csv":
        (tmp_path / "b.csv").write_text("path,x1,y1,x2,y2,label\n" + "".join(
            "a.jpg," + ",".join(map(str, b)) + ",dog\n" for b in boxes))
        return tmp_path / "b.csv"
    if fmt == "coco":
        (tmp_path / "b.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "a.jpg", "width": 500, "height": 333}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": 10 + n, "image_id": 1, "category_id": 1, "bbox": list(b)}
                            for n, b in enumerate(boxes)]}))
        return tmp_path / "b.json"
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (500, 333)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels" / "classes.txt").write_text("dog\n")
    (tmp_path / "labels" / "a.txt").write_text("".join("0 " + " ".join(map(repr, b)) + "\n" for b in boxes))
    return tmp_path / "labels"


@pytest.mark.parametrize("fmt", list(WRITTEN))
def test_the_same_pixels_get_the_same_answer_in_every_format(tmp_path, fmt):
    boxes = read_boxes(write(fmt, tmp_path, [WRITTEN[fmt]["one"], WRITTEN[fmt]["zero"]]), keep_empty=True)
    assert boxes.paths == ["a.jpg"]
    assert boxes.boxes.tolist() == [pytest.approx(ONE_PIXEL, abs=1e-9)]
    where = {"voc": "object 1 (dog)", "csv": "line 3 (a.jpg, dog)", "coco": "annotation 1 (id 11, a.jpg, dog)",
             "yolo": "line 2 (class 0, dog)"}[fmt]
    file = {"voc": "Annotations/a.xml", "csv": "b.csv", "coco": "b.json", "yolo": "labels/a.txt"}[fmt]
    assert boxes.skipped == [(file, f"{where} {ZERO_REASON[fmt]}")]
    assert boxes.rejected == [Rejected(file, f"{where} {ZERO_REASON[fmt]}", "a.jpg", None)]


@pytest.mark.parametrize("fmt,inverted,outside,reasons", [
    ("voc", (120, 20, 80, 60), (600, 20, 700, 60),
     ["object 1 (dog) xmin 120 > xmax 80 (inverted)",
      "object 2 (dog) xmin 600, xmax 700: beyond the image's width 500"]),
    ("csv", (120, 20, 80, 60), (0, 400, 10, 450),
     ["line 3 (a.jpg, dog) x1 120 > x2 80 (inverted)",
      "line 4 (a.jpg, dog) y1 400, y2 450: beyond the image's height 333"]),
    ("coco", (120, 20, -40, 40), (-50, 20, 40, 40),
     ["annotation 1 (id 11, a.jpg, dog) width -40 (negative width)",
      "annotation 2 (id 12, a.jpg, dog) x -50, width 40: beyond the image's width 500"]),
    ("yolo", (0.5, 0.5, -0.1, 0.1), (1.2, 0.5, 0.2, 0.1),
     ["line 2 (class 0, dog) width -0.1 (negative width)",
      "line 3 (class 0, dog) cx 1.2, width 0.2: beyond the image's width 500"]),
])
def test_inverted_and_outside_boxes_are_refused_with_the_files_numbers(tmp_path, fmt, inverted, outside, reasons):
    good = {"voc": (10, 20, 40, 60), "csv": (9, 19, 40, 60), "coco": (9, 19, 31, 41),
            "yolo": (24.5 / 500, 39.5 / 333, 31 / 500, 41 / 333)}  # each [9, 19, 40, 60] in pixels
    if fmt == "csv":  # a CSV has no image size: the image's own, given the image folder
        Image.new("RGB", (500, 333)).save(tmp_path / "a.jpg")
    boxes = read_boxes(write(fmt, tmp_path, [good[fmt], inverted, outside]), images=tmp_path if fmt == "csv" else None)
    assert boxes.boxes.tolist() == [pytest.approx([9, 19, 40, 60])]
    assert [reason for _, reason in boxes.skipped] == reasons
    assert [r.box for r in boxes.rejected] == [None, None]  # nobody knows where these objects are
    if fmt == "csv":  # without the image, the CSV's box below the image cannot be told
        assert len(read_boxes(tmp_path / "b.csv").boxes) == 2


def test_voc_size_checks_boxes_and_the_image_itself_when_given(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "a.xml").write_text("<annotation><filename>a.jpg</filename>" + voc_object("cat", (60, 1, 70, 10))
                                  + voc_object("cat", (490, 1, 520, 10)) + "</annotation>")  # no <size>
    assert len(read_boxes(folder).boxes) == 2
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    boxes = read_boxes(folder, images=tmp_path)
    # partly beyond the 64 px: kept as written (the projection clips it); nothing of the other is inside
    assert boxes.boxes.tolist() == [[59, 0, 70, 10]]
    assert boxes.skipped == [("ann/a.xml", "object 1 (cat) xmin 490, xmax 520: beyond the image's width 64")]


def test_rows_and_annotations_missing_fields_are_recorded_by_name(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}, {"file_name": "nameless-id.jpg"}],
        "categories": [{"id": 3, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3},
                        {"id": 2, "category_id": 3, "bbox": [0, 0, 5, 5]},
                        {"id": 3, "image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4]},
                        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [1, 2, "x", 4]},
                        {"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}]}))
    boxes = read_boxes(tmp_path / "b.json", keep_empty=True)
    assert boxes.paths == ["a.jpg"] and boxes.boxes.tolist() == [[1, 2, 4, 6]]
    assert boxes.skipped == [
        ("b.json", "images[1] has no id"),
        ("b.json", "annotation 0 (id 1, a.jpg, cat) has no bbox"),
        ("b.json", "annotation 1 has no image_id"),
        ("b.json", "annotation 2 (id 3, a.jpg, no class) category_id 4 is not among the categories"),
        ("b.json", "annotation 3 (id 4, a.jpg, cat) bbox [1, 2, 'x', 4] is not 4 numbers")]
    # the unknown category's box is sound: its area is known; the others' is not
    assert [r.box for r in boxes.rejected] == [None, (1.0, 2.0, 4.0, 6.0), None]
    (tmp_path / "b.csv").write_text("path,x1,y1,x2,y2,label,score\na.jpg,1,2,3,,cat,0.5\na.jpg,1,2,3,4,cat,high\n"
                                    "a.jpg,1,2,3,4,cat,0.5\n,1,2,3,4,cat,1\n")
    boxes = read_boxes(tmp_path / "b.csv")
    assert boxes.boxes.tolist() == [[1, 2, 3, 4]] and boxes.scores.tolist() == [0.5]
    assert boxes.skipped == [("b.csv", "line 2 (a.jpg, cat) has no y2"),
                             ("b.csv", "line 3 (a.jpg, cat) score 'high' is not a number"),
                             ("b.csv", "line 5 has no path")]


def test_a_truncated_xml_is_named_and_the_other_files_read(tmp_path):
    folder = tmp_path / "Annotations"
    folder.mkdir()
    (folder / "000001.xml").write_text("<annotation><filename>000001.jpg</filename>" + voc_object("dog", (1, 1, 9, 9)))
    (folder / "000002.xml").write_text("<annotation><filename>000002.jpg</filename>" + voc_object("dog", (1, 1, 9, 9))
                                       + "</annotation>")
    (folder / "000003.xml").write_text("<annotation>" + voc_object("dog", (1, 1, 9, 9)) + "</annotation>")
    boxes = read_boxes(folder, keep_empty=True)
    assert boxes.paths == ["000002.jpg"] and boxes.boxes.tolist() == [[0, 0, 9, 9]]
    assert [(file, reason.split(" (")[0]) for file, reason in boxes.skipped] == [
        ("Annotations/000001.xml", "unreadable XML, truncated or not XML"),
        ("Annotations/000003.xml", "no <filename>: the image it describes is unknown")]
    (folder / "000002.xml").write_text("<annotation>")
    with pytest.raises(ValueError, match=r"^no readable VOC XML annotations in .*Annotations \(Annotations/000001.xml: "
                                         r"unreadable XML"):
        read_boxes(folder)


def test_labelimg_csv_is_read_as_vocs_pixels(tmp_path):
    """LabelImg-to-CSV scripts copy the XML's numbers: 1-based inclusive, converted as VOC's."""
    (tmp_path / "labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                         "raccoon-1.jpg,650,417,raccoon,81,88,522,408\n"
                                         "raccoon-2.jpg,450,495,raccoon,130,2,446,488\n"
                                         "raccoon-2.jpg,450,495,raccoon,460,2,470,10\n")
    boxes = read_boxes(tmp_path / "labels.csv")
    assert boxes.format == "csv" and boxes.paths == ["raccoon-1.jpg", "raccoon-2.jpg"]
    assert boxes.boxes.tolist() == [[80, 87, 522, 408], [129, 1, 446, 488]] and boxes.class_names == ["raccoon"]
    assert boxes.skipped == [("labels.csv", "line 4 (raccoon-2.jpg, raccoon) xmin 460, xmax 470: "
                                            "beyond the image's width 450")]
    (tmp_path / "other.csv").write_text("class,xmax,ymax,filename,xmin,ymin,width,height\ncat,10,10,c.jpg,1,1,20,20\n")
    assert read_boxes(tmp_path / "other.csv").boxes.tolist() == [[0, 0, 10, 10]]  # columns found by name


def test_difficult_boxes_are_checked_and_kept_difficult(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "a.xml").write_text("<annotation><filename>a.jpg</filename>" + voc_object("dog", (5, 5, 20, 20), 1)
                                  + voc_object("dog", (20, 5, 5, 20), 1) + "</annotation>")
    boxes = read_boxes(folder)
    assert boxes.difficult.tolist() == [True] and boxes.boxes.tolist() == [[4, 4, 20, 20]]
    assert boxes.skipped == [("ann/a.xml", "object 1 (dog) xmin 20 > xmax 5 (inverted)")]
