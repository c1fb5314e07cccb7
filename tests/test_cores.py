"""The one count of usable CPU cores: affinity, the cgroup quota (v1 and v2), and who uses it."""

import os
import subprocess
import sys

import pytest

from sppfeat import cores
from sppfeat.storage import hdf5


def cgroup(root, files: dict[str, str]):
    """A fake cgroup file system under root: {relative path: text}."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no quota
    ({"cpu.max": "200000 100000\n"}, 2.0),  # docker --cpus 2
    ({"cpu.max": "250000 100000\n"}, 2.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # cgroup v1, no quota
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5),
    ({"cpu.max": "garbage\n"}, None),
    ({}, None),  # no cgroup file system
])
def test_cgroup_cpu_quota_is_read_from_v1_and_v2_files(tmp_path, files, expected):
    assert cores.cgroup_cpu_limit(cgroup(tmp_path, files)) == expected


@pytest.mark.parametrize("files, expected", [
    ({}, 8),  # affinity alone
    ({"cpu.max": "max 100000\n"}, 8),
    ({"cpu.max": "150000 100000\n"}, 2),  # a fractional quota rounds up
    ({"cpu.max": "50000 100000\n"}, 1),  # never below one
    ({"cpu.max": "1600000 100000\n"}, 8),  # a quota above the affinity: the affinity
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
])
def test_available_cores_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch, files, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cores.available_cores(cgroup(tmp_path, files)) == expected


def test_without_affinity_every_core_counts(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cores.available_cores(tmp_path) == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert cores.available_cores(tmp_path) == 1


def test_compression_threads_follow_the_same_count_at_most_8(monkeypatch):
    monkeypatch.setattr(hdf5, "available_cores", lambda: 2)  # e.g. a container with --cpus 1.5
    assert hdf5.default_threads() == 2
    monkeypatch.setattr(hdf5, "available_cores", lambda: 64)
    assert hdf5.default_threads() == 8


def test_counting_cores_does_not_import_torch():
    code = "import sys, sppfeat.cores; sppfeat.cores.available_cores(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
