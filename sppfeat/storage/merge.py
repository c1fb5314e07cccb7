"""Merging the shard files of one extraction (``extract(shard=(i, n))``) into one feature file, and
the detection files of one detect run (``detect(shard=(i, n))``) into one detection file.

By default the merged file holds HDF5 virtual datasets (h5py ``VirtualLayout``) that map onto the
shards, so merging copies nothing and the shards must stay next to it; ``consolidate=True`` copies
every row into one ordinary file instead. Either way the rows are in the order a single-process
run gives: shard i holds a contiguous part of the sorted image list.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import h5py

from ..config import MERGE, changed_settings
from .feature_file import (PLACEMENT, FeatureFile, FeatureWriter, mark_complete, nothing_decoded, open_features,
                           shard_fingerprint, stacked_datasets, write_header)
from ..shards import check_shard, record_path
from .hdf5 import STR, check_output, partial_path

JOINED = (".csv", ".jsonl")  # detection files whose shards join by appending their rows
STANDARD = ("features", "paths", "labels", "image_sizes", "skipped", "targets")  # FeatureWriter makes these


def check_shards(paths: list[str | os.PathLike]) -> list[FeatureFile]:
    """Open the shard files and check that they are all the shards of one extraction; returns them
    in shard order. ValueError naming the first problem (a missing or foreign shard, for example),
    or when no shard holds a row (as a single run with no image decoded)."""
    shards = [open_features(p) for p in paths]
    for shard in shards:
        absent = [k for k in PLACEMENT if k not in shard.attributes]
        if absent:
            raise ValueError(f"{shard.path} has no shard information ({', '.join(absent)}); "
                             "it was not written by sppfeat extract")
        if shard.attributes.get("complete") is False:
            raise ValueError(f"{shard.path} is incomplete; run its extraction again with resume=True")
    first = shards[0]
    for shard in shards[1:]:
        changed = changed_settings(first.record, shard.record, MERGE)
        if changed:
            raise ValueError(f"{shard.path} and {first.path} were extracted with other settings ({', '.join(changed)})")
        if shard.attributes["listing_sha256"] != first.attributes["listing_sha256"]:
            raise ValueError(f"{shard.path} and {first.path} were extracted from different image lists")
    places = [(s.attributes["shard_index"], s.attributes["shard_count"]) for s in shards]
    ordered = shard_order(shards, [s.path for s in shards], places, "extract")
    if not any(s.paths for s in shards):
        raise nothing_decoded(first.record["image_root"], sum((s.skip_reasons for s in shards), Counter()))
    return ordered


def shard_order(shards: list, paths: list[Path], places: list[tuple[int, int]], command: str) -> list:
    """`shards` (named `paths`) sorted by their places (i, n), checked to be each of the n shards
    of one run exactly once; ValueError naming the first shard of another count, one given twice,
    or the missing ones (to make with `command`, e.g. 'extract', and shard=(i, n))."""
    count = places[0][1]
    by_index: dict[int, int] = {}
    for k, (index, n) in enumerate(places):
        if n != count:
            raise ValueError(f"{paths[k]} is a shard of {n}, {paths[0]} of {count}")
        if index in by_index:
            raise ValueError(f"shard {index}/{count} given twice: {paths[by_index[index]]} and {paths[k]}")
        by_index[index] = k
    absent = [i for i in range(count) if i not in by_index]
    if absent:
        raise ValueError(f"shard{'s' if len(absent) > 1 else ''} {', '.join(f'{i}/{count}' for i in absent)} "
                         f"missing ({command} with shard=({absent[0]}, {count}), or run it again with resume=True)")
    return [shards[by_index[i]] for i in range(count)]


def check_rows(path: Path) -> None:
    """ValueError naming the shard `path` and the line of a row that is not a detection (fields,
    numbers), or of a last line without its line end (a shard cut short mid-row)."""
    from ..detection.outputs import read_detections  # detection imports storage

    read_detections(path)
    with open(path, "rb") as fh:
        if fh.seek(0, os.SEEK_END) == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        lines = sum(1 for _ in fh)
    raise ValueError(f"{path}, line {lines}: cut short (no line end); run its detect shard again")


def merge_detections(shard_paths: list[str | os.PathLike], output: str | os.PathLike, *,
                     overwrite: bool = False) -> Path:
    """Join the detection files (CSV or JSONL, the suffix of `output`) of the shards of one detect
    run (``detect(shard=(i, n))``) into `output`: their rows in shard order, which is the order of
    a single run. Each shard's run record (shards.record_path, beside it) names the model, the
    settings and the image list; shards of different runs, a missing, repeated or foreign shard, and
    a shard with a row that is not a detection are refused (ValueError). Returns the path written."""
    if not shard_paths:
        raise ValueError("no shard files given")
    output = check_output(output, overwrite)
    if output.suffix.lower() not in JOINED:
        raise ValueError(f"detection shards join into a .csv or .jsonl file, got {output.name!r}")
    paths = [Path(p) for p in shard_paths]
    records = []
    for path in paths:
        if path.suffix.lower() != output.suffix.lower():
            raise ValueError(f"{path} and {output} are not of one format (detection shards join into a file with "
                             "their suffix)")
        try:
            record = json.loads(record_path(path).read_text())
            records.append((record, check_shard(tuple(record.pop("shard")))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(f"{path} has no readable run record ({record_path(path).name} beside it): it is not "
                             "a shard of sppfeat detect --shard") from None
    for path, (record, _) in zip(paths[1:], records[1:]):
        changed = sorted(k for k in records[0][0].keys() | record.keys() if records[0][0].get(k) != record.get(k))
        if changed:
            raise ValueError(f"{path} and {paths[0]} come from different detect runs (they differ in "
                             f"{', '.join(changed)})")
    ordered = shard_order(paths, paths, [place for _, place in records], "detect")
    for path in ordered:
        check_rows(path)
    if any(output.resolve() == p.resolve() for p in paths):
        raise ValueError(f"{output} is one of the shards")
    tmp, header = partial_path(output), None
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            for path in ordered:
                with open(path, encoding="utf-8", newline="") as rows:
                    if output.suffix.lower() == ".csv":  # the header once
                        line = rows.readline()
                        if header not in (None, line):
                            raise ValueError(f"{path} has other columns than {ordered[0]}")
                        out.write("" if header else line)
                        header = line
                    shutil.copyfileobj(rows, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    return output


def merge(shard_paths: list[str | os.PathLike], output: str | os.PathLike, *, consolidate: bool = False,
          overwrite: bool = False) -> Path:
    """Write `output` presenting all shards as one feature file; returns its path."""
    if not shard_paths:
        raise ValueError("no shard files given")
    output = check_output(output, overwrite)
    shards = check_shards(shard_paths)
    if any(output.resolve() == s.path.resolve() for s in shards):
        raise ValueError(f"{output} is one of the shards")
    first = shards[0]
    record = dict(first.record, shards=len(shards))
    placement = {"listing_sha256": first.attributes["listing_sha256"],
                 "n_listed_images": first.attributes["n_listed_images"], "shard_index": 0, "shard_count": 1,
                 "shard_start": 0}
    (_copy if consolidate else _link)(shards, output, record, placement)
    return output


def _copy(shards: list[FeatureFile], output: Path, record: dict, placement: dict, block: int = 1024) -> None:
    """Every stacked dataset of the shards, in shard order, into one ordinary file."""
    first = shards[0]
    with h5py.File(first.path, "r") as g:
        names = stacked_datasets(g)
    with FeatureWriter(output, dim=first.dim, dtype=first.dtype, class_names=first.class_names, record=record,
                       placement=placement, n_targets=None if first.targets is None else first.targets.shape[1],
                       extra={name: spec for name, spec in names.items() if name not in STANDARD}) as writer:
        for shard in shards:
            with h5py.File(shard.path, "r") as g:
                for name in names:
                    data = g[name].asstr() if h5py.check_string_dtype(g[name].dtype) else g[name]
                    for start in range(0, g[name].shape[0], block):
                        writer.extend(name, data[start:start + block])


def _link(shards: list[FeatureFile], output: Path, record: dict, placement: dict) -> None:
    tmp = partial_path(output)
    with h5py.File(shards[0].path, "r") as g:
        names = list(stacked_datasets(g))
    sources: dict[str, list[h5py.VirtualSource]] = {name: [] for name in names}
    fingerprints = {}  # checked each time the merged file is opened
    for shard in shards:  # each shard opened once; its datasets become sources, linked by relative path
        relative = os.path.relpath(shard.path.resolve(), output.resolve().parent)
        with h5py.File(shard.path, "r") as g:
            fingerprints[relative] = shard_fingerprint(g)
            for name in names:
                sources[name].append(h5py.VirtualSource(relative, name, shape=g[name].shape, dtype=g[name].dtype))
    with h5py.File(tmp, "w") as f:
        for name in names:
            width, dtype = sources[name][0].shape[1:], sources[name][0].dtype
            used = [source for source in sources[name] if source.shape[0]]
            if not used:  # e.g. nothing skipped in any shard
                f.create_dataset(name, shape=(0, *width), dtype=dtype)
                continue
            layout = h5py.VirtualLayout(shape=(sum(s.shape[0] for s in used), *width), dtype=dtype)
            position = 0
            for source in used:
                layout[position:position + source.shape[0]] = source
                position += source.shape[0]
            f.create_virtual_dataset(name, layout, fillvalue=None)
        write_header(f, record, placement, shards[0].class_names)
        f.create_dataset("merged_from", data=[s.path.name for s in shards], dtype=STR)
        f.attrs["shard_fingerprints"] = json.dumps(fingerprints)
        mark_complete(f, sum(len(s.paths) for s in shards), sum(len(s.skipped) for s in shards))
    os.replace(tmp, output)
