"""The C library's few calls sppfeat needs: srand (OpenCV's selective search ranks windows with
rand()) and mallopt (glibc's heap). Looked up once; no-ops where the C library lacks them."""

from __future__ import annotations

import ctypes
from functools import lru_cache

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameters
DEFAULT_MMAP_MAX, DEFAULT_TRIM = 65536, 128 * 1024  # glibc's defaults of M_MMAP_MAX and M_TRIM_THRESHOLD
LARGE_BLOCK = 1 << 20  # bytes: allocations from here on are mapped from the OS and returned on free
KEPT_FREE = 1 << 30  # bytes of freed memory at the heap's top that keep_large_blocks leaves to the process


@lru_cache(maxsize=1)
def libc():
    """The C library, from this process's own symbols (no search: find_library runs a subprocess,
    12 ms of every command's start-up); None where there is none."""
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):
        return None


def seed_rand(seed: int) -> None:
    """srand(seed) of the C library (where there is one to find)."""
    srand = getattr(libc(), "srand", None)
    if srand is not None:
        srand(seed)


def _mallopt(*settings: tuple[int, int]) -> None:
    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is not None:
        for parameter, value in settings:
            mallopt(parameter, value)


def return_large_blocks() -> None:
    """Make glibc map every allocation of LARGE_BLOCK bytes or more from the OS and give it back
    when freed. By default the threshold rises to 32 MB as large blocks are freed, and then the
    many tens-of-MB temporaries of pooling thousands of windows fragment the heap: training a
    detector on 150 images held 2.4 GB instead of 0.9 GB. Process-wide (undoes
    keep_large_blocks); no-op outside glibc."""
    _mallopt((M_MMAP_MAX, DEFAULT_MMAP_MAX), (M_TRIM_THRESHOLD, DEFAULT_TRIM), (M_MMAP_THRESHOLD, LARGE_BLOCK))


def keep_large_blocks() -> None:
    """Make glibc serve every allocation from its heap and keep up to KEPT_FREE bytes of freed
    memory for the next ones. glibc maps blocks over 32 MB from the OS whatever its threshold, and
    every page of a fresh mapping faults when first written: detection allocates the same few
    hundred MB per image (a 61 MB activation at 688 px, 93 MB of window vectors), and reusing them
    made its conv pass 35 % and pooling 24 % faster for 0.2 GB more peak memory (docs/detection.md;
    `sppfeat detect` calls this).
    For work whose temporaries repeat image after image; process-wide (undoes return_large_blocks);
    no-op outside glibc."""
    _mallopt((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEPT_FREE))


def release_free_memory() -> None:
    """Give the pages of the heap's free chunks back to the system: glibc's malloc_trim(0), which
    releases whole free pages inside the heap, not only at its top. Work that keeps a few small
    arrays per item among larger temporaries (training images) otherwise leaves the heap holes it
    cannot hand back: ~0.3 MB per training image stayed resident (37 % of the heap free after 250
    images; 737 MB -> 679 MB after one call). No-op outside glibc."""
    trim = getattr(libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)
