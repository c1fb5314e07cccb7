"""Streaming extraction: discover -> decode (worker processes) -> backbone + SPP -> HDF5 rows."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import __version__
from .backbones import DEFAULT_BACKBONE, get_backbone_spec, load_backbone
from .decode import DecodeError, ResizePolicy, decode_image, parse_scales
from .descriptor import SPPDescriptor
from .discover import ImageList, list_images
from .pyramid import DEFAULT_LEVELS, POOLS, parse_levels
from .store import FeatureWriter, partial_path

log = logging.getLogger("sppfeat")
DTYPES = ("float32", "float16")


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
    pixels: list[torch.Tensor] | None
    original_size: tuple[int, int]
    upsampled: bool
    error: str | None
    vector: np.ndarray | None = None


class ImageFiles(Dataset):
    """Decodes the images of an ImageList at every scale; never raises for a bad file (the item
    carries the error)."""

    def __init__(self, image_list: ImageList, policies: Sequence[ResizePolicy]):
        self.root = str(image_list.root)
        self.paths = image_list.paths
        self.policies = policies

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> DecodedItem:
        path = os.path.join(self.root, self.paths[index])
        try:
            images = [decode_image(path, policy) for policy in self.policies]
        except DecodeError as exc:
            return DecodedItem(index, None, (0, 0), False, str(exc))
        return DecodedItem(index, [torch.from_numpy(image.pixels) for image in images], images[0].original_size,
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
        batch = torch.stack([item.pixels[k] for item, k in group]).to(device, non_blocking=True)
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


def default_workers() -> int:
    """Decode processes: one per core beyond the first (at least one, at most 8)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def default_model_threads(device: torch.device) -> int:
    """Images in flight through the network at once: one per core on the CPU, one on a GPU."""
    return max(1, os.cpu_count() or 1) if device.type == "cpu" else 1


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
    overwrite: bool = False,
    strict: bool = False,
    quiet: bool = False,
) -> ExtractResult:
    """Write one SPP vector per image of `images` to the HDF5 file `output`.

    Raises ValueError (bad arguments, no images, output exists without `overwrite`, `strict` and a
    file was skipped) and WeightsUnavailable (weights cannot be found offline).
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
    output = Path(output)
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise ValueError(f"output folder does not exist: {output.parent}")
    torch_device = resolve_device(device)
    workers = default_workers() if workers is None else workers
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
    writer = FeatureWriter(output, dim=model.dim, dtype=dtype, class_names=image_list.class_names,
                           config=config, n_targets=None if image_list.targets is None else image_list.targets.shape[1])
    for path, reason in image_list.skipped:
        writer.skip(path, reason)
    model_threads = default_model_threads(torch_device)
    caller_threads = torch.get_num_threads()
    if torch_device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // model_threads))
    loader = DataLoader(ImageFiles(image_list, policies), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_as_list, pin_memory=torch_device.type == "cuda",
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    skip_reasons = Counter(reason.split(" (")[0] for _, reason in image_list.skipped)
    n_written = n_upsampled = 0
    progress = tqdm(total=len(image_list.paths), unit="img", disable=quiet or not sys.stderr.isatty(),
                    desc="extract", smoothing=0.05)
    try:
        for items in describe_stream(model, loader, torch_device, model_threads):
            good = [item for item in items if item.error is None]
            for item in items:
                if item.error is not None:
                    writer.skip(image_list.paths[item.index], item.error)
                    skip_reasons[item.error.split(" (")[0]] += 1
                    if strict:
                        raise ValueError(f"--strict: {image_list.paths[item.index]}: {item.error}")
            rows = [item.index for item in good]
            n_upsampled += sum(item.upsampled for item in good)
            writer.append([image_list.paths[i] for i in rows],
                          [image_list.labels[i] for i in rows],
                          [item.original_size for item in good],
                          np.stack([item.vector for item in good]) if good else np.zeros((0, model.dim)),
                          image_list.targets[rows] if image_list.targets is not None else None)
            n_written += len(rows)
            progress.update(len(items))
        if n_written == 0:
            raise ValueError(f"no image of {images} could be decoded ({dict(skip_reasons)})")
    except BaseException:
        writer.abort()
        partial_path(output).unlink(missing_ok=True)
        raise
    finally:
        progress.close()
        torch.set_num_threads(caller_threads)
    writer.close()
    seconds = time.perf_counter() - start
    if n_upsampled:
        log.warning("%d image(s) smaller than the network's minimum input (%d px) were upsampled",
                    n_upsampled, spec.min_input)
    return ExtractResult(output, n_written, sum(skip_reasons.values()), model.dim, seconds, dict(skip_reasons))
