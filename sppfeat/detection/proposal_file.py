"""Proposal files (HDF5, no pickle), and proposals read from any box file ``regions`` reads.

Layout of a file written by ``sppfeat proposals``:
    paths         N UTF-8 strings (relative to the image folder)
    first         N+1 int64: the boxes of image i are rows first[i]:first[i+1]
    boxes         M×4 float32 (x1, y1, x2, y2), pixels of the stored image, half-open
    image_sizes   N×2 int32 (height, width) of the stored image
    scores        M float32 (only when the source had scores)
    skipped/paths, skipped/reasons   images without proposals and why
Attributes: sppfeat_kind = "proposals", format_version, settings (JSON: ProposalConfig's record, implementation,
image_root), created, sppfeat_version.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..data.boxes import read_boxes
from ..config import FORMAT_VERSION
from ..storage.hdf5 import STR, open_hdf5, read_strings, written_hdf5

KIND = "proposals"


@dataclass
class ProposalSet:
    """Proposals of N images: paths, first (N+1 offsets into boxes), boxes M×4 float32, image_sizes
    N×2 (height, width; 0 = unknown, for box files), scores M or None, settings (how they were
    made; {} for a box file), skipped (path, reason)."""

    paths: list[str]
    boxes: np.ndarray
    first: np.ndarray
    image_sizes: np.ndarray
    scores: np.ndarray | None = None
    settings: dict = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        self._index = {path: i for i, path in enumerate(self.paths)}

    def of(self, path: str) -> np.ndarray | None:
        """K×4 boxes of the image `path`, or None when the set has none for it."""
        i = self._index.get(path)
        return None if i is None else self.boxes[self.first[i]:self.first[i + 1]]

    def size_of(self, path: str) -> tuple[int, int] | None:
        """(height, width) of the image `path` as stored when its windows were proposed, or None
        (not in the set, or a box file, which records no sizes)."""
        i = self._index.get(path)
        return None if i is None or not self.image_sizes[i].all() else tuple(map(int, self.image_sizes[i]))


def write_proposals(path: str | os.PathLike, proposals: ProposalSet) -> None:
    """Write `proposals` to `path` (under a .partial name, renamed when complete)."""
    with written_hdf5(path, KIND, FORMAT_VERSION) as f:
        f.attrs["settings"] = json.dumps(proposals.settings, sort_keys=True)
        f.create_dataset("paths", data=proposals.paths, dtype=STR)
        f.create_dataset("first", data=proposals.first.astype(np.int64))
        boxes = proposals.boxes.astype(np.float32).reshape(-1, 4)
        f.create_dataset("boxes", data=boxes, **({"chunks": True, "compression": "gzip"} if len(boxes) else {}))
        f.create_dataset("image_sizes", data=proposals.image_sizes.astype(np.int32).reshape(-1, 2))
        if proposals.scores is not None:
            f.create_dataset("scores", data=proposals.scores.astype(np.float32))
        f.create_dataset("skipped/paths", data=[p for p, _ in proposals.skipped], dtype=STR)
        f.create_dataset("skipped/reasons", data=[r for _, r in proposals.skipped], dtype=STR)


def is_proposal_file(path: str | os.PathLike) -> bool:
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return f.attrs.get("sppfeat_kind") == KIND


def read_proposals(path: str | os.PathLike) -> ProposalSet:
    """A proposal file; ValueError with a one-line reason if it is not one."""
    with open_hdf5(path, "proposal file") as f:
        if f.attrs.get("sppfeat_kind") != KIND:
            raise ValueError(f"{path} is not an sppfeat proposal file")
        return ProposalSet(read_strings(f["paths"]), f["boxes"][()], f["first"][()], f["image_sizes"][()],
                           f["scores"][()] if "scores" in f else None, json.loads(f.attrs["settings"]),
                           list(zip(read_strings(f["skipped/paths"]), read_strings(f["skipped/reasons"]))))


def load_proposals(source: str | os.PathLike) -> ProposalSet:
    """Proposals from a proposal file or from a box file of any format ``regions`` reads (COCO JSON,
    a folder of VOC XML files, CSV path,x1,y1,x2,y2 with an optional score column; labels ignored)."""
    if is_proposal_file(source):
        found = read_proposals(source)
        found.settings = {**found.settings, "source": str(Path(source).resolve())}
        return found
    if Path(source).is_file() and h5py.is_hdf5(source):
        raise ValueError(f"{source} is an HDF5 file but not a proposal file (made by sppfeat proposals)")
    box_set = read_boxes(source)
    counts = np.bincount(box_set.image, minlength=len(box_set.paths))
    return ProposalSet(list(box_set.paths), box_set.boxes.astype(np.float32),
                       np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                       np.zeros((len(box_set.paths), 2), np.int32),
                       None if box_set.scores is None else box_set.scores.astype(np.float32),
                       {"source": str(Path(source).resolve())}, list(box_set.skipped))


def merge_proposals(shards: list[str | os.PathLike], output: str | os.PathLike) -> None:
    """Join the proposal files of the shards of one run into `output`, in shard order; ValueError
    for shards made with other settings."""
    sets = [read_proposals(s) for s in shards]
    made_with = [{k: v for k, v in s.settings.items() if k != "image_root"} for s in sets]
    for path, settings in zip(shards[1:], made_with[1:]):
        if settings != made_with[0]:
            raise ValueError(f"{path} was made with other proposal settings than {shards[0]}")
    offsets = np.cumsum([0] + [len(s.boxes) for s in sets])
    first = np.concatenate([sets[0].first[:1]] + [s.first[1:] + o for s, o in zip(sets, offsets)])
    write_proposals(output, ProposalSet(
        [p for s in sets for p in s.paths], np.concatenate([s.boxes for s in sets]), first,
        np.concatenate([s.image_sizes for s in sets]), None, sets[0].settings,
        list(dict.fromkeys(item for s in sets for item in s.skipped))))  # listing skips are in every shard
