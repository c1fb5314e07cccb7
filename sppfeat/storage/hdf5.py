"""What the HDF5 files share: string type, the `.partial` name they are written under, opening with
one-line errors, the check that an output may be written, and compressing rows in threads."""

from __future__ import annotations

import os
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from ..cores import available_cores

STR = h5py.string_dtype("utf-8")
GZIP_LEVEL = 1  # Caltech 101 rows 5.1x smaller at ~100 MB/s per core; higher levels gain little (docs/benchmarks.md)


def partial_path(path: str | os.PathLike) -> Path:
    """OUT.h5 -> OUT.h5.partial, the name a file is written under until it is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


ANNOTATIONS = (".xml", ".txt", ".yaml", ".yml")  # what box readers read in a folder: VOC XML, YOLO labels


def check_output(path: str | os.PathLike, replace: bool, inputs: tuple = ()) -> Path:
    """ValueError unless `path` can be written: its folder exists, it does not exist or `replace`
    allows replacing it (the CLI's --overwrite), and it is none of the same call's `inputs` (files,
    or folders of annotations: an existing file in one with a suffix of ANNOTATIONS; None is skipped)."""
    path = Path(path)
    for given in map(Path, filter(None, inputs)):
        inside = (given.is_dir() and path.exists() and path.suffix.lower() in ANNOTATIONS
                  and given.resolve() in path.resolve().parents)
        if inside or path.resolve() == given.resolve():
            raise ValueError(f"{path} is one of the inputs ({given}): write it elsewhere")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file")
    if path.exists() and not replace:
        raise ValueError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise ValueError(f"output folder does not exist: {path.parent}")
    return path


@contextmanager
def written_hdf5(path: str | os.PathLike, kind: str, format_version: int):
    """An HDF5 file opened for writing under `path`'s .partial name, with its kind, format version,
    creation time and sppfeat version set; renamed to `path` when the block ends without error."""
    from .. import __version__

    path = Path(path)
    tmp = partial_path(path)
    with h5py.File(tmp, "w") as f:
        f.attrs["sppfeat_kind"] = kind
        f.attrs["format_version"] = format_version
        f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        f.attrs["sppfeat_version"] = __version__
        yield f
    tmp.replace(path)


def open_hdf5(path: str | os.PathLike, what: str) -> h5py.File:
    """Open an existing HDF5 file read-only; ValueError naming `what` was expected otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"not an HDF5 file: {path} ({str(exc).splitlines()[0]})") from None


def read_strings(dataset: h5py.Dataset) -> list:
    return dataset.asstr()[()].tolist()


UNREADABLE = (KeyError, TypeError, ValueError, RuntimeError, OSError)  # what a damaged file's arrays raise when read


def damaged_file(path: str | os.PathLike, what: str, exc: Exception) -> ValueError:
    """The one-line error for a `what` file (e.g. 'detector model') that raised `exc` (one of
    UNREADABLE: a missing array or attribute, broken JSON) while being read."""
    detail = str(exc).splitlines()[0] if str(exc) else "no detail"
    return ValueError(f"{path} is a damaged {what} ({type(exc).__name__}: {detail})")


def plain(value):
    """An HDF5 attribute as a plain Python value."""
    return value.item() if isinstance(value, np.generic) else value


class ChunkCompressor:
    """Writes the rows of a gzip-compressed, row-chunked dataset chunk by chunk, compressing them in
    `threads` threads (zlib releases the GIL) and storing each chunk as it is (HDF5 direct chunk
    write), in order. The last, partial chunk is padded with zeros, as HDF5 stores edge chunks."""

    def __init__(self, dataset: h5py.Dataset, threads: int):
        self.dataset = dataset
        self.rows = dataset.chunks[0]
        self.pending = np.zeros((0, dataset.shape[1]), dtype=dataset.dtype)
        self.start = 0  # row of the first pending row
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="sppfeat-gzip")
        self.in_flight: deque = deque()
        self.limit = 2 * max(1, threads)

    def add(self, rows: np.ndarray) -> None:
        """rows n×D, after the dataset has been resized to hold them."""
        self.pending = np.concatenate([self.pending, rows.astype(self.dataset.dtype, copy=False)])
        while len(self.pending) >= self.rows:
            self._submit(self.pending[:self.rows])
            self.pending = self.pending[self.rows:]

    def _submit(self, chunk: np.ndarray) -> None:
        data = np.ascontiguousarray(chunk).tobytes()
        self.in_flight.append((self.start, self.pool.submit(zlib.compress, data, GZIP_LEVEL)))
        self.start += self.rows
        while len(self.in_flight) > self.limit:
            self._write_oldest()

    def _write_oldest(self) -> None:
        row, future = self.in_flight.popleft()
        self.dataset.id.write_direct_chunk((row, 0), future.result())

    def finish(self) -> None:
        if len(self.pending):
            padded = np.zeros((self.rows, self.dataset.shape[1]), dtype=self.dataset.dtype)
            padded[:len(self.pending)] = self.pending
            self._submit(padded)
        while self.in_flight:
            self._write_oldest()
        self.pool.shutdown()

    def abort(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def default_threads() -> int:
    """Compression threads: the cores this process may use (:func:`sppfeat.cores.available_cores`), at most 8."""
    return min(8, available_cores())


def direct_readable(dataset: h5py.Dataset) -> bool:
    """Whether :func:`read_rows` can decompress the chunks itself: a row-chunked, gzip-only, stored
    (not virtual) dataset, as FeatureWriter writes."""
    return (not dataset.is_virtual and dataset.compression == "gzip" and not dataset.shuffle
            and not dataset.fletcher32 and dataset.scaleoffset is None and dataset.chunks is not None
            and dataset.chunks[1:] == dataset.shape[1:])


def damaged(dataset: h5py.Dataset, lo: int, hi: int, reason) -> ValueError:
    """The one-line error for rows lo..hi-1 of `dataset` that cannot be read (a damaged block)."""
    return ValueError(f"{dataset.file.filename} is damaged: its {dataset.name.lstrip('/')} rows "
                      f"{lo}-{min(hi, len(dataset)) - 1} of {len(dataset)} cannot be read ({reason}); extract it again")


def read_rows(dataset: h5py.Dataset, rows: np.ndarray, out: np.ndarray, threads: int) -> None:
    """out[k] = dataset[rows[k]] for ascending `rows`, reading only the chunks that hold them and
    decompressing those in `threads` threads (HDF5 alone inflates one chunk at a time).
    ValueError (:func:`damaged`) for a chunk that cannot be read or inflated to its size."""
    chunk_rows = dataset.chunks[0]
    width = int(np.prod(dataset.shape[1:]))
    chunk_bytes = chunk_rows * width * dataset.dtype.itemsize  # HDF5 stores edge chunks whole
    chunk_of = rows // chunk_rows
    chunks = np.unique(chunk_of)
    bounds = np.searchsorted(chunk_of, np.append(chunks, chunks[-1] + 1)) if len(chunks) else []

    def decode(start: int, mask: int, raw: bytes) -> np.ndarray:
        try:
            data = raw if mask else zlib.decompress(raw)  # a set mask bit: the filter was skipped for this chunk
        except zlib.error as exc:
            raise damaged(dataset, start, start + chunk_rows, exc) from None
        if len(data) != chunk_bytes:
            raise damaged(dataset, start, start + chunk_rows, f"{len(data)} bytes, not {chunk_bytes}")
        return np.frombuffer(data, dtype=dataset.dtype).reshape(-1, width)

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="sppfeat-gunzip") as pool:
        pending: deque = deque()

        def take_oldest() -> None:
            k, future = pending.popleft()
            lo, hi = bounds[k], bounds[k + 1]
            out[lo:hi] = future.result()[rows[lo:hi] - chunks[k] * chunk_rows]

        for k, chunk in enumerate(chunks):
            start = int(chunk) * chunk_rows
            try:
                mask, raw = dataset.id.read_direct_chunk((start,) + (0,) * (dataset.ndim - 1))
            except OSError as exc:
                raise damaged(dataset, start, start + chunk_rows, str(exc).splitlines()[0]) from None
            pending.append((k, pool.submit(decode, start, mask, raw)))
            if len(pending) > 2 * max(1, threads):
                take_oldest()
        while pending:
            take_oldest()
