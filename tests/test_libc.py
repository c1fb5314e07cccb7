"""glibc's heap settings: keep_large_blocks serves large blocks from the heap, return_large_blocks
maps them from the OS (observed through mallinfo2, in a fresh process: the settings are process-wide);
release_free_memory hands back the free pages between live blocks (observed through VmRSS)."""

import ctypes
import ctypes.util
import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2")

PROBE = """
import ctypes, ctypes.util, numpy as np
import sppfeat.libc
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c")).mallinfo2
mallinfo2.restype = MallInfo2
for name in {settings}:
    getattr(sppfeat.libc, name)()
before = mallinfo2().hblkhd
block = np.ones(64 << 20, np.uint8)
print(mallinfo2().hblkhd - before)
"""


def mapped_growth(*settings: str) -> int:
    """Bytes glibc mapped from the OS for a 64 MB block after calling `settings` in turn."""
    run = subprocess.run([sys.executable, "-c", PROBE.format(settings=settings)], capture_output=True, text=True,
                         check=True)
    return int(run.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt and mallinfo2 only")
def test_large_blocks_come_from_the_heap_or_from_the_os():
    assert mapped_growth("keep_large_blocks") == 0
    assert mapped_growth("return_large_blocks") >= 64 << 20
    assert mapped_growth("return_large_blocks", "keep_large_blocks") == 0  # each undoes the other
    assert mapped_growth("keep_large_blocks", "return_large_blocks") >= 64 << 20


HOLES = """
import numpy as np
import sppfeat.libc
def resident():
    return next(int(line.split()[1]) << 10 for line in open("/proc/self/status") if line.startswith("VmRSS"))
sppfeat.libc.return_large_blocks()
temporaries, kept = [], []
for _ in range(300):
    temporaries.append(np.ones(100_000))  # 800 KB from the heap (below the 1 MB mapping threshold)
    kept.append(np.ones(100))  # a small long-lived array after each: the freed blocks cannot merge
del temporaries
before = resident()
sppfeat.libc.release_free_memory()
print(before - resident())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc_trim only")
def test_release_free_memory_hands_back_the_holes_among_small_arrays():
    run = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, check=True)
    assert int(run.stdout) > 200 << 20  # of the 240 MB freed between the kept arrays
