"""The readers of COCO JSON, VOC XML folders and CSV boxes (formats: sppfeat.data.boxes). Each
records what it cannot use as (annotation file, reason) and goes on with the rest; a source with
nothing readable at all is a ValueError."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .box_set import COCO, CORNERS, VOC, BoxCollector, BoxSet, ImageSizes, is_number, read_numbers
from .discover import VOC_CLASSES

CSV_COLUMNS = ["path", "x1", "y1", "x2", "y2"]
CSV_OPTIONAL = ("label", "score", "difficult")
LABELIMG_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


def check_unique(path, entries: list, key: str, what: str) -> None:
    """ValueError naming `path` when two of the dicts `entries` have the same `key` (ids or names
    that would silently move boxes to another image or class)."""
    seen = set()
    for entry in entries:
        value = entry.get(key) if isinstance(entry, dict) else None
        if not isinstance(value, (int, float, str)):
            continue
        if value in seen:
            raise ValueError(f"{path}: {what} {value!r} is used twice")
        seen.add(value)


def read_coco(path: Path, sizes: ImageSizes) -> BoxSet:
    """COCO JSON: images[].file_name (and width, height), annotations[].bbox [x, y, w, h],
    categories (classes in id order); iscrowd or ignore: difficult."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        images, annotations = data["images"], data["annotations"]
        categories = sorted(data["categories"], key=lambda c: c["id"])
        names = {c["id"]: str(c["name"]) for c in categories}
        if not isinstance(images, list) or not isinstance(annotations, list):
            raise ValueError("images and annotations must be lists")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise ValueError(f"{path} is not COCO JSON boxes ({detail})") from None
    for entries, key, what in ((categories, "id", "category id"), (categories, "name", "category name"),
                               (images, "id", "image id")):
        check_unique(path, entries, key, what)
    found, file = BoxCollector("coco", sizes), path.name
    files, given = {}, {}
    for n, im in enumerate(images):
        missing = [key for key in ("id", "file_name") if not isinstance(im, dict) or im.get(key) in (None, "")]
        if missing or not isinstance(im["id"], (int, str)):
            found.skip(file, f"images[{n}] has no {missing[0] if missing else 'usable id'}")
            continue
        files[im["id"]] = str(im["file_name"])
        w, h = im.get("width"), im.get("height")
        given[im["id"]] = (w, h) if all(isinstance(v, (int, float)) for v in (w, h)) else None
        found.image(files[im["id"]])
    for n, a in enumerate(annotations):
        image_id = a.get("image_id") if isinstance(a, dict) else None
        if image_id is None:
            found.skip(file, f"annotation {n} has no image_id")
            continue
        image = files.get(image_id) if isinstance(image_id, (int, str)) else None
        if image is None:
            found.skip(file, f"annotation {n}: image_id {image_id!r} is not among the images")
            continue
        category = a.get("category_id")
        name = names.get(category) if isinstance(category, (int, str)) else None
        where = f"annotation {n} (id {a.get('id')}, {image}, {name or 'no class'})"
        problem = None if name is not None else (
            "has no category_id" if category is None else f"category_id {category!r} is not among the categories")
        try:
            if any(isinstance(v, bool) for v in a["bbox"]):
                raise ValueError
            values = [float(v) for v in a["bbox"]]
            if len(values) != 4:
                raise ValueError
        except KeyError:
            found.reject(file, f"{where} has no bbox", image)
            continue
        except (TypeError, ValueError):
            found.reject(file, f"{where} bbox {a['bbox']!r} is not 4 numbers", image)
            continue
        flags = [a.get(key) or 0 for key in ("iscrowd", "ignore")]  # absent or null: 0
        if any(flag not in (0, 1) for flag in flags):  # True and False are 1 and 0
            problem = problem or f"iscrowd {flags[0]!r} or ignore {flags[1]!r} is not 0 or 1"
        crowd = any(flags)
        found.add(file, where, image, values, COCO, given[image_id], name, crowd, problem=problem)
    return found.box_set([names[c["id"]] for c in categories])


def _voc_size(root: ET.Element) -> tuple[int, int] | None:
    """(width, height) of a VOC file's <size>, or None when absent or not numbers."""
    try:
        return int(float(root.findtext("size/width"))), int(float(root.findtext("size/height")))
    except (TypeError, ValueError):
        return None


def read_voc_xml(folder: Path, sizes: ImageSizes) -> BoxSet:
    """A folder of VOC XML files (``Annotations/``): <filename>, <size>, and per <object> <name>,
    <difficult>, <bndbox> (1-based inclusive xmin ymin xmax ymax). Classes: the 20 VOC classes in
    the devkit's order when the names are all VOC's, else the names sorted. Files are named
    FOLDER/FILE.xml in the skipped list."""
    found, n_read = BoxCollector("voc-xml", sizes), 0
    for path in sorted(folder.glob("*.xml")):
        file = f"{folder.name}/{path.name}"
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            found.skip(file, f"unreadable XML, truncated or not XML ({exc}); its image is unknown")
            continue
        except OSError as exc:
            found.skip(file, f"unreadable ({exc.strerror or exc}); its image is unknown")
            continue
        filename = (root.findtext("filename") or "").strip()
        if not filename:
            found.skip(file, "no <filename>: the image it describes is unknown")
            continue
        n_read += 1
        found.image(filename)
        given = _voc_size(root)
        for k, obj in enumerate(root.iter("object")):
            name = (obj.findtext("name") or "").strip()
            where = f"object {k}" + (f" ({name})" if name else "")
            texts = [obj.findtext(f"bndbox/{tag}") for tag in VOC.names]
            if None in texts:
                found.reject(file, f"{where} has no <{VOC.names[texts.index(None)]}> in a <bndbox>", filename)
                continue
            values, problem = read_numbers(texts, VOC.names)
            if problem:
                found.reject(file, f"{where} {problem}", filename)
                continue
            flag = (obj.findtext("difficult") or "0").strip()
            problem = ("has no <name>" if not name else None if flag in ("0", "1") else
                       f"<difficult> {flag!r} is not 0 or 1")
            found.add(file, where, filename, values, VOC, given, name, flag == "1", problem=problem)
    if not n_read:
        first = f" ({found.skipped[0][0]}: {found.skipped[0][1]})" if found.skipped else ""
        raise ValueError(f"no readable VOC XML annotations in {folder}{first}")
    names = {e[2] for e in found.entries}
    return found.box_set(list(VOC_CLASSES) if names <= set(VOC_CLASSES) else None)


def read_csv(path: Path, sizes: ImageSizes) -> BoxSet:
    """CSV with the header path,x1,y1,x2,y2 and any of label, score, difficult (pixels as sppfeat
    keeps them; labels sorted by name; a row with a path and no coordinates: an image without
    boxes), or LabelImg-to-CSV's filename,width,height,class,xmin,ymin,xmax,ymax in any order (VOC's
    1-based inclusive pixels, converted as VOC XML is; width and height: the image's size)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read CSV boxes {path} ({exc})") from None
    header = [column.strip() for column in rows[0]] if rows else []
    extra = header[5:]
    if sorted(header) == sorted(LABELIMG_COLUMNS):
        columns = {"path": "filename", "label": "class", "width": "width", "height": "height",
                   **{name: name for name in VOC.names}}
        convention = VOC
    elif header[:5] == CSV_COLUMNS and set(extra) <= set(CSV_OPTIONAL) and len(set(extra)) == len(extra):
        columns, convention = {name: name for name in header}, CORNERS
    else:
        raise ValueError(f"{path}: the CSV header must be {','.join(CSV_COLUMNS)} then any of "
                         f"{','.join(CSV_OPTIONAL)} (0-based half-open pixels), or "
                         f"{','.join(LABELIMG_COLUMNS)} (LabelImg's CSV, VOC's 1-based inclusive pixels), "
                         f"got {','.join(header)!r}")
    index = {key: header.index(name) for key, name in columns.items()}
    found = BoxCollector("csv", sizes)
    if convention is CORNERS and sizes.root is None and _sound_csv(found, rows[1:], index, len(header)):
        return found.box_set(scores="score" in index)
    for line, row in enumerate(rows[1:], start=2):
        if any(cell.strip() for cell in row):
            _csv_row(found, path.name, line, [cell.strip() for cell in row], index, len(header), convention)
    if found.skipped and not found.entries and found.images <= {r.path for r in found.rejected}:
        raise ValueError(f"no readable row in {path} ({found.skipped[0][1]})")
    return found.box_set(scores="score" in index)


def _sound_csv(found: BoxCollector, rows: list[list[str]], index: dict[str, int], width: int) -> bool:
    """Every row of a path,x1,y1,x2,y2[,...] CSV into `found` at once, when every one is sound (a
    path, finite numbers, a positive width and height, a difficult flag of 0 or 1): a proposal file
    of 20,000 windows is read in a fraction of the row-by-row check's time. False (nothing added)
    when any row is not: the row-by-row check then names it."""
    body = [[cell.strip() for cell in row] for row in rows if any(cell.strip() for cell in row)]
    if any(len(row) != width or not row[index["path"]] for row in body):
        return False
    try:
        boxes = np.array([[row[index[k]] for k in CORNERS.names] for row in body]).astype(np.float64)
        scores = (np.array([row[index["score"]] for row in body]).astype(np.float64) if "score" in index
                  else np.full(len(body), np.nan))
    except ValueError:
        return False
    flags = {row[index["difficult"]].lower() for row in body} if "difficult" in index else set()
    boxes = boxes.reshape(-1, 4)
    if not flags <= {"0", "1", "true", "false", ""} or not np.isfinite(boxes).all() or \
            not ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all():
        return False
    labels = [row[index["label"]] or None if "label" in index else None for row in body]
    difficult = [row[index["difficult"]].lower() in ("1", "true") if flags else False for row in body]
    for row, box, label, hard, score in zip(body, boxes.tolist(), labels, difficult, scores.tolist()):
        found.keep(row[index["path"]], box, label, hard, score)
    return True


def _csv_row(found: BoxCollector, file: str, line: int, row: list[str], index: dict[str, int], width: int,
             convention) -> None:
    """One CSV row into `found` (index: column of each field)."""
    image = row[index["path"]] if index["path"] < len(row) else ""
    path_column = "filename" if convention is VOC else "path"
    if not image:
        found.skip(file, f"line {line} has no {path_column}")
        return
    if len(row) != width:
        found.reject(file, f"line {line} ({image}) has {len(row)} columns, the header {width}", image)
        return
    cell = {key: row[k] for key, k in index.items()}
    label = cell.get("label", "")
    where = f"line {line} ({image}{', ' + label if label else ''})"
    texts = [cell[name] for name in convention.names]
    if not any(texts) and convention is CORNERS:
        found.image(image)
        return
    for name, text in zip(convention.names, texts):
        if not text or not is_number(text):
            problem = f"has no {name}" if not text else f"{name} {text!r} is not a number"
            found.reject(file, f"{where} {problem}", image)
            return
    given, problems = None, []
    if "width" in cell:
        if all(is_number(cell[k]) for k in ("width", "height")):
            given = (int(float(cell["width"])), int(float(cell["height"])))
        else:
            problems.append(f"width {cell['width']!r} or height {cell['height']!r} is not a number")
    score = None
    if "score" in cell:
        if is_number(cell["score"]):
            score = float(cell["score"])
        else:
            problems.append(f"score {cell['score']!r} is not a number")
    difficult = cell.get("difficult", "0").lower()
    if difficult not in ("0", "1", "true", "false", ""):
        problems.append(f"difficult {cell['difficult']!r} is not 0 or 1")
    found.add(file, where, image, [float(t) for t in texts], convention, given, label or None,
              difficult in ("1", "true"), score, "; ".join(problems) or None)
