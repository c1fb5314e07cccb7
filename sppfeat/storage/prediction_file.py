"""Prediction files: one row per image as CSV or JSON lines, written as the rows come.

Columns (the same keys in both formats, from :meth:`Prediction.columns`):
    path            the image, relative to the input folder
    predicted       the class (single-label; empty when below --threshold), or the classes above
                    their threshold (multi-label: ';'-separated in CSV, a list in JSON)
    score           the best class's SVM margin
    top2, top2_score, ... topK, topK_score     the next best classes (with --top-k K)
    score_<class>   every class's margin (multi-label models)
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TextIO

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


def prediction_format(path: str | os.PathLike) -> str:
    """'csv' or 'jsonl' from the file name; ValueError for any other ending."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"a prediction file must end in .csv or .jsonl, got {os.fspath(path)!r}")
    return FORMATS[suffix]


class PredictionWriter:
    """Appends rows (dicts of :meth:`Prediction.columns`) to `path`, flushed after every call so that
    an interrupted run leaves whole rows. The file is created by the first rows (none: no file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = prediction_format(path)
        self.handle: TextIO | None = None
        self.csv: csv.DictWriter | None = None
        self.n_rows = 0

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.handle is None:
            self.handle = open(self.path, "w", newline="", encoding="utf-8")
            if self.format == "csv":
                self.csv = csv.DictWriter(self.handle, fieldnames=list(rows[0]))
                self.csv.writeheader()
        for row in rows:
            if self.csv is not None:
                self.csv.writerow({key: _csv_value(value) for key, value in row.items()})
            else:
                self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()
        self.n_rows += len(rows)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _csv_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ";".join(value)
    return str(value)
