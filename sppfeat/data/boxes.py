"""Read object boxes: COCO JSON, a VOC devkit ``Annotations/`` folder of XML files, or CSV.

Internally a box is (x1, y1, x2, y2) in pixels of the image as stored on disk (before any EXIF
orientation), 0-based, half-open: [x1, x2) × [y1, y2). Conversions:
- COCO ``bbox`` [x, y, w, h] -> [x, y, x + w, y + h];
- VOC ``<bndbox>`` 1-based inclusive xmin ymin xmax ymax -> [xmin - 1, ymin - 1, xmax, ymax];
- CSV ``path,x1,y1,x2,y2`` and optional columns ``label``, ``score``, ``difficult`` (0/1), in any
  order after the first five: the internal convention as is. A row with a path and empty
  coordinates names an image without objects.
COCO's ``iscrowd`` (or an ``ignore`` field) and VOC's ``difficult`` mark a box difficult.
With ``keep_empty``, images without boxes (COCO images without annotations, VOC files without
objects, CSV rows without coordinates) are kept, with no boxes (detection's pure negatives).
Whether a box is usable (non-empty, inside the image) is decided with the image's size, later.
"""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .discover import VOC_CLASSES

BOX_FORMATS = ("coco", "voc-xml", "csv")
CSV_COLUMNS = ["path", "x1", "y1", "x2", "y2"]
CSV_OPTIONAL = ("label", "score", "difficult")


@dataclass
class BoxSet:
    """Boxes grouped by image. paths: image paths relative to the image folder, sorted, each once;
    boxes: B×4 float64 (x1, y1, x2, y2) pixels as stored on disk; image: B int64 index into paths,
    non-decreasing (boxes of one image in file order); labels: B int64 index into class_names
    (-1: none); difficult: B bool (VOC, COCO iscrowd); skipped: (file, reason) of unusable annotation
    files; scores: B float64 or None (a CSV score column)."""

    format: str
    paths: list[str]
    boxes: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]]
    scores: np.ndarray | None = None

    def keep_images(self, keep: list[int]) -> "BoxSet":
        """Only the images `keep` (indices into paths, increasing) and their boxes."""
        new_index = np.full(len(self.paths), -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        rows = new_index[self.image] >= 0
        return BoxSet(self.format, [self.paths[i] for i in keep], self.boxes[rows], new_index[self.image[rows]],
                      self.labels[rows], self.difficult[rows], self.class_names, self.skipped,
                      None if self.scores is None else self.scores[rows])


def _box_set(fmt: str, entries: list[tuple[str, list[float], int, bool]], class_names: list[str],
             skipped: list[tuple[str, str]], empty: list[str] = (), scores: list[float] | None = None) -> BoxSet:
    """BoxSet from (image path, box, label, difficult) entries in file order; `empty`: further
    images without boxes; `scores`: one per entry."""
    paths = sorted({entry[0] for entry in entries} | set(empty))
    index = {path: i for i, path in enumerate(paths)}
    image = np.array([index[e[0]] for e in entries], dtype=np.int64)
    order = np.argsort(image, kind="stable")
    boxes = np.array([e[1] for e in entries], dtype=np.float64).reshape(-1, 4)
    labels = np.array([e[2] for e in entries], dtype=np.int64)
    difficult = np.array([e[3] for e in entries], dtype=bool)
    return BoxSet(fmt, paths, boxes[order], image[order], labels[order], difficult[order], class_names, skipped,
                  None if scores is None else np.asarray(scores, dtype=np.float64)[order])


def detect_format(source: Path) -> str:
    """'voc-xml' for a folder, 'coco' for a file starting with '{', else 'csv'."""
    if source.is_dir():
        return "voc-xml"
    with open(source, "rb") as fh:
        return "coco" if fh.read(4096).lstrip()[:1] == b"{" else "csv"


def read_boxes(source: str | os.PathLike, box_format: str = "auto", keep_empty: bool = False) -> BoxSet:
    """The boxes of `source` (a COCO JSON or CSV file, or a folder of VOC XML files); box_format one of
    BOX_FORMATS or 'auto'; keep_empty: keep the images without boxes. ValueError with a one-line
    reason for a missing or malformed source."""
    source = Path(source)
    if not source.exists():
        raise ValueError(f"boxes not found: {source}")
    if box_format not in ("auto", *BOX_FORMATS):
        raise ValueError(f"box_format must be 'auto' or one of {BOX_FORMATS}, got {box_format!r}")
    fmt = detect_format(source) if box_format == "auto" else box_format
    if (fmt == "voc-xml") != source.is_dir():
        raise ValueError(f"{source}: {fmt} boxes are a {'folder' if fmt == 'voc-xml' else 'file'}")
    box_set = {"coco": read_coco, "voc-xml": read_voc_xml, "csv": read_csv}[fmt](source)
    if keep_empty:
        return box_set
    return box_set.keep_images(sorted(set(box_set.image.tolist())))


def read_coco(path: Path) -> BoxSet:
    """COCO JSON: images[].file_name, annotations[].bbox [x, y, w, h], categories (ordered by id)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {image["id"]: image["file_name"] for image in data["images"]}
        categories = sorted(data["categories"], key=lambda c: c["id"])
        label_of = {c["id"]: k for k, c in enumerate(categories)}
        entries = []
        for n, a in enumerate(data["annotations"]):
            if a["image_id"] not in files or a["category_id"] not in label_of:
                raise ValueError(f"annotation {n} names an unknown image or category")
            x, y, w, h = (float(v) for v in a["bbox"])
            crowd = bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0))
            entries.append((files[a["image_id"]], [x, y, x + w, y + h], label_of[a["category_id"]], crowd))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise ValueError(f"{path} is not COCO JSON boxes ({detail})") from None
    return _box_set("coco", entries, [c["name"] for c in categories], [], list(files.values()))


def _voc_objects(path: Path) -> tuple[str, list[tuple[str, list[float], bool]]]:
    """(filename, [(name, box, difficult)]) of one VOC XML file; ValueError when malformed."""
    root = ET.parse(path).getroot()
    filename = root.findtext("filename")
    if not filename:
        raise ValueError("no <filename>")
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None or not obj.findtext("name"):
            raise ValueError("an <object> without <name> or <bndbox>")
        xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append((obj.findtext("name").strip(), [xmin - 1, ymin - 1, xmax, ymax], difficult))
    return filename.strip(), objects


def read_voc_xml(folder: Path) -> BoxSet:
    """A folder of VOC XML files (``Annotations/``); a malformed file is recorded in `skipped`.
    Classes: the 20 VOC classes in the devkit's order when the names are all VOC's, else sorted names."""
    parsed, skipped = [], []
    for path in sorted(folder.glob("*.xml")):
        try:
            parsed.append(_voc_objects(path))
        except (ET.ParseError, OSError, ValueError, TypeError) as exc:
            skipped.append((path.name, f"unreadable annotation ({type(exc).__name__}: {str(exc).splitlines()[0]})"))
    if not parsed:
        raise ValueError(f"no readable VOC XML annotations in {folder}")
    names = {name for _, objects in parsed for name, _, _ in objects}
    class_names = list(VOC_CLASSES) if names <= set(VOC_CLASSES) else sorted(names)
    label_of = {name: k for k, name in enumerate(class_names)}
    entries = [(filename, box, label_of[name], difficult) for filename, objects in parsed
               for name, box, difficult in objects]
    return _box_set("voc-xml", entries, class_names, skipped, [filename for filename, _ in parsed])


def read_csv(path: Path) -> BoxSet:
    """CSV with the header path,x1,y1,x2,y2 and optional label, score and difficult columns; labels
    sorted by name; a row whose coordinates are empty is an image without boxes."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read CSV boxes {path} ({exc})") from None
    header = [column.strip() for column in rows[0]] if rows else []
    extra = header[5:]
    if header[:5] != CSV_COLUMNS or not set(extra) <= set(CSV_OPTIONAL) or len(set(extra)) != len(extra):
        raise ValueError(f"{path}: the CSV header must be {','.join(CSV_COLUMNS)} then any of "
                         f"{','.join(CSV_OPTIONAL)}, got {','.join(header)!r}")
    column = {name: 5 + k for k, name in enumerate(extra)}
    parsed, empty = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            if len(row) != len(header):
                raise ValueError(f"{len(row)} columns")
            if not any(cell.strip() for cell in row[1:5]):
                empty.append(row[0])
                continue
            cell = {name: row[k].strip() for name, k in column.items()}
            parsed.append((row[0], [float(v) for v in row[1:5]], cell.get("label", ""),
                           float(cell["score"]) if "score" in cell else None, _flag(cell.get("difficult", "0"))))
        except ValueError as exc:
            raise ValueError(f"{path}, line {line}: not {','.join(header)} ({exc})") from None
    class_names = sorted({label for _, _, label, _, _ in parsed if label})
    label_of = {name: k for k, name in enumerate(class_names)}
    entries = [(p, box, label_of.get(label, -1), difficult) for p, box, label, _, difficult in parsed]
    scores = [score for _, _, _, score, _ in parsed] if "score" in column else None
    return _box_set("csv", entries, class_names, [], empty, scores)


def _flag(text: str) -> bool:
    """'0'/'1' (also 'true'/'false') -> bool; ValueError otherwise."""
    value = text.strip().lower()
    if value not in ("0", "1", "true", "false", ""):
        raise ValueError(f"difficult must be 0 or 1, got {text!r}")
    return value in ("1", "true")
