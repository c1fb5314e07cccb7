"""Stopping an extraction cleanly: SIGINT / SIGTERM become ExtractionInterrupted outside the moments
a segment is being written, a dead worker process becomes WorkerFailed, and both say how much was
saved and how to go on."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from ..storage.progress import ProgressFolder


class ExtractionInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped an extraction; the finished images are saved for ``resume=True``."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or signal.Signals(signum).name)
        self.signum = signum


class WorkerFailed(RuntimeError):
    """A worker process died (e.g. killed by the out-of-memory killer); the finished images are saved
    for ``resume=True``."""


class StopSignals:
    """While active (main thread only): SIGINT and SIGTERM raise ExtractionInterrupted, except inside
    `critical()` sections (a segment being written), where the stop waits for the section's end."""

    def __init__(self):
        self.signum: int | None = None
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
        self.signum = signum
        if not self.in_critical:
            raise ExtractionInterrupted(signum)

    @contextmanager
    def critical(self):
        self.in_critical = True
        try:
            yield
        finally:
            self.in_critical = False
        if self.signum is not None:
            raise ExtractionInterrupted(self.signum)


def worker_failure(exc: RuntimeError) -> WorkerFailed | None:
    """torch's DataLoader reports a dead worker as a plain RuntimeError: that one as WorkerFailed."""
    if not str(exc).startswith("DataLoader worker"):
        return None
    return WorkerFailed(f"a worker process died ({str(exc).strip().rstrip('.')})")


def saved_so_far(progress: ProgressFolder, total: int) -> str:
    """'after N of M images; they are saved in ... --resume ...', for a run that stopped early."""
    n_done = sum(s.end - s.start for s in progress.listed())
    return (f"after {n_done} of {total} images; they are saved in {progress.path} - rerun the same command "
            "with --resume to continue")


@contextmanager
def reported_stops(progress: ProgressFolder, total: int):
    """Inside: an interruption or a dead worker is re-raised with what was saved and how to resume."""
    try:
        yield
    except ExtractionInterrupted as exc:
        raise ExtractionInterrupted(exc.signum, f"interrupted by {signal.Signals(exc.signum).name} "
                                    + saved_so_far(progress, total)) from None
    except WorkerFailed as exc:
        raise WorkerFailed(f"{exc} " + saved_so_far(progress, total) + " (with fewer --workers or a "
                           "smaller --max-side if it ran out of memory)") from None
