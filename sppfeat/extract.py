"""Streaming extraction: discover -> decode (worker processes) -> backbone + SPP -> HDF5 rows."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from . import __version__
from .backbones import DEFAULT_BACKBONE, get_backbone_spec, load_backbone
from .checkpoint import RESUME_KEYS, ProgressFolder, SegmentBuffer, listing_fingerprint, missing_ranges
from .decode import DEFAULT_DECODE_TIMEOUT, DecodeError, ResizePolicy, decode_image, parse_scales
from .descriptor import SPPDescriptor
from .discover import ImageList, list_images
from .pyramid import DEFAULT_LEVELS, POOLS, parse_levels
from .shards import parse_shard, shard_bounds
from .store import FeatureWriter, changed_settings, open_features

log = logging.getLogger("sppfeat")
DTYPES = ("float32", "float16")
SEGMENT_BYTES = 1 << 24  # vectors per progress segment: what a kill -9 can lose, and the final copy buffers
RECYCLE_EVERY = 2000  # images a CPU worker process describes before a fresh one replaces it
# Workers are forked on Linux (Python 3.14 defaults to forkserver): they share the loaded model
# copy-on-write, and _start_worker ties each one to this process as its parent.
WORKER_CONTEXT = "fork" if sys.platform.startswith("linux") else None


@dataclass
class ExtractResult:
    path: Path
    n_images: int
    n_skipped: int
    dim: int
    seconds: float
    skip_reasons: dict[str, int]

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class DecodedItem:
    """One file through the pipeline: after decoding, its pixels at each scale (H×W×3 uint8 each);
    after the model, its SPP vector (D float32). `error` is the skip reason of a bad file."""

    index: int
    pixels: list[np.ndarray] | None
    original_size: tuple[int, int]
    upsampled: bool
    error: str | None
    vector: np.ndarray | None = None


class ImageFiles(Dataset):
    """Decodes the images `indices` of an ImageList at every scale; never raises for a bad file
    (the item carries the error). Item k is image indices[k]."""

    def __init__(self, image_list: ImageList, policies: Sequence[ResizePolicy], indices: np.ndarray,
                 timeout: float = DEFAULT_DECODE_TIMEOUT):
        self.image_list = image_list
        self.policies = policies
        self.indices = indices
        self.timeout = timeout

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> DecodedItem:
        index = int(self.indices[k])
        path = self.image_list.file(index)
        try:
            images = [decode_image(path, policy, self.timeout) for policy in self.policies]
        except DecodeError as exc:
            return DecodedItem(index, None, (0, 0), False, str(exc))
        # numpy, not torch: arrays travel from the workers by pickling, without the file-descriptor
        # sharing of torch tensors (whose server thread prints tracebacks when a run is interrupted)
        return DecodedItem(index, [image.pixels for image in images], images[0].original_size,
                           any(image.upsampled for image in images), None)


def group_by_shape(items: list[DecodedItem]) -> dict[tuple[int, ...], list[tuple[DecodedItem, int]]]:
    """Group (item, scale index) pairs by pixel shape; every group runs as one forward pass."""
    groups: dict[tuple[int, ...], list[tuple[DecodedItem, int]]] = defaultdict(list)
    for item in items:
        if item.error is None:
            for k, pixels in enumerate(item.pixels):
                groups[tuple(pixels.shape)].append((item, k))
    return groups


@torch.inference_mode()
def describe(model: SPPDescriptor, items: list[DecodedItem], device: torch.device) -> list[DecodedItem]:
    """Fill in the SPP vector of every decoded item and drop its pixels. Each shape group is one
    batch (no padding). With several scales, an image's vectors are combined bin by bin: maximum
    for max pooling, mean for average pooling."""
    per_scale: dict[int, list[np.ndarray]] = defaultdict(list)
    for group in group_by_shape(items).values():
        batch = torch.from_numpy(np.stack([item.pixels[k] for item, k in group]))
        if device.type == "cuda":
            batch = batch.pin_memory()
        batch = batch.to(device, non_blocking=True)
        for (item, _), vector in zip(group, model(batch).cpu().numpy()):
            per_scale[item.index].append(vector)
    combine = np.maximum.reduce if model.pool == "max" else lambda v: np.mean(v, axis=0)
    for item in items:
        vectors = per_scale.get(item.index)
        if vectors:
            item.vector = vectors[0] if len(vectors) == 1 else combine(vectors)
        item.pixels = None
    return items


def _as_list(items: list[DecodedItem]) -> list[DecodedItem]:
    return items


def _start_worker(parent: int, runs_network: bool, worker_id: int) -> None:
    """Worker set-up. SIGINT and SIGTERM are left to the main process, which saves the finished
    images and then stops the workers (Ctrl-C and a scheduler's SIGTERM reach the whole process
    group; a worker killed by them would make the main process fail instead of stopping cleanly).
    On Linux the worker ends when the main process `parent` dies, also by kill -9; otherwise it
    can block forever on a full result pipe and keep the caller's pipes open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    if runs_network:
        # one intra-op thread: a forked child that starts an OpenMP team of its parent's hangs (libgomp)
        torch.set_num_threads(1)


def describe_stream(model: SPPDescriptor, batches: Iterable[list[DecodedItem]], device: torch.device,
                    model_threads: int) -> Iterator[list[DecodedItem]]:
    """Describe decoded batches in order. With model_threads > 1 (CPU), that many batches run through
    the network at once in Python threads (PyTorch releases the GIL inside its ops), each with
    cores / model_threads intra-op threads: whole images in parallel instead of splitting small
    convolutions across cores. Output order is input order."""
    if model_threads <= 1:
        for items in batches:
            yield describe(model, items, device)
        return
    with ThreadPoolExecutor(model_threads, thread_name_prefix="sppfeat-model") as pool:
        pending: deque = deque()
        for items in batches:
            pending.append(pool.submit(describe, model, items, device))
            if len(pending) > model_threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def describe_in_workers(model: SPPDescriptor, dataset: ImageFiles, batch_size: int,
                        workers: int) -> Iterator[list[DecodedItem]]:
    """CPU: worker processes that each decode a batch and run it through the network on one core,
    in input order; only the vectors come back to this process. The workers are replaced by fresh
    ones every RECYCLE_EVERY images: images of ever new sizes fragment a process's heap, so a
    long-lived one grows for tens of thousands of images (README, Memory)."""
    describe_batch = partial(describe, model, device=torch.device("cpu"))
    for start in range(0, len(dataset), RECYCLE_EVERY):
        part = Subset(dataset, range(start, min(start + RECYCLE_EVERY, len(dataset))))
        yield from batches(part, batch_size, workers, describe_batch, runs_network=True)


def batches(dataset: Dataset, batch_size: int, workers: int, collate, runs_network: bool) -> DataLoader:
    """Batches of `dataset` in order, each a list of items passed through `collate`, made by
    `workers` processes (0: in this process) set up by _start_worker."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      worker_init_fn=partial(_start_worker, os.getpid(), runs_network),
                      prefetch_factor=4 if workers else None, persistent_workers=False,
                      multiprocessing_context=WORKER_CONTEXT if workers else None)


def resolve_device(device: str) -> torch.device:
    """'auto' -> the first CUDA device if there is one, else the CPU; ValueError if unavailable."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA device is available")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (use auto, cpu, cuda or cuda:N)")
    return resolved


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup (a container's --cpus), in cores; None if unlimited
    or unknown. Reads cgroup v2 ``cpu.max`` or v1 ``cpu/cpu.cfs_quota_us`` under `root`."""
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


def available_cores() -> int:
    """CPU cores this process may use: its CPU affinity (taskset, Slurm), capped by a cgroup CPU
    quota (containers), where os.cpu_count() would report every core of the host."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, math.ceil(limit)) if limit else cores)


def default_workers(device: torch.device, cores: int) -> int:
    """Worker processes. On the CPU they decode and run the network, one per core; for a GPU they
    only decode, one per core beyond the first (at most 8)."""
    return max(1, cores) if device.type == "cpu" else max(1, min(8, cores - 1))


def default_model_threads(device: torch.device, cores: int) -> int:
    """Images in flight through the network at once in the main process: one per core on the CPU
    (used when there are no worker processes), one on a GPU."""
    return max(1, cores) if device.type == "cpu" else 1


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


class WorkerFailed(RuntimeError):
    """A worker process died (e.g. killed by the out-of-memory killer); the finished images are saved
    for ``resume=True``."""


def saved_so_far(progress: ProgressFolder, total: int) -> str:
    """'after N of M images; they are saved in ... --resume ...', for a run that stopped early."""
    n_done = sum(s.end - s.start for s in progress.listed())
    return (f"after {n_done} of {total} images; they are saved in {progress.path} - rerun the same command "
            "with --resume to continue")


class ExtractionInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped an extraction; the finished images are saved for ``resume=True``."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or signal.Signals(signum).name)
        self.signum = signum


def segment_size(dim: int, dtype: str) -> int:
    """Images per progress segment: about SEGMENT_BYTES of vectors, at most 512 images."""
    return max(1, min(512, SEGMENT_BYTES // (dim * np.dtype(dtype).itemsize)))


def extract(
    images: str | os.PathLike,
    output: str | os.PathLike,
    *,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = None,
    levels: str | Sequence[int] = DEFAULT_LEVELS,
    pool: str = "max",
    scale: int | str | Sequence[int] = 224,
    max_side: int = 2048,
    batch_size: int = 16,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "float32",
    dataset: str = "auto",
    split: str | None = None,
    shard: str | tuple[int, int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT,
    checkpoint_every: int | None = None,
    cores: int | None = None,
    quiet: bool = False,
) -> ExtractResult:
    """Write one SPP vector per image of `images` to the HDF5 file `output`.

    Finished images are kept in ``output.parts/`` until the end (see :mod:`sppfeat.checkpoint`);
    after an interruption, ``resume=True`` with the same arguments continues the run. `shard`
    ('i/n') extracts only the i-th of n contiguous parts of the sorted image list (merge the
    shard files with :func:`sppfeat.shards.merge`).
    Raises ValueError (bad arguments, no images, output exists without `overwrite` or `resume`,
    `strict` and a file was skipped, a resume with other settings), WeightsUnavailable (weights
    cannot be found offline), ExtractionInterrupted (SIGINT / SIGTERM; work saved) and WorkerFailed (a
    worker process died; work saved).
    `checkpoint_every`: images per progress segment (default: about 16 MiB of vectors, at most 512).
    `cores`: CPU cores this run may use (default: all this process may use, see
    :func:`available_cores`), which sets the number of worker processes.
    """
    start = time.perf_counter()
    levels = parse_levels(levels)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint interval must be >= 1 image, got {checkpoint_every}")
    if decode_timeout < 0:
        raise ValueError(f"decode timeout must be >= 0 seconds (0 = none), got {decode_timeout}")
    shard_index, shard_count = parse_shard(shard)
    output = Path(output)
    if output.exists() and not (overwrite or resume):
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise ValueError(f"output folder does not exist: {output.parent}")
    torch_device = resolve_device(device)
    cores = cores or available_cores()
    workers = default_workers(torch_device, cores) if workers is None else workers
    spec = get_backbone_spec(backbone)
    scales = parse_scales(scale)
    policies = [ResizePolicy(s, max_side, spec.min_input, spec.interpolation) for s in scales]

    image_list = list_images(images, dataset, split)
    if not image_list.paths:
        raise ValueError(f"no images found in {images}" + (
            f" ({len(image_list.skipped)} files skipped, e.g. {image_list.skipped[0][0]}: "
            f"{image_list.skipped[0][1]})" if image_list.skipped else ""))
    if strict and image_list.skipped:
        raise ValueError(f"--strict: {image_list.skipped[0][0]}: {image_list.skipped[0][1]}")
    lo, hi = shard_bounds(len(image_list.paths), shard_index, shard_count)

    loaded = load_backbone(backbone, weights)
    model = SPPDescriptor(loaded, levels, pool).to(torch_device)
    config = {
        "backbone": backbone,
        "weights_file": os.path.basename(loaded.weights_path),
        "weights_sha256": loaded.weights_sha256,
        "levels": list(levels),
        "pool": pool,
        "scale": scales[0] if len(scales) == 1 else list(scales),
        "max_side": max_side,
        "min_side": spec.min_input,
        "interpolation": spec.interpolation,
        "normalization": spec.normalization.describe(),
        "channels": spec.channels,
        "feature_dim": model.dim,
        "dtype": dtype,
        "dataset": image_list.dataset,
        "split": split or "",
        "image_root": str(Path(images).resolve()),
        "sppfeat_version": __version__,
        "torch_version": str(torch.__version__),
        "device": str(torch_device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest = {"config": config, "n_images": len(image_list.paths), "shard": [shard_index, shard_count],
                "n_listed": len(image_list.paths) + len(image_list.skipped),
                "listing_sha256": listing_fingerprint(image_list.paths, image_list.labels, image_list.skipped,
                                                      image_list.targets)}
    if output.exists() and resume and not overwrite:
        return finished_result(output, manifest)

    progress = ProgressFolder(output)
    if progress.exists() and resume:
        progress.check_resumable(manifest)
    elif progress.exists() and not overwrite:
        raise ValueError(f"an interrupted extraction left {progress.path}; pass --resume to continue it "
                         "or --overwrite to start over")
    else:
        progress.create(manifest)
    done, dropped = progress.segments(model.dim, lo, hi)
    if resume and (done or dropped):
        log.info("resuming: %d of %d images already done%s", sum(s.end - s.start for s in done), hi - lo,
                 f" ({dropped} damaged or unfinished segment files discarded)" if dropped else "")
    todo = [np.arange(a, b) for a, b in missing_ranges(done, lo, hi)]
    todo = np.concatenate(todo) if todo else np.zeros(0, dtype=np.int64)

    with StopSignals() as stop:
        try:
            buffer = SegmentBuffer(progress, model.dim, dtype, checkpoint_every or segment_size(model.dim, dtype))
            run_model(model, image_list, policies, todo, buffer, stop, torch_device, cores, batch_size, workers,
                      strict, decode_timeout, quiet, done=hi - lo - len(todo), total=hi - lo)
            n_written, skip_reasons = assemble(output, progress, image_list, config, manifest, lo, hi, model.dim)
        except ExtractionInterrupted as exc:
            raise ExtractionInterrupted(exc.signum, f"interrupted by {signal.Signals(exc.signum).name} "
                                        + saved_so_far(progress, hi - lo)) from None
        except WorkerFailed as exc:
            raise WorkerFailed(f"{exc} " + saved_so_far(progress, hi - lo) + " (with fewer --workers or a "
                               "smaller --max-side if it ran out of memory)") from None
    progress.remove()
    seconds = time.perf_counter() - start
    return ExtractResult(output, n_written, sum(skip_reasons.values()), model.dim, seconds, dict(skip_reasons))


def run_model(model: SPPDescriptor, image_list: ImageList, policies: Sequence[ResizePolicy], todo: np.ndarray,
              buffer: SegmentBuffer, stop: StopSignals, device: torch.device, cores: int, batch_size: int,
              workers: int, strict: bool, decode_timeout: float, quiet: bool, done: int, total: int) -> None:
    """Decode and describe the images `todo` (global indices, ascending) into progress segments.
    On any exception the images described so far are saved first."""
    if len(todo) == 0:
        return
    dataset = ImageFiles(image_list, policies, todo, decode_timeout)
    caller_threads = torch.get_num_threads()
    if device.type == "cpu" and workers > 0:
        stream = describe_in_workers(model, dataset, batch_size, workers)
    else:
        model_threads = default_model_threads(device, cores)
        if device.type == "cpu":
            torch.set_num_threads(max(1, cores // model_threads))
        loader = batches(dataset, batch_size, workers, _as_list, runs_network=False)
        stream = describe_stream(model, loader, device, model_threads)
    bar = tqdm(total=total, initial=done, unit="img", disable=quiet or not sys.stderr.isatty(), desc="extract",
               smoothing=0.05)
    n_upsampled = 0
    try:
        for items in stream:
            for item in items:
                if strict and item.error is not None:
                    raise ValueError(f"--strict: {image_list.paths[item.index]}: {item.error}")
                n_upsampled += item.upsampled
                with stop.critical():
                    buffer.add(item)
            bar.update(len(items))
    except RuntimeError as exc:  # torch's DataLoader reports a dead worker as a plain RuntimeError
        if not str(exc).startswith("DataLoader worker"):
            raise
        raise WorkerFailed(f"a worker process died ({str(exc).strip().rstrip('.')})") from None
    finally:
        with stop.critical():
            buffer.flush()
        bar.close()
        torch.set_num_threads(caller_threads)
    if n_upsampled:
        log.warning("%d image(s) smaller than the network's minimum input (%d px) were upsampled",
                    n_upsampled, policies[0].min_side)


def reason_kind(reason: str) -> str:
    """A skip reason without its details: 'cannot decode (OSError: ...)' -> 'cannot decode'."""
    return reason.split(" (")[0]


def shard_attributes(manifest: dict, lo: int) -> dict:
    """What a feature file records about its place in the full image list."""
    shard_index, shard_count = manifest["shard"]
    return {"listing_sha256": manifest["listing_sha256"], "n_listed_images": manifest["n_images"],
            "shard_index": shard_index, "shard_count": shard_count, "shard_start": lo}


def assemble(output: Path, progress: ProgressFolder, image_list: ImageList, config: dict, manifest: dict,
             lo: int, hi: int, dim: int) -> tuple[int, Counter]:
    """Copy the segments covering [lo, hi), in order, into the feature file `output`.
    Files refused while listing go to the `skipped` list of shard 0. Returns (rows, skip reasons)."""
    segments = progress.listed()  # each one is checked as it is read below
    if missing_ranges(segments, lo, hi) or any(a.end > b.start for a, b in zip(segments, segments[1:])):
        raise ValueError(f"{progress.path} lost segments during the run; rerun with --resume")
    reasons: Counter = Counter()
    with FeatureWriter(output, dim=dim, dtype=config["dtype"], class_names=image_list.class_names, config=config,
                       n_targets=None if image_list.targets is None else image_list.targets.shape[1],
                       attributes=shard_attributes(manifest, lo)) as writer:
        listing_skips = image_list.skipped if lo == 0 else []
        for path, reason in listing_skips:
            writer.skip(path, reason)
            reasons[reason_kind(reason)] += 1
        for info in segments:
            segment = progress.load(info.name, dim)
            if segment is None:
                raise ValueError(f"{progress.path / info.name} was damaged during the run; rerun with --resume")
            rows = segment.indices
            writer.append([image_list.paths[i] for i in rows], [image_list.labels[i] for i in rows],
                          segment.image_sizes, segment.features,
                          image_list.targets[rows] if image_list.targets is not None else None)
            for index, reason in zip(segment.skipped_indices, segment.skipped_reasons):
                writer.skip(image_list.paths[index], reason)
                reasons[reason_kind(reason)] += 1
        n_rows = writer.n_rows
        if n_rows == 0:
            raise ValueError(f"no image of {config['image_root']} could be decoded ({dict(reasons)})")
    return n_rows, reasons


def finished_result(output: Path, manifest: dict) -> ExtractResult:
    """resume=True and `output` exists: it must be the finished result of the same run."""
    features = open_features(output)
    config = manifest["config"]
    changed = changed_settings(features.config, config, RESUME_KEYS)
    if [features.attributes.get("shard_index"), features.attributes.get("shard_count")] != manifest["shard"]:
        changed.append("shard")
    if changed or features.attributes.get("listing_sha256") != manifest["listing_sha256"]:
        raise ValueError(f"{output} exists and was made with other settings or images "
                         f"({', '.join(changed) or 'image list'}); pass --overwrite to replace it")
    log.info("%s is already complete", output)
    reasons = Counter(reason_kind(reason) for _, reason in features.skipped)
    return ExtractResult(output, len(features.paths), len(features.skipped), features.dim, 0.0, dict(reasons))
