"""YOLO txt labels: a folder of ``<image>.txt`` files, one line ``class cx cy width height`` per
box, normalised by the image's width and height (to [0, 1]); the class names from a
``classes.txt`` (one per line; LabelImg) or a ``data.yaml`` ``names:`` (Ultralytics), in the
labels folder or one of the two above it.

A label file stands for the image of the same name without extension, looked for in the image
folder the reader is given (training), Ultralytics' sibling folder (``labels`` -> ``images`` in
the path: ``d/labels/train/x.txt`` -> ``d/images/train/x.jpg``), and beside the label (LabelImg).
Its size as stored (no EXIF rotation; PIL reads the header only) turns the numbers into pixels:
x1 = (cx - width / 2) · W, x2 = (cx + width / 2) · W, the same for y with H.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .box_set import BoxCollector, BoxSet, Convention, ImageSizes, image_size, read_numbers

NAME_FILES = ("classes.txt", "data.yaml", "data.yml")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm", ".pnm")
YOLO = Convention(("cx", "cy", "width", "height"),
                  lambda v, s: [(v[0] - v[2] / 2) * s[0], (v[1] - v[3] / 2) * s[1],
                                (v[0] + v[2] / 2) * s[0], (v[1] + v[3] / 2) * s[1]], sizes=True)


def names_file(folder: Path) -> Path | None:
    """The classes.txt or data.yaml of a labels folder: in it or in one of the two folders above."""
    for place in (folder, folder.parent, folder.parent.parent):
        for name in NAME_FILES:
            if (place / name).is_file():
                return place / name
    return None


def label_files(folder: Path) -> list[Path]:
    """The label files of a folder, sorted (classes.txt is not one)."""
    return sorted(p for p in folder.glob("*.txt") if p.name != "classes.txt" and p.is_file())


def read_class_names(path: Path) -> list[str]:
    """The class names of a classes.txt or data.yaml, in class-index order; ValueError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.name == "classes.txt":
            names = [line.strip() for line in text.strip("\r\n").splitlines()]
            if "" in names:
                raise ValueError(f"line {names.index('') + 1} is empty")
        else:
            names = yaml_names(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"cannot read the class names in {path} ({exc})") from None
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path}: " + ("no class names" if not names else
                                        f"class {next(n for n in names if names.count(n) > 1)!r} is named twice"))
    return names


def _strip_comment(line: str) -> str:
    """A YAML line without its # comment (a # at the start or after a space, outside quotes)."""
    quote = None
    for k, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def _split(flow: str) -> list[str]:
    """The items of a YAML flow list or mapping body, split at commas outside quotes."""
    items, quote, start = [], None, 0
    for k, char in enumerate(flow + ","):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            items.append(flow[start:k].strip())
            start = k + 1
    return [item for item in items if item]


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def yaml_names(text: str) -> list[str]:
    """The ``names:`` of a data.yaml, in its simple forms: a list (``[a, b]`` or ``- a`` lines) or
    an index -> name mapping (``{0: a}`` or ``0: a`` lines). ValueError otherwise."""
    lines = [_strip_comment(line).rstrip() for line in text.splitlines()]
    start = next((k for k, line in enumerate(lines) if re.match(r"names\s*:", line)), None)
    if start is None:
        raise ValueError("no 'names:' key")
    rest, end = lines[start].split(":", 1)[1].strip(), start + 1
    if rest:
        while rest.count("[") + rest.count("{") > rest.count("]") + rest.count("}") and end < len(lines):
            rest, end = rest + " " + lines[end].strip(), end + 1
        if rest[0] + rest[-1] not in ("[]", "{}"):
            raise ValueError(f"names: {rest!r} is neither a list nor a mapping")
        items = _split(rest[1:-1])
        pairs = [item.split(":", 1) for item in items] if rest[0] == "{" else None
        return _mapping(pairs) if pairs is not None else [_scalar(item) for item in items]
    block = []
    for line in lines[end:]:
        if line and not line[0].isspace() and not line.startswith("-"):
            break
        if line.strip():
            block.append(line.strip())
    if block and all(item.startswith("-") for item in block):
        return [_scalar(item[1:]) for item in block]
    if block and all(":" in item for item in block):
        return _mapping([item.split(":", 1) for item in block])
    raise ValueError("names: is neither a list nor an index: name mapping")


def _mapping(pairs: list[list[str]]) -> list[str]:
    """Names in index order from (index, name) pairs; the indices must be 0 .. n - 1."""
    if any(len(pair) != 2 or not _scalar(pair[0]).isdigit() for pair in pairs):
        raise ValueError("names: mapping keys must be class indices")
    by_index = {int(_scalar(key)): _scalar(name) for key, name in pairs}
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(f"names: indices {sorted(by_index)} are not 0 to {len(by_index) - 1}")
    return [by_index[k] for k in range(len(by_index))]


class ImageFinder:
    """The image of each label file: same name without extension, in the first of `folders` that
    has one (file names listed once per folder)."""

    def __init__(self, folders: list[Path]):
        self.folders, self.listed = folders, {}

    def find(self, stem: str) -> Path | None:
        for folder in self.folders:
            if folder not in self.listed:
                names = sorted(os.listdir(folder)) if folder.is_dir() else []
                self.listed[folder] = {}
                for name in names:
                    base, suffix = os.path.splitext(name)
                    if suffix.lower() in IMAGE_SUFFIXES:
                        self.listed[folder].setdefault(base, name)
            if stem in self.listed[folder]:
                return folder / self.listed[folder][stem]
        return None


def image_folders(folder: Path, images: Path | None) -> list[Path]:
    """Where the images of the labels in `folder` may be: `images`, Ultralytics' sibling folder, `folder`."""
    parts = folder.absolute().parts
    places = [images] if images is not None else []
    if "labels" in parts:
        k = len(parts) - 1 - parts[::-1].index("labels")
        places.append(Path(*parts[:k], "images", *parts[k + 1:]))
    places.append(folder)
    return list(dict.fromkeys(places))


def read_yolo(folder: Path, sizes: ImageSizes) -> BoxSet:
    """A folder of YOLO label files (see the module); files are named FOLDER/NAME.txt in the
    skipped list. ValueError without class names or without any readable label."""
    source = names_file(folder)
    if source is None:
        raise ValueError(f"{folder}: YOLO labels need their class names: a classes.txt (one per line) or a data.yaml "
                         f"with names:, in the labels folder or one of the two above it")
    names = read_class_names(source)
    files = label_files(folder)
    if not files:
        raise ValueError(f"no YOLO label files (.txt) in {folder}")
    places = image_folders(folder, sizes.root)
    finder, found = ImageFinder(places), BoxCollector("yolo", sizes)
    for label in files:
        file = f"{folder.name}/{label.name}"
        image = finder.find(label.stem)
        size = image_size(image) if image is not None else None
        if size is None:
            looked = ", ".join(str(place) for place in places)
            missing = f"no image {label.stem}.* in {looked}" if image is None else f"image {image.name} is unreadable"
            found.skip(file, f"{missing}: YOLO's normalised boxes need the image's size")
            continue
        try:
            lines = label.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            found.skip(file, f"unreadable ({getattr(exc, 'strerror', None) or exc}); its image is unknown")
            continue
        found.image(image.name)
        for n, line in enumerate(lines, start=1):
            if line.split():
                _label_line(found, file, n, line.split(), image.name, size, names, source.name)
    if not found.images:
        raise ValueError(f"no readable YOLO labels in {folder} ({found.skipped[0][0]}: {found.skipped[0][1]})")
    return found.box_set(names)


def _label_line(found: BoxCollector, file: str, n: int, fields: list[str], image: str, size: tuple[int, int],
                names: list[str], source: str) -> None:
    """One line `class cx cy width height` of a label file into `found`."""
    if len(fields) != 5:
        found.reject(file, f"line {n} has {len(fields)} values, not 5 (class cx cy width height)", image)
        return
    values, problem = read_numbers(fields, ("class", *YOLO.names))
    if problem:
        found.reject(file, f"line {n} {problem}", image)
        return
    known = values[0].is_integer() and 0 <= values[0] < len(names)
    name = names[int(values[0])] if known else None
    where = f"line {n} (class {fields[0]}" + (f", {name})" if name else ")")
    found.add(file, where, image, values[1:], YOLO, size, name,
              problem=None if known else f"is not among the {len(names)} classes of {source}")
