"""Shards: the i-th of n contiguous parts of an image list, the file each one is written to, and
the record beside a shard file of a format without room for one (a detections CSV or JSONL).

Joining the shard files of one extraction is :func:`sppfeat.storage.merge.merge`, of one detect
run :func:`sppfeat.storage.merge.merge_detections`.
"""

from __future__ import annotations

import os
from pathlib import Path


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """(i, n) with 0 <= i < n, returned as is; None -> (0, 1) (the whole list). ValueError otherwise."""
    if shard is None:
        return 0, 1
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (i, n), got {shard!r}") from None
    if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
        raise ValueError(f"shard (i, n) needs integers 0 <= i < n, got {shard!r}")
    return index, count


def shard_bounds(n_images: int, index: int, count: int) -> tuple[int, int]:
    """Shard `index` of `count` takes images [lo, hi) of the sorted list: contiguous, no padding,
    no duplicates, sizes differing by at most one."""
    return index * n_images // count, (index + 1) * n_images // count


def shard_path(output: str | os.PathLike, index: int, count: int) -> Path:
    """OUT.h5 -> OUT.shard-00001-of-00004.h5, next to OUT.h5."""
    output = Path(output)
    return output.with_name(f"{output.stem}.shard-{index:05d}-of-{count:05d}{output.suffix}")


def record_path(shard_file: str | os.PathLike) -> Path:
    """OUT.shard-00001-of-00004.csv -> OUT.shard-00001-of-00004.csv.run.json: the JSON record of the
    run a shard file comes from, beside it."""
    shard_file = Path(shard_file)
    return shard_file.with_name(shard_file.name + ".run.json")
