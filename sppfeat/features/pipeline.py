"""`extract`: list the images -> plan the run (shard, settings, progress) -> describe the missing
images into progress segments -> assemble the feature file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..config import ExtractionConfig, describe_settings, provenance
from ..cores import available_cores
from ..data.discover import ImageList, list_images
from ..meter import Meter
from ..shards import check_shard, shard_bounds, shard_path
from ..storage.hdf5 import check_output
from ..storage.progress import ProgressFolder, SegmentBuffer, missing_ranges
from .assemble import assemble, check_finished
from .descriptor import DecodedItem, build_descriptor
from .interrupts import StopSignals, reported_stops, worker_failure
from .jobs import ImageJob
from .runtime import Describe, ImageFiles, Runtime, described, resolve_device

log = logging.getLogger("sppfeat")
SEGMENT_BYTES = 1 << 24  # vectors per progress segment: what a kill -9 can lose, and the final copy buffers


@dataclass
class ExtractResult:
    """path: the feature file written (a shard's own file for a shard); n_images: rows; n_skipped:
    files not extracted; dim: D; seconds: wall time of this call (0 when the file was already
    complete); skip_reasons: {reason without details: count}; startup_seconds: from the call to
    the first described batch (listing, weights, workers' start); steady_images_per_second: from
    the first described batch to the last (NaN with fewer than two batches)."""

    path: Path
    n_images: int
    n_skipped: int
    dim: int
    seconds: float
    skip_reasons: dict[str, int]
    startup_seconds: float = float("nan")
    steady_images_per_second: float = float("nan")

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


def segment_rows(dim: int, dtype: str) -> int:
    """Rows of SEGMENT_BYTES of vectors."""
    return max(1, SEGMENT_BYTES // (dim * np.dtype(dtype).itemsize))


def segment_size(dim: int, dtype: str) -> int:
    """Images per progress segment: about SEGMENT_BYTES of vectors, at most 512 images."""
    return min(512, segment_rows(dim, dtype))


def extract(images: str | os.PathLike, output: str | os.PathLike, config: ExtractionConfig | None = None,
            runtime: Runtime | None = None, *, shard: tuple[int, int] | None = None, resume: bool = False,
            overwrite: bool = False, strict: bool = False, quiet: bool = False) -> ExtractResult:
    """Write one SPP vector per image under the folder `images` to the HDF5 file `output`.

    config: the settings of the vectors (default ExtractionConfig()); runtime: how the run uses the
    machine (default Runtime()). shard (i, n): extract only the i-th of n contiguous parts of the
    sorted image list, into OUT.shard-0000i-of-0000n.h5 next to `output` (join them with
    :func:`sppfeat.merge`). Finished images are kept in ``<file>.parts/`` until the end; after an
    interruption, ``resume=True`` with the same arguments continues the run.
    Raises ValueError (bad arguments, no images, output exists without `overwrite` or `resume`,
    `strict` and a file was skipped, a resume with other settings), WeightsUnavailable (weights
    cannot be found offline), ExtractionInterrupted (SIGINT / SIGTERM; work saved) and WorkerFailed
    (a worker process died; work saved).
    """
    config = config or ExtractionConfig()
    config.check_whole_images()
    return run(lambda: ImageJob(list_all(images, config, strict)), images, output, config, runtime or Runtime(),
               shard=shard, resume=resume, overwrite=overwrite, strict=strict, quiet=quiet)


def run(make_job: Callable[[], ImageJob], images: str | os.PathLike, output: str | os.PathLike,
        config: ExtractionConfig, runtime: Runtime, *, shard: tuple[int, int] | None, resume: bool, overwrite: bool,
        strict: bool, quiet: bool, inputs: tuple = ()) -> ExtractResult:
    """An extraction run: check the output (none of `inputs`) -> list (``make_job()``) -> plan the shard and the
    progress -> describe the missing images into segments -> assemble the feature file.
    ExtractResult.n_images counts the rows written."""
    start = time.monotonic()
    shard_index, shard_count = check_shard(shard)
    output = shard_path(output, shard_index, shard_count) if shard is not None else Path(output)
    check_output(output, overwrite or resume, inputs)
    device = resolve_device(runtime.device)
    job = make_job()
    lo, hi = shard_bounds(len(job.image_list.paths), shard_index, shard_count)

    given = config
    config = config.resolved(job.image_list.dataset, job.image_list.split, device.type)
    model, config, weights_path = build_descriptor(config, device)
    record = {**config.to_record(), **provenance(weights_path, job.image_list.root, str(device)),
              "dataset_settings": describe_settings(config.dataset_settings_used(given)), **job.provenance()}
    manifest = {"config": record,
                "shard": [shard_index, shard_count], "n_images": len(job.image_list.paths),
                "n_listed": len(job.image_list.paths) + len(job.image_list.skipped),
                "listing_sha256": job.fingerprint()}
    if output.exists() and resume and not overwrite:
        finished = check_finished(output, manifest)
        log.info("%s is already complete", output)
        return ExtractResult(output, len(finished.paths), len(finished.skipped), finished.dim, 0.0,
                             dict(finished.skip_reasons))

    progress = ProgressFolder(output)
    with StopSignals() as stop, reported_stops(progress, hi - lo, model.dim * np.dtype(config.dtype).itemsize):
        open_progress(progress, manifest, resume, overwrite)
        done, dropped = progress.segments(model.dim, lo, hi)
        if resume and (done or dropped):
            log.info("resuming: %d of %d images already done%s", sum(s.end - s.start for s in done), hi - lo,
                     f" ({dropped} damaged or unfinished segment files discarded)" if dropped else "")
        todo = [np.arange(a, b) for a, b in missing_ranges(done, lo, hi)]
        todo = np.concatenate(todo) if todo else np.zeros(0, dtype=np.int64)
        images_per_segment = runtime.checkpoint_every or segment_size(model.dim, config.dtype)
        buffer = SegmentBuffer(progress, model.dim, config.dtype, images_per_segment,
                               max(images_per_segment, segment_rows(model.dim, config.dtype)))
        meter = run_model(job.describer(model, config), job.dataset(todo, config, runtime.decode_timeout), buffer,
                          stop, device, runtime, strict, quiet, done=hi - lo - len(todo), total=hi - lo)
        n_written, skip_reasons = assemble(output, progress, job, manifest, lo, hi, model.dim,
                                           runtime.cores or available_cores())
    progress.remove()
    seconds = time.monotonic() - start
    startup = meter.first[0] - start if meter and meter.first else float("nan")
    return ExtractResult(output, n_written, sum(skip_reasons.values()), model.dim, seconds, dict(skip_reasons),
                         startup, meter.steady_rate() if meter else float("nan"))


def list_all(images: str | os.PathLike, config: ExtractionConfig, strict: bool) -> ImageList:
    """The image list of `images`; ValueError when it is empty, or when `strict` and a file was refused."""
    image_list = list_images(images, config.dataset, config.split)
    skipped = image_list.skipped
    if not image_list.paths:
        raise ValueError(f"no images found in {images}" + (
            f" ({len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    if strict and skipped:
        raise ValueError(f"strict=True: {skipped[0][0]}: {skipped[0][1]}")
    return image_list


def open_progress(progress: ProgressFolder, manifest: dict, resume: bool, overwrite: bool) -> None:
    """Continue the interrupted run's folder when resuming (checked against `manifest`), else start a
    new one. ValueError for a leftover folder without resume or overwrite."""
    if progress.exists() and resume:
        progress.check_resumable(manifest)
    elif progress.exists() and not overwrite:
        raise ValueError(f"an interrupted extraction left {progress.path}; pass resume=True to continue it "
                         "or overwrite=True to start over")
    else:
        progress.create(manifest)


class ItemSink(Protocol):
    """Where described images go, in index order: a SegmentBuffer, or predict's rows."""

    def add(self, item: DecodedItem) -> None: ...

    def flush(self) -> None: ...


def run_model(describe: Describe, dataset: ImageFiles, buffer: ItemSink, stop: StopSignals,
              device: torch.device, runtime: Runtime, strict: bool, quiet: bool, done: int, total: int,
              desc: str = "extract") -> Meter | None:
    """Decode and describe the images of `dataset` into `buffer` (progress segments for extract).
    On any exception the images described so far are flushed first. Progress on stderr (see
    :mod:`sppfeat.meter`), named `desc`. Returns the meter, with the run's timing (None: no images)."""
    if len(dataset) == 0:
        return None
    meter = Meter(desc, total, done, quiet)
    n_upsampled = 0
    try:
        with described(describe, dataset, device, runtime) as stream:
            for items in stream:
                for item in items:
                    if strict and item.error is not None:
                        raise ValueError(f"strict=True: {dataset.image_list.paths[item.index]}: {item.error}")
                    n_upsampled += item.upsampled
                    with stop.critical():
                        buffer.add(item)
                meter.update(len(items))
    except RuntimeError as exc:
        failure = worker_failure(exc)
        if failure is None:
            raise
        raise failure from None
    finally:
        with stop.critical():
            buffer.flush()
        meter.close()
    if n_upsampled:
        log.warning("%d image(s) smaller than the network's minimum input (%d px) were upsampled",
                    n_upsampled, dataset.policies[0].min_side)
    return meter
