"""Stopping an extraction cleanly: SIGINT / SIGTERM become ExtractionInterrupted outside the moments
a segment is being written, a dead worker process becomes WorkerFailed, a full disk becomes DiskFull,
and each says how much was saved and how to go on."""

from __future__ import annotations

import errno
import signal
import threading
from contextlib import contextmanager

from ..meter import size_text
from ..storage.progress import ProgressFolder


class ExtractionInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped an extraction; the finished images are saved for ``resume=True``."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or signal.Signals(signum).name)
        self.signum = signum


class WorkerFailed(RuntimeError):
    """A worker process died (e.g. killed by the out-of-memory killer); the finished images are saved
    for ``resume=True``."""


class DiskFull(RuntimeError):
    """The disk filled up (ENOSPC) while saving progress or writing the feature file; the finished
    images are saved for ``resume=True``."""


def is_disk_full(exc: OSError) -> bool:
    """ENOSPC, also as HDF5 reports it (an OSError whose text carries the errno)."""
    return exc.errno == errno.ENOSPC or "No space left on device" in str(exc) or "errno = 28" in str(exc)


class StopSignals:
    """While active (main thread only): SIGINT and SIGTERM raise ExtractionInterrupted, except inside
    `critical()` sections (a segment being written), where the stop waits for the section's end.
    Only the first signal stops the run; more (Ctrl-C pressed again) do not cut the saving short."""

    def __init__(self):
        self.signum: int | None = None
        self.raised = False
        self.in_critical = False
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if not self.in_critical:
            self.raised = True
            raise ExtractionInterrupted(signum)

    @contextmanager
    def critical(self):
        self.in_critical = True
        try:
            yield
        finally:
            self.in_critical = False
        if self.signum is not None and not self.raised:
            self.raised = True
            raise ExtractionInterrupted(self.signum)


def worker_failure(exc: RuntimeError) -> WorkerFailed | None:
    """torch's DataLoader reports a dead worker as a plain RuntimeError: that one as WorkerFailed."""
    if not str(exc).startswith("DataLoader worker"):
        return None
    return WorkerFailed(f"a worker process died ({str(exc).strip().rstrip('.')})")


def saved_so_far(progress: ProgressFolder, total: int) -> str:
    """'after N of M images; they are saved in ... resume=True ...', for a run that stopped early.
    With nothing saved, the progress folder is removed, so that a plain rerun starts afresh."""
    n_done = sum(s.end - s.start for s in progress.listed())
    if n_done == 0:
        progress.remove()
        return "before any image was saved; nothing is left behind - run the same again"
    return (f"after {n_done} of {total} images; they are saved in {progress.path} - run the same again with "
            "resume=True to continue")


@contextmanager
def reported_stops(progress: ProgressFolder, total: int, row_bytes: int):
    """Inside: an interruption, a dead worker or a full disk is re-raised with what was saved and how
    to go on. `row_bytes`: the size of one stored vector, for the space a full disk lacks."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        n_done = sum(s.end - s.start for s in progress.listed())
        needed = (total - n_done + total) * row_bytes  # the missing segments, then the final copy beside them
        raise DiskFull(f"the disk is full: {progress.path.parent} needs about {size_text(needed)} more "
                       f"(the unsaved images' progress, then the final file) - free space; stopped "
                       + saved_so_far(progress, total)) from None
    except ExtractionInterrupted as exc:
        raise ExtractionInterrupted(exc.signum, f"interrupted by {signal.Signals(exc.signum).name} "
                                    + saved_so_far(progress, total)) from None
    except WorkerFailed as exc:
        raise WorkerFailed(f"{exc} " + saved_so_far(progress, total) + " (with fewer workers=N or a "
                           "smaller max_side=N if it ran out of memory)") from None
