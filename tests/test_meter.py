"""peak_memory against the kernel's own record of the process's peak (/proc/self/status VmHWM)."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from sppfeat.meter import peak_memory

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


@pytest.mark.skipif(not Path("/proc/self/status").is_file() or sys.platform != "linux", reason="Linux's /proc only")
def test_peak_memory_is_the_kernels_high_water_mark():
    block = np.ones(300 << 20, np.uint8)  # 300 MiB written: the peak is at least this
    text = peak_memory()
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) << 10
    value, unit = re.fullmatch(r", peak memory ([\d.]+) (\w+)", text).groups()
    assert float(value) * UNITS[unit] == pytest.approx(hwm, rel=0.05)
    assert float(value) * UNITS[unit] >= block.nbytes * 0.95
