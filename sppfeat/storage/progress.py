"""Crash-safe progress of an extraction: completed work is kept in segment files until the run ends.

While ``OUT.h5`` is being extracted, finished images go to ``OUT.h5.parts/``:

    manifest.json           the extraction record, the shard, a fingerprint of the image list and
                            the format version
    seg-START-END.npz       images START..END-1 of the list (global indices): their rows (one
                            vector per image, or per box with per-row columns), original sizes, the
                            skip reasons of the ones that failed and notes (e.g. unusable boxes)

A segment is written to a temporary name, fsync'ed and renamed, so a segment file either exists
whole or not at all (a kill -9 or power loss in the middle of a write leaves only a ``.tmp`` file,
which is ignored and removed). Every segment is checked when the run resumes (zip CRCs, shapes,
index range); a damaged one is deleted and its images are extracted again. When every image is
covered, the segments are copied in order into the final HDF5 file and the folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import FORMAT_VERSION, RESUME, changed_settings, setting_text

SEGMENT_RE = re.compile(r"^seg-(\d{10})-(\d{10})\.npz$")
MANIFEST = "manifest.json"
COLUMN = "column_"  # prefix of per-row columns in a segment file


def parts_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".parts")


def listing_fingerprint(paths: list[str], labels: list[int], skipped: list[tuple[str, str]],
                        targets: np.ndarray | None, arrays: list[np.ndarray] = ()) -> str:
    """sha256 of an image list (paths, labels, targets, files refused while listing) and of further
    `arrays` that decide the rows (e.g. boxes)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([paths, [int(v) for v in labels], [list(s) for s in skipped]]).encode())
    if targets is not None:
        digest.update(np.ascontiguousarray(targets, dtype=np.int8).tobytes())
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, write) -> None:
    """write(file object) into path.tmp, fsync, rename to path, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class SegmentInfo:
    """A checked segment file covering images start..end-1."""

    start: int
    end: int
    name: str


@dataclass
class Segment:
    """Images start..end-1 of the list. indices: the n decoded ones, image_sizes n×2 theirs;
    features: R×D rows, one per decoded image (R = n) unless `columns` says which part of which
    image each row is (each column R long); skipped_indices / skipped_reasons: the images that
    failed; note_indices / notes: skip reasons for parts of decoded images (e.g. a box)."""

    start: int
    end: int
    indices: np.ndarray
    features: np.ndarray
    image_sizes: np.ndarray
    skipped_indices: np.ndarray
    skipped_reasons: list[str]
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    note_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"seg-{self.start:010d}-{self.end:010d}.npz"


class ProgressFolder:
    """The ``OUT.h5.parts`` folder of one extraction (see the module docstring)."""

    def __init__(self, output: str | os.PathLike):
        self.path = parts_path(output)

    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def create(self, manifest: dict) -> None:
        """Start empty (an old folder is removed) with this manifest (keys config, shard,
        listing_sha256, n_listed; format_version is added)."""
        self.remove()
        self.path.mkdir()
        text = json.dumps(dict(manifest, format_version=FORMAT_VERSION), sort_keys=True)
        _write_durably(self.path / MANIFEST, lambda f: f.write(text.encode()))

    def check_resumable(self, manifest: dict) -> None:
        """ValueError with a one-line reason when the interrupted run had other settings or images,
        or was made by another format version of sppfeat."""
        try:
            old = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            raise ValueError(f"cannot resume: {self.path / MANIFEST} is unreadable; run again with overwrite=True") from None
        if old.get("format_version", 1) != FORMAT_VERSION:
            raise ValueError(f"cannot resume: {self.path} was written by another version of sppfeat "
                             f"(progress format {old.get('format_version', 1)}, this one reads {FORMAT_VERSION}); "
                             "run again with overwrite=True")
        changed = changed_settings(old.get("config", {}), manifest["config"], RESUME)
        if changed:
            shown = [k for k in changed if k != "feature_dim"] or changed  # the length follows from the settings shown
            details = ", ".join(f"{setting_text(k, old['config'])} (now {setting_text(k, manifest['config'])})"
                                for k in shown)
            raise ValueError(f"cannot resume: the interrupted run used other settings: {details}; "
                             "use the same settings, or overwrite=True to start over")
        if old.get("listing_sha256") != manifest["listing_sha256"]:
            raise ValueError(f"cannot resume: the image folder changed since the interrupted run "
                             f"({old.get('n_listed')} files then, {manifest['n_listed']} now); "
                             "use overwrite=True to extract it again")
        if old.get("shard") != manifest.get("shard"):
            raise ValueError(f"cannot resume: the interrupted run was shard {old.get('shard')} (now "
                             f"{manifest.get('shard')}); use the same settings, or overwrite=True to start over")

    def write(self, segment: Segment) -> None:
        arrays = {"indices": segment.indices.astype(np.int64), "features": segment.features,
                  "image_sizes": segment.image_sizes.astype(np.int32).reshape(-1, 2),
                  "skipped_indices": segment.skipped_indices.astype(np.int64),
                  "skipped_reasons": np.array(segment.skipped_reasons, dtype=str),
                  "note_indices": segment.note_indices.astype(np.int64), "notes": np.array(segment.notes, dtype=str),
                  **{COLUMN + name: values for name, values in segment.columns.items()}}
        _write_durably(self.path / segment.name, lambda f: np.savez(f, **arrays))

    def load(self, name: str, dim: int) -> Segment | None:
        """A segment file read and checked; None when it is damaged or inconsistent."""
        match = SEGMENT_RE.match(name)
        if not match:
            return None
        start, end = int(match.group(1)), int(match.group(2))
        try:
            with np.load(self.path / name, allow_pickle=False) as data:
                segment = Segment(start, end, data["indices"], data["features"], data["image_sizes"],
                                  data["skipped_indices"], data["skipped_reasons"].tolist(),
                                  {key[len(COLUMN):]: data[key] for key in data.files if key.startswith(COLUMN)},
                                  data["note_indices"], data["notes"].tolist())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        covered = np.sort(np.concatenate([segment.indices, segment.skipped_indices]))
        rows = len(segment.features) if segment.columns else len(segment.indices)
        if (segment.features.ndim != 2 or segment.features.shape != (rows, dim)
                or any(values.shape != (rows,) for values in segment.columns.values())
                or segment.image_sizes.shape != (len(segment.indices), 2)
                or len(segment.skipped_reasons) != len(segment.skipped_indices)
                or len(segment.notes) != len(segment.note_indices)
                or not np.isin(segment.note_indices, segment.indices).all()
                or not np.array_equal(covered, np.arange(start, end))):
            return None
        return segment

    def listed(self) -> list[SegmentInfo]:
        """The segment files by name only (not read), sorted by start; none when there is no folder."""
        if not self.path.is_dir():
            return []
        found = [(SEGMENT_RE.match(name), name) for name in sorted(os.listdir(self.path))]
        return [SegmentInfo(int(m.group(1)), int(m.group(2)), name) for m, name in found if m]

    def segments(self, dim: int, lo: int, hi: int) -> tuple[list[SegmentInfo], int]:
        """The intact segments inside [lo, hi), sorted and non-overlapping, and how many files were
        dropped (damaged, overlapping or left over from an interrupted write); every file is read
        and checked."""
        kept: list[SegmentInfo] = []
        dropped = 0
        for name in sorted(os.listdir(self.path)):
            if name == MANIFEST:
                continue
            segment = self.load(name, dim)
            if segment is None or segment.start < lo or segment.end > hi or (kept and segment.start < kept[-1].end):
                (self.path / name).unlink(missing_ok=True)
                dropped += 1
                continue
            kept.append(SegmentInfo(segment.start, segment.end, name))
        return kept, dropped

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class SegmentBuffer:
    """Collects described images (objects with index, error, original_size and outputs(), see
    features.descriptor.DecodedItem) in index order and writes them as segments of at most
    `max_images` consecutive images, ended early once they hold `max_rows` rows (images with many
    boxes); a gap in the indices also ends a segment. A segment is written in a background thread
    while the next one fills (one write at a time); ``flush()`` writes the rest and waits, and
    raises what a write raised (a full disk, say)."""

    def __init__(self, progress: ProgressFolder, dim: int, dtype: str, max_images: int, max_rows: int):
        self.progress, self.dim, self.dtype = progress, dim, dtype
        self.max_images, self.max_rows = max_images, max_rows
        self.items: list = []
        self.rows = 0
        self.writing: BackgroundCall | None = None

    def add(self, item) -> None:
        if self.items and item.index != self.items[-1].index + 1:
            self.write()
        self.items.append(item)
        self.rows += 0 if item.error is not None else len(item.outputs()[0])
        if len(self.items) >= self.max_images or self.rows >= self.max_rows:
            self.write()

    def flush(self) -> None:
        """Write the collected images and wait until every segment is on disk."""
        try:
            self.write()
        finally:
            self.wait()

    def wait(self) -> None:
        writing, self.writing = self.writing, None
        if writing is not None:
            writing.result()

    def write(self) -> None:
        """Start writing the collected images as one segment, after the previous write ends."""
        if not self.items:
            return
        self.wait()  # first: if the previous write failed, these images stay collected
        segment = self.segment()
        self.items, self.rows = [], 0
        self.writing = BackgroundCall(self.progress.write, segment)

    def segment(self) -> Segment:
        good = [item for item in self.items if item.error is None]
        bad = [item for item in self.items if item.error is not None]
        outputs = [item.outputs() for item in good]
        features = np.concatenate([rows for rows, _, _ in outputs]) if good else np.zeros((0, self.dim))
        columns = {name: np.concatenate([cols[name] for _, cols, _ in outputs]) for name in
                   (outputs[0][1] if outputs else {})}
        notes = [(item.index, note) for item, (_, _, item_notes) in zip(good, outputs) for note in item_notes]
        return Segment(
            start=self.items[0].index, end=self.items[-1].index + 1,
            indices=np.array([item.index for item in good], dtype=np.int64),
            features=features.astype(self.dtype, copy=False),
            image_sizes=np.array([item.original_size for item in good], dtype=np.int32).reshape(-1, 2),
            skipped_indices=np.array([item.index for item in bad], dtype=np.int64),
            skipped_reasons=[item.error for item in bad], columns=columns,
            note_indices=np.array([index for index, _ in notes], dtype=np.int64), notes=[n for _, n in notes])


class BackgroundCall:
    """``fn(*args)`` in a thread of its own; ``result()`` waits and re-raises its exception."""

    def __init__(self, fn, *args):
        self.error: BaseException | None = None

        def run():
            try:
                fn(*args)
            except BaseException as exc:  # handed to the caller of result()
                self.error = exc

        self.thread = threading.Thread(target=run, name="sppfeat-writer", daemon=True)
        self.thread.start()

    def result(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def missing_ranges(segments: list[SegmentInfo], lo: int, hi: int) -> list[tuple[int, int]]:
    """The index ranges of [lo, hi) that no segment covers, in order."""
    ranges, position = [], lo
    for segment in segments:
        if segment.start > position:
            ranges.append((position, segment.start))
        position = max(position, segment.end)
    if position < hi:
        ranges.append((position, hi))
    return ranges
