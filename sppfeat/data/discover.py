"""Find the images of a data set and their labels, in a deterministic order.

Readers: ``folder`` (first-level subfolders are classes; a flat folder is unlabeled),
``caltech101`` (the 101_ObjectCategories layout: all 102 folders, BACKGROUND_Google included) and
``voc2007`` (a VOCdevkit/VOC2007 folder; multi-label targets from ImageSets/Main).
What is an image is decided by content (magic bytes), not by extension; annotation files beside
the images (x.xml or x.txt beside x.jpg, classes.txt, data.yaml) are neither listed nor skipped.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .decode import SNIFF_BYTES, sniff_format

DATASETS = ("auto", "folder", "caltech101", "voc2007")
VOC_SPLITS = ("train", "val", "trainval", "test")
ANNOTATION_SUFFIXES = (".xml", ".txt", ".json")
ANNOTATION_NAMES = ("classes.txt", "data.yaml", "data.yml")
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)


@dataclass
class ImageList:
    """What to extract. paths: relative to root, '/'-separated, in row order; labels: class index
    per path (-1 = unlabeled); targets: N×K int8 (1 positive, -1 negative, 0 difficult) for
    multi-label data sets, else None; skipped: (path, reason) for files rejected while listing;
    files: the same paths as the file system spells them (they differ from `paths` only for names
    that are not valid UTF-8, which `paths` shows with \\xNN escapes); empty = same as paths;
    split: the VOC image set listed (None for other readers)."""

    root: Path
    dataset: str
    paths: list[str]
    labels: list[int]
    class_names: list[str]
    targets: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    split: str | None = None

    def file(self, index: int) -> str:
        """The path to open for image `index`."""
        return os.path.join(self.root, self.files[index] if self.files else self.paths[index])


def display_path(path: str | os.PathLike) -> str:
    """A file name as valid UTF-8 text (undecodable bytes shown as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_image_file(path: str) -> str | None:
    """None if `path` looks like an image, else the reason to skip it."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(SNIFF_BYTES)
    except PermissionError:
        return "unreadable: permission denied"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if not header:
        return "empty file (0 bytes)"
    if sniff_format(header) is None:
        return "not an image (unrecognised content)"
    return None


def _walk_sorted(root: str, skipped: list[tuple[str, str]]):
    """Yield file paths under root in sorted order, following symlinks but never into a loop."""
    seen: set[str] = set()

    def walk(directory: str):
        real = os.path.realpath(directory)
        if real in seen:
            skipped.append((display_path(os.path.relpath(directory, root)), "symlink loop (folder already visited)"))
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            skipped.append((display_path(os.path.relpath(directory, root)), f"unreadable folder: {exc.strerror}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files and folders (.DS_Store, .git) are not data
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                yield from walk(entry.path)
            elif os.path.islink(entry.path) and not os.path.exists(entry.path):
                skipped.append((display_path(os.path.relpath(entry.path, root)), "broken symlink"))
            elif not entry.is_file():  # FIFOs, sockets, devices: opening one could block forever
                skipped.append((display_path(os.path.relpath(entry.path, root)), "not a regular file"))
            else:
                yield entry.path

    yield from walk(root)


def _is_annotation(rel: str, images: set[tuple[str, str]]) -> bool:
    """Whether the non-image file `rel` is an annotation file: a label file beside its image (same
    name, ANNOTATION_SUFFIXES: LabelImg's VOC XML or YOLO txt, LabelMe's JSON) or one of
    ANNOTATION_NAMES (YOLO's class names)."""
    folder, name = posixpath.split(rel)
    stem, suffix = posixpath.splitext(name)
    return name in ANNOTATION_NAMES or (suffix.lower() in ANNOTATION_SUFFIXES and (folder, stem) in images)


def list_folder(root: str | os.PathLike, dataset: str = "folder") -> ImageList:
    """Every image under `root`, sorted; the first-level subfolder is the label. Annotation files
    (see _is_annotation) are not listed among the skipped files."""
    root = Path(root)
    skipped: list[tuple[str, str]] = []
    paths, files, label_names = [], [], []
    for path in _walk_sorted(str(root), skipped):
        rel = display_path(os.path.relpath(path, root)).replace(os.sep, "/")
        reason = check_image_file(path)
        if reason:
            skipped.append((rel, reason))
            continue
        paths.append(rel)
        files.append(os.path.relpath(path, root))
        label_names.append(rel.split("/")[0] if "/" in rel else None)
    images = {(posixpath.dirname(rel), posixpath.splitext(posixpath.basename(rel))[0]) for rel in paths}
    skipped = [(rel, reason) for rel, reason in skipped
               if not (reason.startswith("not an image") and _is_annotation(rel, images))]
    class_names = sorted({name for name in label_names if name is not None})
    index = {name: i for i, name in enumerate(class_names)}
    labels = [index[name] if name is not None else -1 for name in label_names]
    return ImageList(root, dataset, paths, labels, class_names, skipped=skipped, files=files)


def list_file(path: str | os.PathLike) -> ImageList:
    """One image file as an unlabeled list of one (its folder is the root); ValueError if it is not an image."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    reason = check_image_file(str(path))
    if reason:
        raise ValueError(f"{path}: {reason}")
    return ImageList(path.parent, "folder", [display_path(path.name)], [-1], [], files=[path.name])


def find_voc_root(root: str | os.PathLike) -> Path | None:
    """The VOC2007 folder (holding ImageSets/Main and JPEGImages) at or just below `root`."""
    root = Path(root)
    for candidate in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (candidate / "ImageSets" / "Main").is_dir() and (candidate / "JPEGImages").is_dir():
            return candidate
    return None


def list_voc2007(root: str | os.PathLike, split: str) -> ImageList:
    """The images of one devkit split with their 20-class targets (1, -1, 0 = difficult)."""
    if split not in VOC_SPLITS:
        raise ValueError(f"VOC split must be one of {VOC_SPLITS}, got {split!r}")
    voc = find_voc_root(root)
    if voc is None:
        raise ValueError(f"{root} is not a VOC2007 folder (no ImageSets/Main and JPEGImages)")
    main = voc / "ImageSets" / "Main"
    split_file = main / f"{split}.txt"
    if not split_file.is_file():
        raise ValueError(f"VOC split file missing: {split_file}")
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    row = {image_id: i for i, image_id in enumerate(ids)}
    targets = np.full((len(ids), len(VOC_CLASSES)), -1, dtype=np.int8)
    for k, name in enumerate(VOC_CLASSES):
        class_file = main / f"{name}_{split}.txt"
        if not class_file.is_file():
            raise ValueError(f"VOC label file missing: {class_file}")
        for line in class_file.read_text().splitlines():
            parts = line.split()
            if len(parts) != 2 or parts[0] not in row or parts[1] not in ("1", "-1", "0"):
                if line.strip():
                    raise ValueError(f"bad line in {class_file}: {line!r}")
                continue
            targets[row[parts[0]], k] = int(parts[1])
    paths, keep, skipped = [], [], []
    for i, image_id in enumerate(ids):
        rel = f"JPEGImages/{image_id}.jpg"
        reason = check_image_file(str(voc / rel)) if (voc / rel).exists() else "missing file"
        if reason:
            skipped.append((rel, reason))
        else:
            paths.append(rel)
            keep.append(i)
    return ImageList(voc, "voc2007", paths, [-1] * len(paths), list(VOC_CLASSES), targets[keep], skipped,
                     split=split)


def detect_dataset(root: str | os.PathLike) -> str:
    """'voc2007' for a devkit folder, 'caltech101' for 101_ObjectCategories, else 'folder'."""
    root = Path(root)
    if find_voc_root(root) is not None:
        return "voc2007"
    if root.name == "101_ObjectCategories" or (root / "BACKGROUND_Google").is_dir():
        return "caltech101"
    return "folder"


def list_images(root: str | os.PathLike, dataset: str = "auto", split: str | None = None) -> ImageList:
    """Dispatch to the reader for `dataset` ('auto' detects it); `root` may also be one image file
    (dataset 'auto' or 'folder', no split; see list_file). Raises ValueError on bad input."""
    root = Path(root)
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if root.is_file() and dataset in ("auto", "folder") and split is None:
        return list_file(root)
    if root.is_file():
        raise ValueError(f"{root} is a file: one image is read with dataset='folder' and no split")
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root}")
    if dataset == "auto":
        dataset = detect_dataset(root)
    if dataset == "voc2007":
        return list_voc2007(root, split or "trainval")
    if split is not None:
        raise ValueError(f"split={split!r} applies to voc2007 only")
    return list_folder(root, dataset)
