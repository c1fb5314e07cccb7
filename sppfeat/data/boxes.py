"""Read object boxes: COCO JSON, a folder of VOC XML files, CSV, or a folder of YOLO txt labels.

Internally a box is (x1, y1, x2, y2) in pixels of the image as stored on disk (before any EXIF
orientation), 0-based, half-open: [x1, x2) × [y1, y2). Conversions:
- COCO ``bbox`` [x, y, w, h] -> [x, y, x + w, y + h];
- VOC ``<bndbox>`` 1-based inclusive xmin ymin xmax ymax -> [xmin - 1, ymin - 1, xmax, ymax];
- CSV ``path,x1,y1,x2,y2`` and optional columns ``label``, ``score``, ``difficult`` (0/1), in any
  order after the first five: the internal convention as is. A row with a path and empty
  coordinates names an image without objects;
- LabelImg-to-CSV ``filename,width,height,class,xmin,ymin,xmax,ymax`` (any order): VOC's values,
  converted as VOC's; width and height are the image's size;
- YOLO ``class cx cy w h`` normalised -> [(cx - w/2)·W, (cy - h/2)·H, (cx + w/2)·W, (cy + h/2)·H]
  with the image's stored size W × H (sppfeat.data.yolo).
COCO's ``iscrowd`` (or an ``ignore`` field) and VOC's ``difficult`` mark a box difficult.
With ``keep_empty``, images without boxes (COCO images without annotations, VOC files without
objects, CSV rows without coordinates, empty YOLO files) are kept (detection's pure negatives).
Every box is checked as it is read (sppfeat.data.box_set); what cannot be used is listed in
``skipped`` as (annotation file, reason), and a refused box of a known image in ``rejected``.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from .box_files import read_coco, read_csv, read_voc_xml
from .box_set import BoxSet, ImageSizes, Rejected
from .yolo import label_files, names_file, read_yolo

__all__ = ["BOX_FORMATS", "BoxSet", "Rejected", "detect_format", "read_boxes"]

BOX_FORMATS = ("coco", "voc-xml", "csv", "yolo")
FOLDER_FORMATS = ("voc-xml", "yolo")


def detect_format(source: Path) -> str:
    """A folder: 'voc-xml' when it holds .xml files, 'yolo' when it holds .txt files and a
    classes.txt or data.yaml is in it or one of the two folders above; a file: 'coco' when it
    starts with '{', else 'csv'. ValueError for a folder of neither."""
    if source.is_dir():
        if any(source.glob("*.xml")):
            return "voc-xml"
        if label_files(source) and names_file(source) is not None:
            return "yolo"
        raise ValueError(f"{source} holds neither VOC XML files (.xml) nor YOLO labels (.txt files with a classes.txt "
                         f"or data.yaml in the folder or one of the two above it)")
    with open(source, "rb") as fh:
        return "coco" if fh.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"{" else "csv"


def read_boxes(source: str | os.PathLike, box_format: str = "auto", keep_empty: bool = False,
               images: str | os.PathLike | None = None) -> BoxSet:
    """The boxes of `source` (a COCO JSON or CSV file, or a folder of VOC XML files or YOLO labels);
    box_format one of BOX_FORMATS or 'auto'; keep_empty: keep the images without boxes; images:
    the image folder, when there is one: each box is then checked against its image's size as
    stored (else against the size the file gives, if any), and YOLO labels look for their images
    there first. ValueError with a one-line reason for a missing or unreadable source."""
    source = Path(source)
    if not source.exists():
        raise ValueError(f"boxes not found: {source}")
    if box_format not in ("auto", *BOX_FORMATS):
        raise ValueError(f"box_format must be 'auto' or one of {BOX_FORMATS}, got {box_format!r}")
    fmt = detect_format(source) if box_format == "auto" else box_format
    if (fmt in FOLDER_FORMATS) != source.is_dir():
        raise ValueError(f"{source}: {fmt} boxes are a {'folder' if fmt in FOLDER_FORMATS else 'file'}")
    reader = {"coco": read_coco, "voc-xml": read_voc_xml, "csv": read_csv, "yolo": read_yolo}[fmt]
    box_set = reader(source, ImageSizes(Path(images) if images is not None else None))
    if keep_empty:
        return box_set
    return box_set.keep_images(sorted(set(box_set.image.tolist())))
