"""The CPU cores this process may use: the one count that worker processes, model threads and
compression threads are sized from. Torch-free, so any part of sppfeat can ask cheaply."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_cpu_limit(root: str | os.PathLike = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup (a container's --cpus), in cores, e.g. 1.5; None if
    unlimited or unknown. Reads cgroup v2 ``cpu.max`` ("max 100000" or "150000 100000") or v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us`` (quota -1: none) under `root`."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cores(cgroup_root: str | os.PathLike = CGROUP_ROOT) -> int:
    """CPU cores this process may use, at least 1: its CPU affinity (taskset, Slurm; every core
    where the platform has none), capped by the cgroup CPU quota under `cgroup_root` (containers)
    rounded up, where os.cpu_count() would report every core of the host."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    return max(1, min(cores, math.ceil(limit)) if limit else cores)
