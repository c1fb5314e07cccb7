"""The end of an extraction: the progress segments, in order, become the feature file; and the check
that an existing feature file is the finished result of the same run (``--resume`` after the end)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..config import RESUME, changed_settings
from ..storage.feature_file import FeatureFile, FeatureWriter, nothing_decoded, open_features, reason_kind
from ..storage.progress import ProgressFolder, Segment, missing_ranges
from .jobs import ImageJob


def placement(manifest: dict, lo: int) -> dict:
    """What a feature file records about its place in the full image list."""
    shard_index, shard_count = manifest["shard"]
    return {"listing_sha256": manifest["listing_sha256"], "n_listed_images": manifest["n_images"],
            "shard_index": shard_index, "shard_count": shard_count, "shard_start": lo}


def segment_skips(paths: list[str], segment: Segment) -> list[tuple[str, str]]:
    """(path, reason) of the segment's failed images, then of its notes (unusable parts of images)."""
    return ([(paths[i], reason) for i, reason in zip(segment.skipped_indices, segment.skipped_reasons)]
            + [(paths[i], note) for i, note in zip(segment.note_indices, segment.notes)])


def assemble(output: Path, progress: ProgressFolder, job: ImageJob, manifest: dict, lo: int, hi: int,
             dim: int, threads: int) -> tuple[int, Counter]:
    """Copy the segments covering [lo, hi), in order, into the feature file `output` (compressed in
    `threads` threads), their rows laid out by `job`. Files refused while listing go to the `skipped`
    list of shard 0. A shard may hold no row (no image in its range, or none decoded); a whole run
    without rows is refused (ValueError; its progress folder removed). Returns (rows, skip reasons)."""
    segments = progress.listed()  # each one is checked as it is read below
    if missing_ranges(segments, lo, hi) or any(a.end > b.start for a, b in zip(segments, segments[1:])):
        raise ValueError(f"{progress.path} lost segments during the run; run again with resume=True")
    record = manifest["config"]
    image_list = job.image_list
    reasons: Counter = Counter()
    with FeatureWriter(output, dim=dim, dtype=record["dtype"], class_names=image_list.class_names, record=record,
                       placement=placement(manifest, lo), extra=job.extra_datasets, threads=threads,
                       n_targets=None if image_list.targets is None else image_list.targets.shape[1]) as writer:
        def skip(entries):
            for path, reason in entries:
                writer.skip(path, reason)
                reasons[reason_kind(reason)] += 1

        skip(image_list.skipped if manifest["shard"][0] == 0 else [])
        for info in segments:
            segment = progress.load(info.name, dim)
            if segment is None:
                raise ValueError(f"{progress.path / info.name} was damaged during the run; run again with resume=True")
            writer.append(**job.rows(segment))
            skip(segment_skips(image_list.paths, segment))
        n_rows = writer.n_rows
        if n_rows == 0 and manifest["shard"][1] == 1:
            progress.remove()  # nothing to resume: a rerun starts afresh and fails alike
            raise nothing_decoded(record["image_root"], reasons)
    return n_rows, reasons


def check_finished(output: Path, manifest: dict) -> FeatureFile:
    """`output` exists and a resume was asked for: it must be the finished result of the same run
    (same settings, shard and image list); ValueError otherwise."""
    features = open_features(output)
    changed = changed_settings(features.record, manifest["config"], RESUME)
    if [features.attributes.get("shard_index"), features.attributes.get("shard_count")] != manifest["shard"]:
        changed.append("shard")
    if changed or features.attributes.get("listing_sha256") != manifest["listing_sha256"]:
        raise ValueError(f"{output} exists and was made with other settings or images "
                         f"({', '.join(changed) or 'image list'}); pass overwrite=True to replace it")
    return features
