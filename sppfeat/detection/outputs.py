"""Detection files, by suffix:
- ``.csv``: ``path,x1,y1,x2,y2,label,score`` (it reads back as a box file);
- ``.jsonl``: the same fields, one detection per line;
- ``.json``: COCO's results format, a list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
  "score"}``; the ids come from a COCO ground-truth file (its ``images[].file_name`` and
  ``categories[].name``) or, without one, number the images 1..N in sorted path order and the
  classes 1..K in the model's order (CocoIds).
Boxes in pixels of the image as stored, 0-based, half-open ([x, y, w, h] = [x1, y1, x2 - x1, y2 - y1]).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..data.box_files import check_unique
from ..storage.hdf5 import partial_path
from .metric import Detections

FIELDS = ["path", "x1", "y1", "x2", "y2", "label", "score"]
COCO_FIELDS = ["image_id", "category_id", "bbox", "score"]
FORMATS = (".csv", ".jsonl", ".json")


@dataclass
class CocoIds:
    """COCO ids: images {path: image_id}, categories {class name: category_id}."""

    images: dict[str, int]
    categories: dict[str, int]


def numbered_ids(paths: list[str], class_names: list[str]) -> CocoIds:
    """Images 1..N in sorted path order, classes 1..K in the given order."""
    return CocoIds({path: i + 1 for i, path in enumerate(sorted(paths))},
                   {name: k + 1 for k, name in enumerate(class_names)})


def read_coco_ids(path: str | os.PathLike) -> CocoIds:
    """The ids of a COCO ground-truth file (images[].file_name -> id, categories[].name -> id);
    ValueError when it is not one, or gives an id, file name or category name twice."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        ids = CocoIds({str(image["file_name"]): int(image["id"]) for image in data["images"]},
                      {str(c["name"]): int(c["id"]) for c in data["categories"]})
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise ValueError(f"{path} is not COCO JSON with images and categories ({detail})") from None
    images, categories = data["images"], data["categories"]
    for entries, key, what in ((images, "id", "image id"), (images, "file_name", "file_name"),
                               (categories, "id", "category id"), (categories, "name", "category name")):
        check_unique(path, entries, key, what)
    return ids


def coco_ids_for(output: str | os.PathLike | None, coco_ids: str | os.PathLike | None, paths: list[str],
                 class_names: list[str]) -> CocoIds | None:
    """The ids `detect` writes a .json output with: those of the COCO file `coco_ids` (every
    image of `paths` and class of `class_names` must be in it), else numbered_ids; None for
    another output. ValueError otherwise, before any work."""
    if output is None or detection_format(output) != ".json":
        if coco_ids is not None:
            raise ValueError("coco_ids=FILE is for an output ending in .json (COCO results)")
        return None
    if coco_ids is None:
        return numbered_ids(paths, class_names)
    ids = read_coco_ids(coco_ids)
    absent = [path for path in paths if path not in ids.images]
    if absent:
        raise ValueError(f"{len(absent)} of the {len(paths)} images are not among the images of {coco_ids} "
                         f"(file_name), e.g. {absent[0]}")
    absent = [name for name in class_names if name not in ids.categories]
    if absent:
        raise ValueError(f"classes of the model are not among the categories of {coco_ids}: {', '.join(absent)}")
    return ids


def detection_format(path: str | os.PathLike) -> str:
    """'.csv', '.jsonl' or '.json' by the file name; ValueError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"a detections file must end in .csv or .jsonl (or .json: COCO results), "
                         f"got {Path(path).name!r}")
    return suffix


def write_detections(path: str | os.PathLike, rows, coco_ids: CocoIds | None = None) -> None:
    """Write Detection rows to `path` (by its suffix; .json needs `coco_ids` holding every row's
    path and label), under a .partial name until complete."""
    fmt, tmp = detection_format(path), partial_path(path)
    if fmt == ".json" and coco_ids is None:
        raise ValueError(f"{path}: COCO results need coco_ids")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        if fmt == ".csv":
            writer = csv.writer(fh)
            writer.writerow(FIELDS)
            for r in rows:
                writer.writerow([r.path, f"{r.x1:.1f}", f"{r.y1:.1f}", f"{r.x2:.1f}", f"{r.y2:.1f}", r.label,
                                 f"{r.score:.5f}"])
        elif fmt == ".jsonl":
            for r in rows:
                fh.write(json.dumps({"path": r.path, "x1": round(r.x1, 1), "y1": round(r.y1, 1), "x2": round(r.x2, 1),
                                     "y2": round(r.y2, 1), "label": r.label, "score": round(r.score, 5)}) + "\n")
        else:
            results = []
            for r in rows:
                x1, y1, x2, y2 = (round(v, 1) for v in (r.x1, r.y1, r.x2, r.y2))
                results.append(json.dumps({"image_id": coco_ids.images[r.path],
                                           "category_id": coco_ids.categories[r.label],
                                           "bbox": [x1, y1, round(x2 - x1, 1), round(y2 - y1, 1)],
                                           "score": round(r.score, 5)}))
            fh.write("[\n" + ",\n".join(results) + ("\n]\n" if results else "]\n"))
    tmp.replace(path)


def _number(value, name: str) -> float:
    """A finite float; ValueError naming the field otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return number


def _missing(row, fields: list[str]) -> None:
    """ValueError unless `row` is a dict holding every field (a short CSV row holds None)."""
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    missing = [name for name in fields if row.get(name) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")


def _detection(row) -> tuple[str, list[float], str, float]:
    """(path, box, label, score) of a CSV or JSONL record."""
    _missing(row, FIELDS)
    return (str(row["path"]), [_number(row[k], k) for k in ("x1", "y1", "x2", "y2")], str(row["label"]),
            _number(row["score"], "score"))


def _coco_result(item, paths: dict[int, str], names: dict[int, str]) -> tuple[str, list[float], str, float]:
    """(path, box, label, score) of a COCO result, its ids mapped by `paths` and `names`."""
    _missing(item, COCO_FIELDS)
    if not isinstance(item["bbox"], list) or len(item["bbox"]) != 4:
        raise ValueError(f"bbox {item['bbox']!r} is not [x, y, w, h]")
    x, y, w, h = (_number(v, "bbox") for v in item["bbox"])
    if item["image_id"] not in paths:
        raise ValueError(f"image_id {item['image_id']!r} is not an image of the ground truth")
    if item["category_id"] not in names:
        raise ValueError(f"category_id {item['category_id']!r} is not a category of the ground truth")
    return paths[item["image_id"]], [x, y, x + w, y + h], names[item["category_id"]], _number(item["score"], "score")


def read_detections(path: str | os.PathLike, coco_ids: CocoIds | None = None) -> Detections:
    """Detections of a CSV or JSONL file with the fields path,x1,y1,x2,y2,label,score (any order,
    other columns ignored), or of COCO results (.json; needs the `coco_ids` they were numbered
    with), in file order (the order breaks ties in score, as in the devkit); ValueError naming the
    line (or results[n]) at fault, a missing field or a score or coordinate that is not finite."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"detections not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json" and coco_ids is None:
        raise ValueError(f"{path}: COCO results name images and classes by number; reading them needs the COCO "
                         f"ground truth that numbered them")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            if suffix == ".json":
                data = json.load(fh)
                if not isinstance(data, list):
                    raise ValueError(f"{path}: COCO results are a JSON list of detections")
                records = [(f"results[{n}]", item) for n, item in enumerate(data)]
            elif suffix == ".jsonl":
                records = [(f"line {n}", json.loads(line)) for n, line in enumerate(fh, start=1) if line.strip()]
            else:
                reader = csv.DictReader(fh)
                if not set(FIELDS) <= set(reader.fieldnames or []):
                    raise ValueError(f"{path}: detections need the columns {','.join(FIELDS)}")
                records = [(f"line {n}", row) for n, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read detections {path} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not {'JSON' if suffix == '.json' else 'JSON lines'} ({exc})") from None
    parse = _detection
    if suffix == ".json":
        parse = partial(_coco_result, paths={i: p for p, i in coco_ids.images.items()},
                        names={i: name for name, i in coco_ids.categories.items()})
    paths, coords, labels, scores = [], [], [], []
    for where, row in records:
        try:
            p, box, label, score = parse(row)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}, {where}: not a detection: {exc}") from None
        paths.append(p)
        coords.append(box)
        labels.append(label)
        scores.append(score)
    return Detections(paths, np.array(coords, dtype=np.float64).reshape(-1, 4), labels, np.array(scores))
