"""HDF5 feature files: written row by row while extracting, read back for training and evaluation.

Layout (one row per image, in the order of ``paths``):
    features     N×D float32 (or float16), chunks of about 1 MiB of rows, gzip level 1 (HDF5's
                 deflate filter: any HDF5 reader opens it), growable
    paths        N UTF-8 strings, relative to the image folder
    labels       N int32 class index, -1 when unlabeled
    targets      N×K int8, multi-label data sets only (1 positive, -1 negative, 0 difficult)
    image_sizes  N×2 int32 original (height, width) after EXIF orientation
    class_names  K UTF-8 strings
    skipped      M×2 UTF-8 strings (path, reason)
File attributes: the extraction record (``config``, JSON: the settings, what the backbone implies,
provenance and ``format_version``; see :mod:`sppfeat.config`) and each of its keys as a plain
attribute, plus ``n_images``, ``n_skipped``, ``complete`` and the file's place in the full image
list: ``listing_sha256``, ``n_listed_images``, ``shard_index``, ``shard_count``, ``shard_start``.
The file is written as ``OUT.h5.partial`` and renamed to ``OUT.h5`` only when complete.
A box file (``sppfeat regions``) has one row per box and further datasets (see the README); every
dataset but ``class_names`` grows by rows, so shard files join by concatenating each one.
A merged file (:mod:`sppfeat.storage.merge`) has the same datasets as virtual datasets over its shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..config import ExtractionConfig
from .hdf5 import (GZIP_LEVEL, STR, ChunkCompressor, damaged, default_threads, direct_readable, open_hdf5, partial_path,
                   plain, read_rows, read_strings)

CHUNK_BYTES = 1 << 20  # about 1 MiB of raw features per chunk
READ_ROWS = 512  # rows per read when loading features
PLACEMENT = ("listing_sha256", "n_listed_images", "shard_index", "shard_count", "shard_start")


def reason_kind(reason: str) -> str:
    """A skip reason without its details: 'cannot decode (OSError: ...)' -> 'cannot decode'."""
    return reason.split(" (")[0]


def reasons_text(reasons: dict[str, int]) -> str:
    """{'cannot decode': 2, 'too small': 1} -> '2 cannot decode, 1 too small' (sorted by reason)."""
    return ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))


def nothing_decoded(image_root: str, reasons: dict[str, int]) -> ValueError:
    """The error of a run (or of all the shards of one) that yields no row."""
    return ValueError(f"no image of {image_root} could be decoded"
                      + (f" ({reasons_text(reasons)})" if reasons else ""))


def _growable(f: h5py.File, name: str, width: int | None, dtype, chunk_rows: int) -> h5py.Dataset:
    shape, maxshape = ((0, width), (None, width)) if width is not None else ((0,), (None,))
    chunks = (chunk_rows, width) if width is not None else (max(chunk_rows, 1024),)
    return f.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks)


def _append(dataset: h5py.Dataset, rows) -> None:
    rows = np.asarray(rows, dtype=dataset.dtype) if dataset.dtype != STR else list(rows)
    n = len(rows)
    if n == 0:
        return
    start = dataset.shape[0]
    dataset.resize(start + n, axis=0)
    dataset[start:start + n] = rows


def write_header(f: h5py.File, record: dict, placement: dict, class_names: list[str]) -> None:
    """The record as JSON (``config``) and key by key, the placement attributes, the class names;
    the file is marked incomplete until :func:`mark_complete`."""
    f.attrs["config"] = json.dumps(record, sort_keys=True)
    for key, value in record.items():
        f.attrs[key] = json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
    for key, value in placement.items():
        f.attrs[key] = value
    f.create_dataset("class_names", data=list(class_names), dtype=STR)
    f.attrs["complete"] = False


def mark_complete(f: h5py.File, n_images: int, n_skipped: int) -> None:
    f.attrs["n_images"] = n_images
    f.attrs["n_skipped"] = n_skipped
    f.attrs["complete"] = True


def stacked_datasets(f: h5py.File) -> dict[str, tuple[int | None, np.dtype]]:
    """The datasets of a feature file that grow by rows (all but class_names and merged_from), in
    file order: name -> (width or None, dtype)."""
    found: dict[str, tuple[int | None, np.dtype]] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name not in ("class_names", "merged_from"):
            found[name] = (obj.shape[1] if obj.ndim == 2 else None, obj.dtype)

    f.visititems(visit)
    return found


class FeatureWriter:
    """Append rows to a new feature file; ``close()`` marks it complete and renames it into place.
    As a context manager: closed when the block ends, aborted (nothing left behind) if it raises.

    record: the extraction record (:meth:`ExtractionConfig.to_record` plus provenance);
    placement: the file's place in the full image list (PLACEMENT keys); extra: further growable
    datasets, name -> (width or None, dtype), filled with :meth:`extend` or ``append(extras=...)``;
    threads: for compressing the features (default: the cores this process may use, at most 8)."""

    def __init__(self, path: str | os.PathLike, *, dim: int, dtype: str, class_names: list[str],
                 record: dict, placement: dict, n_targets: int | None = None,
                 extra: dict[str, tuple[int | None, object]] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.file = h5py.File(self.tmp, "w")
        rows = max(1, CHUNK_BYTES // (dim * np.dtype(dtype).itemsize))
        specs = {"paths": (None, STR, rows), "labels": (None, np.int32, rows),
                 "image_sizes": (2, np.int32, 1024), "skipped": (2, STR, 256),
                 **({"targets": (n_targets, np.int8, 1024)} if n_targets else {}),
                 **{name: (width, kind, 1024) for name, (width, kind) in (extra or {}).items()}}
        self.datasets = {"features": self.file.create_dataset(
            "features", shape=(0, dim), maxshape=(None, dim), dtype=dtype, chunks=(rows, dim), compression="gzip",
            compression_opts=GZIP_LEVEL)}
        self.datasets.update({name: _growable(self.file, name, width, kind, chunk)
                              for name, (width, kind, chunk) in specs.items()})
        self.compressor = ChunkCompressor(self.datasets["features"], threads or default_threads())
        write_header(self.file, record, placement, class_names)

    @property
    def n_rows(self) -> int:
        return self.datasets["features"].shape[0]

    def extend(self, name: str, rows) -> None:
        """Add rows to the dataset `name` (the features through the compressor)."""
        if name != "features":
            _append(self.datasets[name], rows)
            return
        rows = np.asarray(rows)
        self.datasets["features"].resize(self.n_rows + len(rows), axis=0)
        self.compressor.add(rows)

    def append(self, paths: list[str], labels, image_sizes, features: np.ndarray, targets=None,
               extras: dict | None = None) -> None:
        """Add len(paths) rows: features is n×D, image_sizes n×2, targets n×K (multi-label only);
        extras: rows for the `extra` datasets."""
        self.extend("features", features)
        self.extend("paths", paths)
        self.extend("labels", labels)
        self.extend("image_sizes", np.asarray(image_sizes, dtype=np.int32).reshape(-1, 2))
        if "targets" in self.datasets:
            self.extend("targets", targets)
        for name, rows in (extras or {}).items():
            self.extend(name, rows)

    def skip(self, path: str, reason: str) -> None:
        self.extend("skipped", [[path, reason]])

    def close(self) -> Path:
        """Finish: write counts, flush, rename OUT.h5.partial -> OUT.h5. Returns the final path."""
        self.compressor.finish()
        mark_complete(self.file, self.n_rows, self.datasets["skipped"].shape[0])
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close without marking complete and delete the .partial file."""
        self.compressor.abort()
        if self.file.id.valid:
            self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "FeatureWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """close() after the block, abort() if it raised (any exception, Ctrl-C included)."""
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass
class FeatureFile:
    """The metadata of a feature file, without the features (read rows with :meth:`read_features`).

    record: the stored extraction record (settings and provenance); paths/labels/class_names as
    written; image_sizes N×2 (height, width); targets N×K int8 or None; skipped list of
    (path, reason); dim D; dtype of the stored vectors; attributes: placement and ``complete``;
    stored_bytes: the features' size on disk (None for a merged file's virtual rows).
    """

    path: Path
    record: dict
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    image_sizes: np.ndarray
    targets: np.ndarray | None
    skipped: list[tuple[str, str]]
    dim: int
    dtype: str
    attributes: dict
    stored_bytes: int | None = None

    @property
    def config(self) -> ExtractionConfig:
        """The settings the vectors were extracted with."""
        return ExtractionConfig.from_record(self.record)

    @property
    def format_version(self) -> int:
        return int(self.record.get("format_version", 1))

    @property
    def skip_reasons(self) -> Counter:
        """{reason without details: count} of the skipped files."""
        return Counter(reason_kind(reason) for _, reason in self.skipped)

    @property
    def multilabel(self) -> bool:
        return self.targets is not None

    def read_features(self, rows: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
        """float32 array len(rows)×D (all rows when None), in file order: the chunks that hold them
        decompressed in `threads` threads (default: the cores this process may use, at most 8), or,
        for other layouts (merged, uncompressed), READ_ROWS rows at a time through HDF5."""
        n = len(self.paths)
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        with h5py.File(self.path, "r") as f:
            data = f["features"]
            if direct_readable(data):
                in_order = np.empty_like(out)
                read_rows(data, sorted_rows, in_order, threads or default_threads())
                out[order] = in_order
                return out
            for start in range(0, len(sorted_rows), READ_ROWS):
                chunk = sorted_rows[start:start + READ_ROWS]
                lo, hi = int(chunk[0]), int(chunk[-1]) + 1
                try:
                    block = data[lo:hi]
                except OSError as exc:  # HDF5 could not read or inflate a block
                    raise damaged(data, lo, hi, str(exc).splitlines()[0]) from None
                out[order[start:start + READ_ROWS]] = block[chunk - lo]
        return out


def missing_sources(f: h5py.File) -> list[str]:
    """Source files of the virtual datasets of `f` that do not exist (a merged file without its shards
    would silently read zeros)."""
    folder = Path(f.filename).parent
    missing = []
    for name in ("features", "paths"):
        if name in f and f[name].is_virtual:
            for source in f[name].virtual_sources():
                if not (folder / source.file_name).is_file() and not Path(source.file_name).is_file():
                    missing.append(source.file_name)
    return sorted(set(missing))


def shard_fingerprint(f: h5py.File) -> str:
    """sha256 of what makes a shard file's rows: its record (settings, provenance, creation time),
    its place in the image list and its row counts; a merged file keeps each of its shards'."""
    values = [plain(f.attrs.get(key)) for key in ("config", *PLACEMENT, "n_images", "n_skipped")]
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()


def changed_shards(f: h5py.File) -> list[str]:
    """The shards (relative paths) of a merged file `f` that exist but are no longer the files it was
    merged from (extracted again since, with other settings or images: it would read their rows)."""
    folder = Path(f.filename).parent
    changed = []
    for name, fingerprint in json.loads(f.attrs.get("shard_fingerprints", "{}")).items():
        try:
            with h5py.File(folder / name, "r") as g:
                changed += [] if shard_fingerprint(g) == fingerprint else [name]
        except FileNotFoundError:
            continue  # a shard with rows is named by missing_sources; an empty one is not read
        except OSError:
            changed.append(name)
    return changed


def open_features(path: str | os.PathLike) -> FeatureFile:
    """Read a feature file's metadata; ValueError with a one-line reason if it is not one."""
    path = Path(path)
    with open_hdf5(path, "feature file") as f:
        missing = [k for k in ("features", "paths", "labels", "class_names") if k not in f]
        if missing or "config" not in f.attrs:
            raise ValueError(f"{path} is not an sppfeat feature file (missing {missing or 'config'})")
        lost = missing_sources(f)
        if lost:
            raise ValueError(f"{path} is a merged file whose shard {lost[0]} is missing "
                             f"({len(lost)} missing); keep the shards next to it or merge with consolidate=True")
        changed = changed_shards(f)
        if changed:
            raise ValueError(f"{path} is a merged file whose shard {changed[0]} changed since the merge "
                             f"({len(changed)} changed); merge the shards again")
        return FeatureFile(
            path=path,
            record=json.loads(f.attrs["config"]),
            paths=read_strings(f["paths"]),
            labels=f["labels"][()].astype(np.int64),
            class_names=read_strings(f["class_names"]),
            image_sizes=f["image_sizes"][()] if "image_sizes" in f else np.zeros((0, 2), np.int32),
            targets=f["targets"][()] if "targets" in f else None,
            skipped=[tuple(row) for row in read_strings(f["skipped"])] if "skipped" in f else [],
            dim=f["features"].shape[1],
            dtype=str(f["features"].dtype),
            attributes={k: plain(f.attrs[k]) for k in (*PLACEMENT, "complete") if k in f.attrs},
            stored_bytes=None if f["features"].is_virtual else f["features"].id.get_storage_size(),
        )


@dataclass
class Features:
    """A feature file in memory.

    features: (N, D) float32; labels: (N,) int64 class index, -1 unlabeled; targets: (N, K) int8
    (1 positive, -1 negative, 0 difficult) for multi-label files, else None; paths: N str relative
    to the image folder; class_names: K str; config: the settings the vectors were made with.
    """

    features: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None
    paths: list[str]
    class_names: list[str]
    config: ExtractionConfig


def load_features(path: str | os.PathLike, rows: np.ndarray | None = None) -> Features:
    """Read a feature file, or only its `rows` (indices; a file larger than memory can be read part
    by part), as float32 whatever the stored type; the vectors are read in blocks into one array."""
    ff = open_features(path)
    rows = np.arange(len(ff.paths)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(ff.paths)):
        raise ValueError(f"rows must be in [0, {len(ff.paths)}) for {path}")
    return Features(ff.read_features(rows), ff.labels[rows], None if ff.targets is None else ff.targets[rows],
                    [ff.paths[i] for i in rows], list(ff.class_names), ff.config)
