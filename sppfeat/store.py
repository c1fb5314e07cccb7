"""HDF5 feature files: written row by row while extracting, read back for training and evaluation.

Layout (one row per image, in the order of ``paths``):
    features     N×D float32 (or float16), chunked by rows, growable
    paths        N UTF-8 strings, relative to the image folder
    labels       N int32 class index, -1 when unlabeled
    targets      N×K int8, multi-label data sets only (1 positive, -1 negative, 0 difficult)
    image_sizes  N×2 int32 original (height, width) after EXIF orientation
    class_names  K UTF-8 strings
    skipped      M×2 UTF-8 strings (path, reason)
File attributes: the extraction configuration (``config``, JSON) and each of its keys as a plain
attribute, plus ``n_images``, ``n_skipped``, ``complete`` and the file's place in the full image
list: ``listing_sha256``, ``n_listed_images``, ``shard_index``, ``shard_count``, ``shard_start``.
The file is written as ``OUT.h5.partial`` and renamed to ``OUT.h5`` only when complete.
A merged file (``sppfeat merge``) has the same datasets as HDF5 virtual datasets over its shards.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")
CHUNK_BYTES = 1 << 22  # about 4 MiB of features per chunk


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


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


def changed_settings(old: dict, new: dict, keys: tuple[str, ...]) -> list[str]:
    """The extraction settings `keys` in which two feature-file configs differ."""
    return [k for k in keys if old.get(k) != new.get(k)]


def write_attributes(f: h5py.File, config: dict, attributes: dict) -> None:
    """The configuration as JSON (``config``) and key by key, plus plain attributes."""
    f.attrs["config"] = json.dumps(config, sort_keys=True)
    for key, value in config.items():
        f.attrs[key] = json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
    for key, value in attributes.items():
        f.attrs[key] = value


class FeatureWriter:
    """Append rows to a new feature file; ``close()`` marks it complete and renames it into place.
    As a context manager: closed when the block ends, aborted (nothing left behind) if it raises."""

    def __init__(self, path: str | os.PathLike, *, dim: int, dtype: str, class_names: list[str],
                 config: dict, n_targets: int | None = None, attributes: dict | None = None):
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.file = h5py.File(self.tmp, "w")
        rows = max(1, CHUNK_BYTES // (dim * np.dtype(dtype).itemsize))
        self.features = _growable(self.file, "features", dim, dtype, rows)
        self.paths = _growable(self.file, "paths", None, STR, rows)
        self.labels = _growable(self.file, "labels", None, np.int32, rows)
        self.image_sizes = _growable(self.file, "image_sizes", 2, np.int32, 1024)
        self.targets = _growable(self.file, "targets", n_targets, np.int8, 1024) if n_targets else None
        self.skipped = _growable(self.file, "skipped", 2, STR, 256)
        self.file.create_dataset("class_names", data=list(class_names), dtype=STR)
        write_attributes(self.file, config, attributes or {})
        self.file.attrs["complete"] = False

    @property
    def n_rows(self) -> int:
        return self.features.shape[0]

    def append(self, paths: list[str], labels, image_sizes, features: np.ndarray, targets=None) -> None:
        """Add len(paths) rows: features is n×D, image_sizes n×2, targets n×K (multi-label only)."""
        _append(self.features, features)
        _append(self.paths, paths)
        _append(self.labels, labels)
        _append(self.image_sizes, np.asarray(image_sizes, dtype=np.int32).reshape(-1, 2))
        if self.targets is not None:
            _append(self.targets, targets)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.resize(self.skipped.shape[0] + 1, axis=0)
        self.skipped[-1] = [path, reason]

    def close(self) -> Path:
        """Finish: write counts, flush, rename OUT.h5.partial -> OUT.h5. Returns the final path."""
        self.file.attrs["n_images"] = self.features.shape[0]
        self.file.attrs["n_skipped"] = self.skipped.shape[0]
        self.file.attrs["complete"] = True
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close without marking complete and delete the .partial file."""
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


def _strings(dataset: h5py.Dataset) -> list:
    return dataset.asstr()[()].tolist()


@dataclass
class FeatureFile:
    """The metadata of a feature file, without the features (read rows with :meth:`read_features`).

    paths/labels/class_names as written; targets N×K or None; skipped list of (path, reason).
    """

    path: Path
    config: dict
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    image_sizes: np.ndarray
    targets: np.ndarray | None
    skipped: list[tuple[str, str]]
    dim: int
    dtype: str
    attributes: dict

    @property
    def multilabel(self) -> bool:
        return self.targets is not None

    def read_features(self, rows: np.ndarray | None = None, block: int = 512) -> np.ndarray:
        """float32 array len(rows)×D (all rows when None), read block-wise in file order."""
        with h5py.File(self.path, "r") as f:
            data = f["features"]
            if rows is None:
                return data[()].astype(np.float32, copy=False)
            rows = np.asarray(rows, dtype=np.int64)
            out = np.empty((len(rows), self.dim), dtype=np.float32)
            order = np.argsort(rows, kind="stable")
            sorted_rows = rows[order]
            for start in range(0, len(sorted_rows), block):
                chunk = sorted_rows[start:start + block]
                lo, hi = int(chunk[0]), int(chunk[-1]) + 1
                out[order[start:start + block]] = data[lo:hi][chunk - lo]
            return out


def open_hdf5(path: str | os.PathLike, what: str) -> h5py.File:
    """Open an existing HDF5 file read-only; ValueError naming `what` was expected otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"not an HDF5 file: {path} ({str(exc).splitlines()[0]})") from None


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


ATTRIBUTES = ("listing_sha256", "n_listed_images", "shard_index", "shard_count", "shard_start", "complete")


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
                             f"({len(lost)} missing); keep the shards next to it or merge with --consolidate")
        return FeatureFile(
            path=path,
            config=json.loads(f.attrs["config"]),
            paths=_strings(f["paths"]),
            labels=f["labels"][()].astype(np.int64),
            class_names=_strings(f["class_names"]),
            image_sizes=f["image_sizes"][()] if "image_sizes" in f else np.zeros((0, 2), np.int32),
            targets=f["targets"][()] if "targets" in f else None,
            skipped=[tuple(row) for row in _strings(f["skipped"])] if "skipped" in f else [],
            dim=f["features"].shape[1],
            dtype=str(f["features"].dtype),
            attributes={k: _plain(f.attrs[k]) for k in ATTRIBUTES if k in f.attrs},
        )


def _plain(value):
    """An HDF5 attribute as a plain Python value."""
    return value.item() if isinstance(value, np.generic) else value
