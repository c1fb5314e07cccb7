"""How a run uses the machine: the device, the CPU cores it may use, worker processes that decode
(and, on the CPU, run the network), their replacement every RECYCLE_EVERY images, and model threads.
Nothing here changes a vector beyond its last bits (batching)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..config import MAX_BATCH
from ..cores import available_cores
from ..data.decode import (DEFAULT_DECODE_TIMEOUT, MAX_DECODE_TIMEOUT, DecodedImage, DecodeError, ResizePolicy,
                           decode_scales)
from ..data.discover import ImageList
from .descriptor import DecodedItem
from .gather import ShapeGatherer

# describes a batch of decoded items on a device and returns them: descriptor.describe_items with
# its model bound, or a region describer
Describe = Callable[[list[DecodedItem], torch.device], list[DecodedItem]]

RECYCLE_EVERY = 2000  # images a CPU worker process describes before a fresh one replaces it
# Workers are forked on Linux (Python 3.14 defaults to forkserver): they share the loaded model
# copy-on-write, and _start_worker ties each one to this process as its parent.
WORKER_CONTEXT = "fork" if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class Runtime:
    """How a run uses the machine (never what a vector is).

    device: 'auto', 'cpu', 'cuda' or 'cuda:N'; batch_size: images per batch (None: 16 on the CPU,
    where a worker process decodes and describes a batch; 256 on a GPU, where decoded images wait
    by shape until a batch of one shape is full); workers: worker
    processes (None: one per core on the CPU, cores - 1 for a GPU; 0: all in this process); cores:
    CPU cores the run may use (None: :func:`sppfeat.cores.available_cores`); decode_timeout: seconds per image
    and scale before it is skipped (0 = no limit, at most a day); checkpoint_every: images per progress segment
    (None: about 16 MiB of vectors, at most 512).
    """

    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    cores: int | None = None
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT
    checkpoint_every: int | None = None

    def __post_init__(self):
        for name in ("batch_size", "workers", "cores", "checkpoint_every"):
            value, least = getattr(self, name), 0 if name == "workers" else 1
            if value is not None and value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if self.batch_size is not None and self.batch_size > MAX_BATCH:
            raise ValueError(f"batch_size must be at most {MAX_BATCH}, got {self.batch_size}")
        if not 0 <= self.decode_timeout <= MAX_DECODE_TIMEOUT:
            raise ValueError(f"decode_timeout must be 0 (none) to {MAX_DECODE_TIMEOUT} seconds, got "
                             f"{self.decode_timeout}")


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


def default_batch_size(device: torch.device) -> int:
    """Images per batch: 16 on the CPU (more gives no speed there); 256 on a GPU, whose kernels
    need large batches to keep busy (docs/benchmarks.md, GPU)."""
    return 16 if device.type == "cpu" else 256


DECODE_BATCH = 32  # images a decode worker hands over at once when this process gathers batches
WAITING_BATCHES = 4  # batches' worth of decoded images that may wait for their shape's batch to fill


def default_workers(device: torch.device, cores: int) -> int:
    """Worker processes. On the CPU they decode and run the network, one per core; for a GPU they
    only decode, one per core beyond the first (at most 32): a GPU describes a few thousand images a
    second, a decoding core a few hundred."""
    return max(1, cores) if device.type == "cpu" else max(1, min(32, cores - 1))


def default_model_threads(device: torch.device, cores: int) -> int:
    """Batches in flight through the network at once in the main process: one per core on the CPU
    (used when there are no worker processes); two on a GPU, so that one batch is stacked and
    copied while the other runs, each on its own CUDA stream."""
    return max(1, cores) if device.type == "cpu" else 2


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
            images = decode_scales(path, self.policies, self.timeout)
        except DecodeError as exc:
            return DecodedItem(index, None, (0, 0), False, str(exc))
        return self.item(index, images)

    def item(self, index: int, images: list[DecodedImage]) -> DecodedItem:
        """The item of image `index` decoded at every scale."""
        # numpy, not torch: arrays travel from the workers by pickling, without the file-descriptor
        # sharing of torch tensors (whose server thread prints tracebacks when a run is interrupted)
        return DecodedItem(index, [image.pixels for image in images], images[0].original_size,
                           any(image.upsampled for image in images), None)


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


def batches(dataset: Dataset, batch_size: int, workers: int, collate, runs_network: bool) -> DataLoader:
    """Batches of `dataset` in order, each a list of items passed through `collate`, made by
    `workers` processes (0: in this process) set up by _start_worker."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      worker_init_fn=partial(_start_worker, os.getpid(), runs_network),
                      prefetch_factor=4 if workers else None, persistent_workers=False,
                      multiprocessing_context=WORKER_CONTEXT if workers else None)


@contextmanager
def running(loader: DataLoader) -> Iterator[Iterator]:
    """The loader's iterator; its worker processes are stopped on leaving, also when an exception
    passes through (a worker ignores SIGTERM, so the interpreter's exit could not stop it)."""
    iterator = iter(loader)
    try:
        yield iterator
    finally:
        getattr(iterator, "_shutdown_workers", lambda: None)()


def on_own_stream(describe: Describe) -> Describe:
    """`describe` running on a CUDA stream of the calling thread's own (created on first use), so
    that model threads overlap one batch's copies with another's kernels; it waits for its stream
    before returning the vectors."""
    local = threading.local()

    def run(items: list[DecodedItem], device: torch.device) -> list[DecodedItem]:
        if not hasattr(local, "stream"):
            local.stream = torch.cuda.Stream(device)
        with torch.cuda.stream(local.stream):
            described_items = describe(items, device)
        local.stream.synchronize()
        return described_items

    return run


def describe_in_threads(describe: Describe, batches_in: Iterator[list[DecodedItem]], device: torch.device,
                        model_threads: int) -> Iterator[list[DecodedItem]]:
    """Describe decoded batches in order. With model_threads > 1, that many batches run through the
    network at once in Python threads (PyTorch releases the GIL inside its ops). On the CPU each
    has cores / model_threads intra-op threads: whole images in parallel instead of splitting small
    convolutions across cores; on a GPU each has its own CUDA stream. Output order is input order."""
    if model_threads <= 1:
        for items in batches_in:
            yield describe(items, device)
        return
    if device.type == "cuda":
        describe = on_own_stream(describe)
    with ThreadPoolExecutor(model_threads, thread_name_prefix="sppfeat-model") as pool:
        pending: deque = deque()
        for items in batches_in:
            pending.append(pool.submit(describe, items, device))
            if len(pending) > model_threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def describe_in_workers(describe: Describe, dataset: ImageFiles, batch_size: int,
                        workers: int) -> Iterator[list[DecodedItem]]:
    """CPU: worker processes that each decode a batch and run it through the network on one core,
    in input order; only the vectors come back to this process. The workers are replaced by fresh
    ones every RECYCLE_EVERY images: images of ever new sizes fragment a process's heap, so a
    long-lived one grows for tens of thousands of images (docs/benchmarks.md, Memory)."""
    describe_batch = partial(describe, device=torch.device("cpu"))
    for start in range(0, len(dataset), RECYCLE_EVERY):
        part = Subset(dataset, range(start, min(start + RECYCLE_EVERY, len(dataset))))
        with running(batches(part, batch_size, workers, describe_batch, runs_network=True)) as described_batches:
            yield from described_batches


@contextmanager
def described(describe: Describe, dataset: ImageFiles, device: torch.device,
              runtime: Runtime) -> Iterator[Iterator[list[DecodedItem]]]:
    """The described images of `dataset`, in order, in lists, by the scheme that suits the device:
    on the CPU, worker processes that decode and run the network; otherwise (a GPU, or workers=0)
    decode workers feeding this process, where images are gathered into batches of one shape
    (:mod:`.gather`) that model threads run (on a GPU with cuDNN autotuning when the shapes are
    bucketed, so few). On exit the worker processes are stopped (not left to garbage collection,
    which at interpreter exit can come after multiprocessing waits for them) and the caller's torch
    thread count and cuDNN setting are restored."""
    cores = runtime.cores or available_cores()
    workers = min(default_workers(device, cores) if runtime.workers is None else runtime.workers, len(dataset))
    batch_size = runtime.batch_size or default_batch_size(device)
    caller_threads, caller_autotune = torch.get_num_threads(), torch.backends.cudnn.benchmark
    with ExitStack() as stack:
        if device.type == "cpu" and workers > 0:
            stream = inner = describe_in_workers(describe, dataset, batch_size, workers)
        else:
            model_threads = default_model_threads(device, cores)
            if device.type == "cpu":
                torch.set_num_threads(max(1, cores // model_threads))
            else:
                torch.backends.cudnn.benchmark = all(policy.stride for policy in dataset.policies)
            decoded = stack.enter_context(running(batches(dataset, min(DECODE_BATCH, batch_size), workers, _as_list,
                                                          False)))
            gatherer = ShapeGatherer(batch_size, WAITING_BATCHES * batch_size)
            inner = describe_in_threads(describe, gatherer.batches(decoded), device, model_threads)
            stream = gatherer.released(inner)
        try:
            yield stream
        finally:
            stream.close()
            inner.close()
            torch.set_num_threads(caller_threads)
            torch.backends.cudnn.benchmark = caller_autotune
