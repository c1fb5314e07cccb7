"""Progress of a long run on stderr: a bar on a terminal; elsewhere (a pipe, a log file, a cluster
job, a notebook) one line every SPPFEAT_PROGRESS_SECONDS seconds (default 30), such as
'sppfeat: extract 1200/9145 images, 35.1 images/s, ETA 3m45s'. Rates count only this run's images."""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

PROGRESS_ENV = "SPPFEAT_PROGRESS_SECONDS"


def size_text(n_bytes: float) -> str:
    """1.5e9 -> '1.4 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def peak_memory() -> str:
    """This process's peak resident memory so far, e.g. ', peak memory 4.6 GiB' ('' where the
    platform cannot say)."""
    try:
        import resource
    except ImportError:
        return ""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return f", peak memory {size_text(peak if sys.platform == 'darwin' else peak * 1024)}"


def duration(seconds: float) -> str:
    """3725 -> '1h02m05s', 225 -> '3m45s', 9 -> '9s'."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Meter:
    """`total` items of which `done` were finished by an earlier run; ``update(n)`` as items finish,
    ``close()`` at the end. Quiet: nothing."""

    def __init__(self, what: str, total: int, done: int = 0, quiet: bool = False, unit: str = "images"):
        self.what, self.total, self.count, self.unit = what, total, done, unit
        self.start_count = done
        self.start = self.last = time.monotonic()
        self.first: tuple[float, int] | None = None  # (time, count) when the first items finished
        self.latest = self.start
        self.every = float(os.environ.get(PROGRESS_ENV, "30"))
        self.lines = not quiet and not sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=done, desc=what, smoothing=0.05, unit=f" {unit}",
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]",
                        disable=quiet or not sys.stderr.isatty())  # '32.65 images/s', as in the lines

    def update(self, n: int) -> None:
        self.count += n
        self.bar.update(n)
        now = self.latest = time.monotonic()
        if self.first is None:
            self.first = (now, self.count)
        if self.lines and now - self.last >= self.every:
            self.last = now
            print(f"sppfeat: {self.line(now)}", file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        rate = (self.count - self.start_count) / max(now - self.start, 1e-9)
        eta = f", ETA {duration((self.total - self.count) / rate)}" if rate > 0 else ""
        pace = f"{1 / rate:.1f} s each" if 0 < rate < 0.1 else f"{rate:.1f} {self.unit}/s"  # slow items: their time
        return f"{self.what} {self.count}/{self.total} {self.unit}, {pace}{eta}"

    def steady_rate(self) -> float:
        """Items per second from the first finished batch to the last (NaN before a second batch):
        the rate without start-up (loading, first batches of workers, first shapes)."""
        if self.first is None or self.latest <= self.first[0]:
            return float("nan")
        return (self.count - self.first[1]) / (self.latest - self.first[0])

    def close(self) -> None:
        self.bar.close()
