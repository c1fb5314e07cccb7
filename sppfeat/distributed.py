"""Extraction under PyTorch's launcher: ``torchrun --nproc-per-node N -m sppfeat extract IMAGES OUT.h5``
(and ``regions``, ``proposals``, ``detect`` the same way).

Every rank extracts one contiguous shard of the sorted image list into its own shard file next to
OUT.h5 (``OUT.shard-0000i-of-0000N.h5``), pinned to GPU LOCAL_RANK (or to its share of the CPU
cores); when all ranks are done, rank 0 writes OUT.h5 as a virtual file over the shards. The
process group (gloo) is used only to collect every rank's outcome at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import timedelta

import torch
import torch.distributed as dist

from .config import ExtractionConfig
from .cores import available_cores
from .features.pipeline import ExtractResult, extract
from .features.runtime import Runtime
from .shards import shard_path
from .storage.hdf5 import check_output
from .storage.merge import merge

# Shards finish at different times; the ranks that are done wait this long for the others.
GATHER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class LaunchInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def launch_info() -> LaunchInfo | None:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE), None outside it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    world = int(os.environ["WORLD_SIZE"])
    return LaunchInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                      int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def rank_device(info: LaunchInfo, device: str) -> str:
    """'auto' -> this rank's own GPU (cuda:LOCAL_RANK) when there are GPUs, else the CPU."""
    if device == "auto":
        return f"cuda:{info.local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    return device


def extract_distributed(images, output, info: LaunchInfo, config: ExtractionConfig | None, runtime: Runtime, *,
                        run=extract, join=None, resume: bool = False, overwrite: bool = False, strict: bool = False,
                        quiet: bool = False) -> ExtractResult:
    """This rank's shard (on its own device, with cores / ranks per node), then (rank 0) the merged
    file. run: the extraction (``extract``, or ``regions`` with its boxes bound; ``proposals`` and
    ``detect`` wrapped alike, config being theirs or None), called as run(images, output, config,
    runtime, shard=..., resume=..., overwrite=..., strict=..., quiet=...); join(shard files, output)
    writes the merged file (default: a virtual feature file, sppfeat.storage.merge). Returns this
    rank's result.

    A failed rank leaves the other shards intact; rank 0 then raises ValueError naming the shards
    to rerun (with ``shard=(i, n)`` and ``resume=True``) before merging, the other ranks exit with 2.
    """
    check_output(output, overwrite or resume)
    runtime = replace(runtime, device=rank_device(info, runtime.device),
                      cores=max(1, available_cores() // info.local_world_size))
    if runtime.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(runtime.device))
    dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
    try:
        target = shard_path(output, info.rank, info.world_size)
        outcome: tuple[str, str]
        try:
            result = run(images, output, config, runtime, shard=(info.rank, info.world_size), resume=resume,
                         overwrite=overwrite, strict=strict, quiet=quiet)
            outcome = ("ok", str(target))
        except (ValueError, RuntimeError, OSError) as exc:
            outcome = ("failed", f"{target}: {exc}")
        outcomes: list = [None] * info.world_size
        dist.all_gather_object(outcomes, outcome)
        failed = [(rank, message) for rank, (status, message) in enumerate(outcomes) if status != "ok"]
        if failed and info.rank != 0:  # rank 0 names every failed shard; the others just stop
            raise SystemExit(2)
        if failed:
            shards = ", ".join(f"{rank}/{info.world_size}" for rank, _ in failed)
            pattern = shard_path(output, 0, info.world_size).name.replace(".shard-00000-", ".shard-*-")
            raise ValueError(f"shard{'s' if len(failed) > 1 else ''} {shards} failed ({failed[0][1]}); rerun "
                             f"with shard=(i, n) and resume=True, then: sppfeat merge {pattern} {output}")
        if info.rank == 0:
            shards = [shard_path(output, r, info.world_size) for r in range(info.world_size)]
            if join is None:
                merge(shards, output, overwrite=True)
            else:
                join(shards, output)
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()
