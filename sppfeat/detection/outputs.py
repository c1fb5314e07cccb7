"""Detection files: CSV ``path,x1,y1,x2,y2,label,score`` (it reads back as a box file) or JSONL with
the same fields, one detection per line; pixels of the image as stored, 0-based, half-open."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from ..storage.hdf5 import partial_path
from .metric import Detections

FIELDS = ["path", "x1", "y1", "x2", "y2", "label", "score"]
FORMATS = (".csv", ".jsonl")


def detection_format(path: str | os.PathLike) -> str:
    """'.csv' or '.jsonl' by the file name; ValueError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"a detections file must end in .csv or .jsonl, got {Path(path).name!r}")
    return suffix


def write_detections(path: str | os.PathLike, rows) -> None:
    """Write Detection rows to `path` (CSV or JSONL by its suffix), under a .partial name until complete."""
    fmt, tmp = detection_format(path), partial_path(path)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        if fmt == ".csv":
            writer = csv.writer(fh)
            writer.writerow(FIELDS)
            for r in rows:
                writer.writerow([r.path, f"{r.x1:.1f}", f"{r.y1:.1f}", f"{r.x2:.1f}", f"{r.y2:.1f}", r.label,
                                 f"{r.score:.5f}"])
        else:
            for r in rows:
                fh.write(json.dumps({"path": r.path, "x1": round(r.x1, 1), "y1": round(r.y1, 1), "x2": round(r.x2, 1),
                                     "y2": round(r.y2, 1), "label": r.label, "score": round(r.score, 5)}) + "\n")
    tmp.replace(path)


def read_detections(path: str | os.PathLike) -> Detections:
    """Detections of a CSV or JSONL file with the fields path,x1,y1,x2,y2,label,score (any order,
    other columns ignored), in file order (the order breaks ties in score, as in the devkit);
    ValueError naming the line at fault otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"detections not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            if path.suffix.lower() == ".jsonl":
                records = [(n, json.loads(line)) for n, line in enumerate(fh, start=1) if line.strip()]
            else:
                reader = csv.DictReader(fh)
                if not set(FIELDS) <= set(reader.fieldnames or []):
                    raise ValueError(f"{path}: detections need the columns {','.join(FIELDS)}")
                records = list(enumerate(reader, start=2))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read detections {path} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON lines ({exc})") from None
    paths, coords, labels, scores = [], [], [], []
    for line_no, row in records:
        try:
            coords.append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
            paths.append(str(row["path"]))
            labels.append(str(row["label"]))
            scores.append(float(row["score"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}, line {line_no}: not a detection with {', '.join(FIELDS)} ({exc})") from None
    return Detections(paths, np.array(coords, dtype=np.float64).reshape(-1, 4), labels, np.array(scores))
