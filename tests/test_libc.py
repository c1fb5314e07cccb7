"""glibc's heap settings: keep_large_blocks serves large blocks from the heap, return_large_blocks
maps them from the OS (observed through mallinfo2, in a fresh process: the settings are process-wide)."""

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
