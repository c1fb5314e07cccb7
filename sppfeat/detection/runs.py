"""Long per-image runs of the detection commands (``proposals``, ``detect``): each image gives a
variable number of rows (boxes), saved in segments under ``OUT.parts/`` as they finish, so that an
interrupted run keeps its work and ``resume=True`` finishes it; the output is assembled at the end.
Selective search runs in worker processes (Workers), a bounded number of images ahead of the
process that consumes its windows.

A segment is one ``.npz`` file (no pickle) written under a temporary name and renamed:
``index`` (n image indices), ``reason`` (n skip reasons, '' = done), ``count`` (n rows per image)
and one array per column with sum(count) rows.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..cores import available_cores
from ..features.interrupts import ExtractionInterrupted, StopSignals, WorkerFailed
from ..meter import Meter
from ..storage.hdf5 import check_output
from ..storage.progress import parts_path

SEGMENT_IMAGES = 32  # images per saved segment: what a kill -9 can lose
PREFETCH = 2  # results per worker process that may wait ahead of the consumer
NETWORK_SHARE = 0.4  # of an image's CPU time in detect: 0.94 of 2.27 s (docs/detection.md, Speed)


@dataclass
class ImageResult:
    """What one image gave: rows (column -> array with the same number of rows) or a skip reason."""

    index: int
    columns: dict[str, np.ndarray]
    reason: str = ""


class PartsFolder:
    """``OUT.parts/``: the manifest of a run (what decides its rows) and its finished segments."""

    def __init__(self, output: str | os.PathLike):
        self.path = parts_path(output)

    def open(self, manifest: dict, resume: bool, overwrite: bool) -> None:
        """Continue a run with the same `manifest` (resume), or start afresh. ValueError for a
        leftover folder without resume or overwrite, or a resume with other settings or inputs."""
        manifest_file = self.path / "manifest.json"
        if self.path.exists() and resume:
            try:
                recorded = json.loads(manifest_file.read_text())
            except (OSError, ValueError):
                recorded = None
            if recorded != json.loads(json.dumps(manifest)):
                changed = sorted(k for k in manifest if recorded is None or recorded.get(k) != manifest[k])
                raise ValueError(f"cannot resume {self.path}: the run differs in {', '.join(changed) or 'its manifest'}"
                                 "; pass overwrite=True to start over")
            return
        if self.path.exists() and not overwrite:
            raise ValueError(f"an interrupted run left {self.path}; pass resume=True to continue it "
                             "or overwrite=True to start over")
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        manifest_file.write_text(json.dumps(manifest))

    def done(self) -> set[int]:
        """Indices of the images in finished segments."""
        return {int(i) for segment in self.segments() for i in segment["index"]}

    def segments(self) -> Iterator[dict[str, np.ndarray]]:
        for file in sorted(self.path.glob("segment-*.npz")):
            with np.load(file, allow_pickle=False) as data:
                yield {key: data[key] for key in data.files}

    def write(self, results: list[ImageResult]) -> None:
        if not results:
            return
        keys = sorted({key for r in results for key in r.columns})
        arrays = {"index": np.array([r.index for r in results], dtype=np.int64),
                  "reason": np.array([r.reason for r in results], dtype=str),
                  "count": np.array([len(next(iter(r.columns.values()))) if r.columns else 0 for r in results],
                                    dtype=np.int64)}
        for key in keys:
            arrays[key] = np.concatenate([r.columns[key] for r in results if key in r.columns])
        name = f"segment-{results[0].index:09d}"
        tmp = self.path / f"{name}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path / f"{name}.npz")

    def results(self) -> dict[int, ImageResult]:
        """Every saved image's result by index."""
        out = {}
        for segment in self.segments():
            keys = [k for k in segment if k not in ("index", "reason", "count")]
            ends = np.cumsum(segment["count"])
            for k, (index, reason) in enumerate(zip(segment["index"], segment["reason"])):
                rows = slice(ends[k] - segment["count"][k], ends[k])
                out[int(index)] = ImageResult(int(index), {key: segment[key][rows] for key in keys}, str(reason))
        return out

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


_TASK: Callable | None = None  # in a worker process: the function it computes (set when the pool forks)
_STOPS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def _stops_blocked() -> Iterator[None]:
    """Inside: SIGINT / SIGTERM wait (this thread), so that a worker forked here inherits them blocked
    and never runs the main process's handlers (StopSignals) before _start_worker replaces them."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start_worker(fn: Callable) -> None:
    global _TASK
    _TASK = fn
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process, which stops the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stopping the pool ends a worker quietly, no traceback
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # blocked since the fork (Workers.map)
    import cv2

    cv2.setNumThreads(1)  # one image per process: the processes are the parallelism


def _call(item):
    return _TASK(item)


class Workers:
    """fn(item) for a stream of items, in order, computed by `processes` forked worker processes (0:
    in this process, as the stream is read). At most PREFETCH results per process wait ahead of the consumer, so memory
    stays bounded when the consumer is the slower side. Only the items travel to the workers (fn is
    inherited at the fork); an exception in fn is raised here, a worker that dies (the out-of-memory
    killer) as WorkerFailed; SIGINT and SIGTERM are left to this process (a worker ignores SIGINT and
    dies quietly of SIGTERM, whatever handlers this process has). Use as a context manager: leaving
    it stops the workers at once."""

    def __init__(self, fn: Callable, processes: int):
        self.fn, self.ahead = fn, PREFETCH * processes
        self.pool = ProcessPoolExecutor(processes, multiprocessing.get_context("fork"), initializer=_start_worker,
                                        initargs=(fn,)) if processes else None

    def map(self, items: Iterable) -> Iterator:
        if self.pool is None:
            yield from map(self.fn, items)
            return
        waiting: deque = deque()
        try:
            for item in items:
                with _stops_blocked():  # the first submit forks the workers
                    waiting.append(self.pool.submit(_call, item))
                if len(waiting) >= self.ahead:
                    yield waiting.popleft().result()
            while waiting:
                yield waiting.popleft().result()
        except BrokenProcessPool:
            raise WorkerFailed("a worker process died (killed, e.g. by the out-of-memory killer)") from None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            processes = list(self.pool._processes.values())  # stopped now, not after their current images
            self.pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
            self.pool.shutdown(wait=True)  # its manager thread gone too: none left to race the exit (Python 3.11)


def check_cores(cores: int | None) -> int:
    """`cores`, or None -> the cores this process may use (sppfeat.cores); ValueError unless >= 1."""
    if cores is None:
        return available_cores()
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be an integer >= 1, got {cores!r}")
    return cores


def split_cores(cores: int, searching: bool) -> tuple[int, int]:
    """(selective search worker processes, torch threads of this process) for a run on `cores`
    cores. Searching (no proposal file): with one core everything runs here; with more, `cores`
    workers search while this process runs the network on NETWORK_SHARE of the cores (the workers
    wait when they are PREFETCH images ahead, so this process gets its core back when it is the
    slower side). Not searching: no workers, every core to the network."""
    if not searching or cores < 2:
        return 0, cores
    return cores, max(1, round(NETWORK_SHARE * cores))


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Inside: torch's intra-op threads set to `threads`; the caller's count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_images(work: Callable, indices: Iterable[int], parts: PartsFolder | None, *, total: int,
               processes: int = 0, prepare: Callable | None = None, desc: str = "images", quiet: bool = False,
               on_result: Callable[[ImageResult], None] | None = None) -> None:
    """Call `work(index)` for every index, or with `prepare`, `work(index, prepare(index))`: the
    first step (work, or prepare) runs in `processes` worker processes (0 = here; see Workers), work
    after prepare runs here, in order. The results are saved in segments of SEGMENT_IMAGES in
    `parts` (None: not saved). SIGINT / SIGTERM stop the run with ExtractionInterrupted saying how
    much is saved; `on_result` sees each result in order (e.g. to print it)."""
    indices = list(indices)
    save = parts.write if parts is not None else (lambda results: None)
    pending: list[ImageResult] = []
    meter = Meter(desc, total, total - len(indices), quiet)
    try:
        with Workers(prepare or work, processes) as workers, StopSignals() as stop:
            stream = workers.map(indices) if prepare is None else map(work, indices, workers.map(indices))
            try:
                for result in stream:
                    pending.append(result)
                    if on_result:
                        on_result(result)
                    meter.update(1)
                    if len(pending) >= SEGMENT_IMAGES:
                        with stop.critical():
                            save(pending)
                            pending = []
            finally:
                with stop.critical():
                    save(pending)
    except ExtractionInterrupted as exc:
        name = signal.Signals(exc.signum).name
        if parts is None:
            raise ExtractionInterrupted(exc.signum, f"interrupted by {name} after {meter.count} of {total} images "
                                        "(nothing is saved without an output file)") from None
        raise ExtractionInterrupted(exc.signum, f"interrupted by {name} after {len(parts.done())} of {total} "
                                    f"images; they are saved in {parts.path} - run the same again with "
                                    "resume=True to continue") from None
    except WorkerFailed as exc:
        saved = f"; {len(parts.done())} of {total} images are saved in {parts.path} - run the same again with " \
            "resume=True to continue" if parts is not None else ""
        raise WorkerFailed(f"{exc}{saved}") from None
    finally:
        meter.close()


def start_run(output: str | os.PathLike, manifest: dict, resume: bool, overwrite: bool,
              inputs: tuple = ()) -> PartsFolder:
    """Check that `output` may be written (and is none of `inputs`) and open its parts folder."""
    check_output(output, overwrite or resume, inputs)
    parts = PartsFolder(output)
    parts.open(manifest, resume, overwrite)
    return parts
