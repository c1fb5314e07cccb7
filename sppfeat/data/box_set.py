"""Boxes grouped by image (BoxSet), and the checks every box reader applies to a box as its file
writes it (see sppfeat.data.boxes for the formats).

A box is refused, with a one-line reason in the file's own terms and numbers, when it is not
four finite numbers, has no width or height after its format's conversion (inverted: negative;
zero), or lies entirely outside the image when the image's size is known (from the image itself
when the reader was given the image folder, else from the file: VOC ``<size>``, COCO
``width``/``height``, a CSV's width/height columns). A box partly outside is kept as written
(projections clip it). Zero size is decided on the converted box, so the same pixels get the same
answer in every format: VOC's ``xmin == xmax`` is one pixel wide (inclusive), a CSV's
``x1 == x2`` is zero wide (half-open).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image


class Rejected(NamedTuple):
    """A box a reader refused: the annotation file and reason (also in BoxSet.skipped), the image's
    path, and its area (x1, y1, x2, y2) in pixels as stored when the box is sound but its label or
    flags are not, else None (inverted, zero size, outside the image, unreadable numbers: the
    object is somewhere in the image, nobody knows where)."""

    file: str
    reason: str
    path: str
    box: tuple[float, float, float, float] | None


@dataclass
class BoxSet:
    """Boxes grouped by image. paths: image paths relative to the image folder, sorted, each once;
    boxes: B×4 float64 (x1, y1, x2, y2) pixels as stored on disk; image: B int64 index into paths,
    non-decreasing (boxes of one image in file order); labels: B int64 index into class_names
    (-1: none); difficult: B bool (VOC, COCO iscrowd); skipped: (annotation file, reason) of the
    files, rows and boxes not read; scores: B float64 or None (a CSV score column); rejected: the
    refused boxes whose image is known (their images stay in paths when empty images are kept)."""

    format: str
    paths: list[str]
    boxes: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]]
    scores: np.ndarray | None = None
    rejected: list[Rejected] = field(default_factory=list)

    def keep_images(self, keep: list[int]) -> "BoxSet":
        """Only the images `keep` (indices into paths, increasing) and their boxes."""
        new_index = np.full(len(self.paths), -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        rows = new_index[self.image] >= 0
        paths = [self.paths[i] for i in keep]
        kept = set(paths)
        return BoxSet(self.format, paths, self.boxes[rows], new_index[self.image[rows]],
                      self.labels[rows], self.difficult[rows], self.class_names, self.skipped,
                      None if self.scores is None else self.scores[rows],
                      [r for r in self.rejected if r.path in kept])


@dataclass(frozen=True)
class Convention:
    """How a format writes a box: the names of its four numbers, how they become pixels (x1, y1,
    x2, y2) given the image's (width, height) or None, whether the last two are a width and height
    (else the far corner), and what a zero size means in it."""

    names: tuple[str, str, str, str]
    to_pixels: Callable[[list[float], tuple[int, int] | None], list[float]]
    sizes: bool = False
    zero_note: str = ""


VOC = Convention(("xmin", "ymin", "xmax", "ymax"), lambda v, s: [v[0] - 1, v[1] - 1, v[2], v[3]],
                 zero_note=" in VOC's inclusive pixels, where xmin = xmax is 1 pixel wide")
CORNERS = Convention(("x1", "y1", "x2", "y2"), lambda v, s: list(v))
COCO = Convention(("x", "y", "width", "height"), lambda v, s: [v[0], v[1], v[0] + v[2], v[1] + v[3]], sizes=True)


def number(value: float) -> str:
    """A coordinate as the file would show it (no trailing zeros)."""
    return f"{value:.10g}"


def check_box(values: list[float], convention: Convention,
              size: tuple[int, int] | None) -> tuple[list[float] | None, str | None]:
    """(pixels x1, y1, x2, y2, None) of a box written as `values` in `convention`, or (None, why it
    cannot be used) in the file's terms; size: the image's (width, height) as stored, or None."""
    names = convention.names
    for name, value in zip(names, values):
        if not math.isfinite(value):
            return None, f"{name} {value} is not a finite number"
    box = convention.to_pixels(values, size)
    for axis, side in ((0, "width"), (1, "height")):
        span = box[axis + 2] - box[axis]
        if span > 0:
            continue
        lo, hi = values[axis], values[axis + 2]
        if convention.sizes:
            return None, f"{names[axis + 2]} {number(hi)} ({'negative' if span < 0 else 'zero'} {side})"
        written = f"{names[axis]} {number(lo)} {'>' if lo > hi else '='} {names[axis + 2]} {number(hi)}"
        return None, f"{written} ({'inverted' if span < 0 else f'zero {side}{convention.zero_note}'})"
    if size is not None:
        for axis, side in ((0, "width"), (1, "height")):
            if box[axis] >= size[axis] or box[axis + 2] <= 0:
                return None, (f"{names[axis]} {number(values[axis])}, {names[axis + 2]} {number(values[axis + 2])}: "
                              f"beyond the image's {side} {size[axis]}")
    return box, None


def read_numbers(texts: list[str], names) -> tuple[list[float] | None, str | None]:
    """(the numbers `texts` write, None), or (None, "NAME 'text' is not a number") for the first
    that float() does not read; names: the field of each text."""
    try:
        return [float(text) for text in texts], None
    except ValueError:
        bad = next(k for k, text in enumerate(texts) if not is_number(text))
        return None, f"{names[bad]} {texts[bad].strip()!r} is not a number"


def is_number(text: str) -> bool:
    """Whether float() reads `text`."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def image_size(file: str | Path) -> tuple[int, int] | None:
    """(width, height) of an image as stored (no EXIF rotation), from its header; None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(file) as im:
                return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class ImageSizes:
    """Image sizes for the checks: the image's own under `root` when there is one (cached), else
    the size the annotation file gives."""

    def __init__(self, root: Path | None):
        self.root, self.known = root, {}

    def get(self, path: str, given: tuple[int, int] | None) -> tuple[int, int] | None:
        if self.root is not None:
            if path not in self.known:
                file = self.root / path
                self.known[path] = image_size(file) if file.is_file() else None
            if self.known[path] is not None:
                return self.known[path]
        return given if given is not None and min(given) > 0 else None


class BoxCollector:
    """What a reader found in its files, box by box, checked; `box_set` makes the BoxSet."""

    def __init__(self, fmt: str, sizes: ImageSizes):
        self.fmt, self.sizes = fmt, sizes
        self.entries: list[tuple[str, list[float], str | None, bool, float | None]] = []
        self.images: set[str] = set()
        self.skipped: list[tuple[str, str]] = []
        self.rejected: list[Rejected] = []

    def image(self, path: str) -> None:
        """An image the annotations describe, with or without boxes."""
        self.images.add(path)

    def skip(self, file: str, reason: str) -> None:
        """A file or row that names no usable image."""
        self.skipped.append((file, reason))

    def reject(self, file: str, reason: str, path: str, box: list[float] | None = None) -> None:
        """A refused box of the image `path` (box: its pixels when they are sound)."""
        self.images.add(path)
        self.skipped.append((file, reason))
        self.rejected.append(Rejected(file, reason, path, None if box is None else tuple(map(float, box))))

    def add(self, file: str, where: str, path: str, values: list[float], convention: Convention,
            given: tuple[int, int] | None, label: str | None, difficult: bool = False,
            score: float | None = None, problem: str | None = None) -> None:
        """Check one box (`where`: its place in the file, e.g. 'object 0 (dog)'; given: the image's
        size the file states) and keep it, or reject it; problem: a reason to refuse a box whose
        numbers are sound (its area is then known)."""
        size = self.sizes.get(path, given)
        box, reason = check_box(values, convention, size)
        if reason is not None or problem is not None:
            self.reject(file, f"{where} {reason or problem}", path, box if reason is None else None)
        else:
            self.keep(path, box, label, difficult, score)

    def keep(self, path: str, box: list[float], label: str | None, difficult: bool, score: float | None) -> None:
        """A box already checked: pixels x1, y1, x2, y2 of the image `path`."""
        self.images.add(path)
        self.entries.append((path, box, label, difficult, score))

    def box_set(self, class_names: list[str] | None = None, scores: bool = False) -> BoxSet:
        """The BoxSet; class_names: the classes in order (None: the labels found, sorted); a box
        whose label is not among them (or None) gets -1; scores: keep a score per box."""
        if class_names is None:
            class_names = sorted({e[2] for e in self.entries if e[2]})
        label_of: dict[str, int] = {}
        for k, name in enumerate(class_names):
            label_of.setdefault(name, k)
        paths = sorted(self.images)
        index = {path: i for i, path in enumerate(paths)}
        image = np.array([index[e[0]] for e in self.entries], dtype=np.int64)
        order = np.argsort(image, kind="stable")
        boxes = np.array([e[1] for e in self.entries], dtype=np.float64).reshape(-1, 4)
        labels = np.array([label_of.get(e[2], -1) for e in self.entries], dtype=np.int64)
        difficult = np.array([e[3] for e in self.entries], dtype=bool)
        score = np.array([e[4] for e in self.entries], dtype=np.float64)[order] if scores else None
        return BoxSet(self.fmt, paths, boxes[order], image[order], labels[order], difficult[order], list(class_names),
                      self.skipped, score, self.rejected)
