"""The extraction settings: one typed, frozen record of what decides an image's vector, its form in
files, and which settings must agree for a resume, a merge or a model.

Every feature file, model file and progress folder records the settings of its vectors as a flat
JSON-able dict (:meth:`ExtractionConfig.to_record`: each setting under its file key, plus what the
backbone implies and the run's provenance); :meth:`ExtractionConfig.from_record` rebuilds the
typed settings from it, also from files written by sppfeat 0.1.0 (format 1, the same layout).
A new setting is a new field here with its ``checks``: resume, merge and model checks then cover it.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .backbones import DEFAULT_BACKBONE, BackboneSpec, get_backbone_spec
from .data.boxes import BOX_FORMATS
from .data.decode import DEFAULT_MAX_SIDE, ResizePolicy
from .data.discover import DATASETS, VOC_SPLITS

FORMAT_VERSION = 2  # files without a format_version attribute are format 1 (sppfeat 0.1.0)
MAX_LEVEL = 16  # bins a side: a 16×16 grid has more bins than the map of a 480 px image (15 cells) has cells
MAX_SIDE = 65_535  # pixels: the most a JPEG or WebP can have on a side
MAX_BATCH = 65_536  # images per batch (Runtime.batch_size): 39 GB of 224² float32 inputs, beyond any machine
DTYPES = ("float32", "float16")
DEFAULT_LEVELS = (6, 3, 2, 1)
POOLS = ("max", "avg")
# How a box is pooled with several scales: 'best' = at the one scale where its area is closest to
# 224 × 224 (regions only); 'max' = at every scale, combined bin by bin (the maximum; the mean for
# average pooling), as extract does with several scales.
COMBINES = ("best", "max")
# How images are shaped for the network: 'exact' = each at its own resized size (a vector is
# independent of its batch); 'bucketed' = each side also rounded to a multiple of the backbone's
# stride, so a folder has few distinct shapes and equal shapes run as one batch (see ResizePolicy).
SHAPES = ("auto", "exact", "bucketed")
# The numeric type the network computes in: float32, or bfloat16 autocast (vectors are float32).
COMPUTES = ("auto", "float32", "bfloat16")
GENERAL_SCALES = (224,)  # shorter side for plain folders and data sets without measured settings
# Settings measured best per data-set reader (docs/benchmarks.md, "Accuracy per protocol"), used
# where the caller leaves them unset, like a pretrained config; plain folders keep the general ones.
# VOC 2007 at 320: +1.7 points of mAP in CV over 224. Caltech 101 keeps 224: 256 gained 0.05 only.
DATASET_SETTINGS: dict[str, dict] = {"voc2007": {"scales": (320,)}}
# How each device kind runs the network where the caller leaves it unset (docs/benchmarks.md, GPU).
DEVICE_SETTINGS = {"cpu": {"shapes": "exact", "compute": "float32"},
                   "cuda": {"shapes": "bucketed", "compute": "bfloat16"}}
REQUIRED = object()  # a setting every record has (see setting's `absent`)

# What two records must agree on: MODEL for a model to score features, MERGE for shards of one
# extraction, RESUME for continuing an interrupted run.
MODEL, MERGE, RESUME = "model", "merge", "resume"
VECTOR = frozenset({MODEL, MERGE, RESUME})  # changes what a vector means
STORAGE = frozenset({MERGE, RESUME})  # changes which rows a file has or how they are stored


def setting(default, checks: frozenset = frozenset(), key: str | None = None, absent=REQUIRED):
    """A config field: `checks` are the comparisons it takes part in; `key` its name in files
    (default: the field name); `absent`: its value in records written before it existed."""
    return field(default=default, metadata={"checks": checks, "key": key, "absent": absent})


def check_pool(pool: str) -> str:
    """`pool` if it is one of POOLS; ValueError otherwise."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return pool


def pyramid_dim(channels: int, levels: Sequence[int]) -> int:
    """Length of a pyramid-pooled vector: channels · Σ n²."""
    return channels * sum(n * n for n in levels)


def as_levels(levels: Sequence[int], bounded: bool = True) -> tuple[int, ...]:
    """Pyramid levels as a tuple of distinct ints from 1 to MAX_LEVEL (bounded=False, for settings
    read back from files made before those bounds: any positive ints); ValueError otherwise."""
    values = _int_tuple(levels, "levels", "(6, 3, 2, 1)")
    if not values or any(n < 1 for n in values) or bounded and (max(values) > MAX_LEVEL or
                                                                 len(set(values)) != len(values)):
        raise ValueError(f"levels must be one or more distinct integers from 1 to {MAX_LEVEL}, got {levels!r}")
    return values


def as_scales(scales: Sequence[int], bounded: bool = True) -> tuple[int, ...]:
    """Shorter sides in pixels (0 = native size) as a tuple of distinct ints from 0 to MAX_SIDE
    (bounded=False: any ints >= 0, as in files made before that bound); ValueError otherwise."""
    values = _int_tuple(scales, "scales", "(224,) or (224, 288)")
    if not values or min(values) < 0 or bounded and max(values) > MAX_SIDE or len(set(values)) != len(values):
        raise ValueError(f"scales must be distinct integers from 0 to {MAX_SIDE}, got {scales!r}")
    return values


def _int_tuple(values, name: str, example: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of integers such as {example}, got {values!r}")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be integers, got {values!r}")
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class ExtractionConfig:
    """The settings that decide an image's vector.

    backbone: registry name; weights: a local state-dict file instead of the registry's (a location,
    not recorded: its checksum is); weights_sha256: the checksum the weights must have (filled in
    when a run loads them; None = any); levels: pyramid levels n (n×n bins each); pool: 'max' or
    'avg'; scales: shorter sides in pixels (0 = native size), several pooled bin by bin (None: the
    data set's measured scales, DATASET_SETTINGS, else GENERAL_SCALES); max_side: cap on the longer
    side in pixels; dtype: stored vector type; dataset: reader ('auto' until a run resolves it; the
    box format for regions); split: VOC 2007 image set (None = trainval for VOC, nothing
    otherwise); combine: how boxes use several scales (COMBINES; with one scale it is resolved to
    'max', the same vectors); shapes: SHAPES; compute: COMPUTES ('auto' for both: the device's
    DEVICE_SETTINGS). A run records its settings resolved (:meth:`resolved`).
    """

    backbone: str = setting(DEFAULT_BACKBONE, VECTOR)
    weights: Path | None = setting(None)
    weights_sha256: str | None = setting(None, VECTOR)
    levels: tuple[int, ...] = setting(DEFAULT_LEVELS, VECTOR)
    pool: str = setting("max", VECTOR)
    scales: tuple[int, ...] | None = setting(None, VECTOR, key="scale")
    max_side: int = setting(DEFAULT_MAX_SIDE, VECTOR)
    dtype: str = setting("float32", STORAGE)
    dataset: str = setting("auto", STORAGE)
    split: str | None = setting(None, STORAGE)
    combine: str = setting("max", VECTOR, absent="max")
    shapes: str = setting("auto", VECTOR, absent="exact")
    compute: str = setting("auto", VECTOR, absent="float32")
    recorded: InitVar[bool] = False  # rebuilt from a file's record: what it was made with stands

    def __post_init__(self, recorded: bool):
        get_backbone_spec(self.backbone)
        set_ = object.__setattr__  # frozen: normalise the types once, here
        set_(self, "_recorded", recorded)  # not a field: kept by replace(), not compared
        set_(self, "levels", as_levels(self.levels, bounded=not recorded))
        if self.scales is not None:
            set_(self, "scales", as_scales(self.scales, bounded=not recorded))
        set_(self, "weights", None if self.weights is None else Path(self.weights))
        check_pool(self.pool)
        if not isinstance(self.max_side, numbers.Integral) or not 1 <= self.max_side <= (
                self.max_side if recorded else MAX_SIDE):
            raise ValueError(f"max_side must be an integer from 1 to {MAX_SIDE}, got {self.max_side!r}")
        if self.scales is not None and max(self.scales) > self.max_side and not recorded:
            raise ValueError(f"scales={self.scales} cannot take effect with max_side={self.max_side}: every image "
                             f"is capped at {self.max_side} px on its longer side, so its shorter side never "
                             f"reaches {max(self.scales)} px")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.dataset not in DATASETS + BOX_FORMATS:
            raise ValueError(f"dataset must be one of {DATASETS + BOX_FORMATS}, got {self.dataset!r}")
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        for name, choices in (("shapes", SHAPES), ("compute", COMPUTES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.scales is not None and len(self.scales) == 1:
            set_(self, "combine", "max")
        if self.split is not None and self.split not in VOC_SPLITS:
            raise ValueError(f"split must be one of {VOC_SPLITS} or None, got {self.split!r}")

    def check_whole_images(self) -> None:
        """ValueError unless the settings describe whole images (combine='best' is for boxes)."""
        if self.combine == "best":
            raise ValueError("combine='best' chooses a scale per box: it applies to regions; use combine='max'")

    @property
    def spec(self) -> BackboneSpec:
        return get_backbone_spec(self.backbone)

    @property
    def feature_dim(self) -> int:
        """D = channels · Σ n²."""
        return pyramid_dim(self.spec.channels, self.levels)

    def resolved(self, dataset: str, split: str | None, device_type: str) -> "ExtractionConfig":
        """The settings a run uses: the reader `dataset` and `split` it found, the data set's
        measured settings (DATASET_SETTINGS) where unset, and the defaults of `device_type` ('cpu',
        'cuda') for shapes and compute where 'auto'."""
        changes = {"dataset": dataset, "split": split}
        if self.scales is None:
            changes["scales"] = DATASET_SETTINGS.get(dataset, {}).get("scales", GENERAL_SCALES)
        return self.replace(**changes).for_device(device_type)

    def for_device(self, device_type: str) -> "ExtractionConfig":
        """Shapes and compute left 'auto' set to the defaults of `device_type` ('cpu', 'cuda')."""
        defaults = DEVICE_SETTINGS.get(device_type, DEVICE_SETTINGS["cpu"])
        return self.replace(**{name: value for name, value in defaults.items() if getattr(self, name) == "auto"})

    def dataset_settings_used(self, unresolved: "ExtractionConfig") -> dict:
        """{setting: value} of DATASET_SETTINGS this resolved config took because `unresolved` left them unset."""
        measured = DATASET_SETTINGS.get(self.dataset, {})
        return {name: value for name, value in measured.items() if getattr(unresolved, name) is None}

    @property
    def is_resolved(self) -> bool:
        return self.scales is not None and "auto" not in (self.shapes, self.compute)

    def _check_resolved(self) -> None:
        if not self.is_resolved:
            raise ValueError("the settings are not resolved yet (scales, shapes or compute left to the run): "
                             "use config.resolved(dataset, split, device_type)")

    def resize_policies(self) -> list[ResizePolicy]:
        """One resize rule per scale, with the backbone's smallest input and interpolation, and its
        stride when shapes are bucketed."""
        self._check_resolved()
        spec = self.spec
        stride = spec.stride if self.shapes == "bucketed" else 0
        return [ResizePolicy(s, self.max_side, spec.min_input, spec.interpolation, stride) for s in self.scales]

    def replace(self, **changes) -> "ExtractionConfig":
        """A copy with `changes`; settings rebuilt from a file stay judged as recorded ones."""
        return dataclasses.replace(self, **changes, recorded=self._recorded)

    def to_record(self) -> dict:
        """The settings as file attributes (JSON-able), with what the backbone implies."""
        self._check_resolved()
        record = {}
        for f in dataclasses.fields(self):
            if f.metadata["checks"]:
                record[f.metadata["key"] or f.name] = _encode(f.name, getattr(self, f.name))
        spec = self.spec
        record.update(min_side=spec.min_input, interpolation=spec.interpolation,
                      normalization=spec.normalization.describe(), channels=spec.channels,
                      feature_dim=self.feature_dim, format_version=FORMAT_VERSION)
        return record

    @classmethod
    def from_record(cls, record: dict) -> "ExtractionConfig":
        """The settings a file's record was made with; ValueError naming a missing key."""
        values = {}
        for f in dataclasses.fields(cls):
            key = f.metadata["key"] or f.name
            if f.metadata["checks"]:
                if key not in record and f.metadata["absent"] is REQUIRED:
                    raise ValueError(f"the recorded extraction settings lack {key!r}")
                values[f.name] = _decode(f.name, record[key]) if key in record else f.metadata["absent"]
        return cls(**values, recorded=True)


# The defaults of regions: at most 16 KB of raw vector per box (R-CNN's fc7 in float32); chosen by
# accuracy per byte on the VOC 2007 sample's boxes (docs/benchmarks.md, Regions).
REGION_DEFAULTS = ExtractionConfig(scales=(480,), levels=(2, 1), dtype="float16", combine="best")
# Window vectors of the detectors (train-detector, detect): one conv map per image at this scale,
# every window pooled from it (docs/detection.md says how they were chosen).
DETECTION_DEFAULTS = ExtractionConfig(scales=(688,), levels=(3, 2, 1))


def _encode(name: str, value):
    if name == "scales":
        return value[0] if len(value) == 1 else list(value)
    if isinstance(value, tuple):
        return list(value)
    return "" if value is None else value


def _decode(name: str, value):
    if name == "scales":
        return (int(value),) if isinstance(value, int) else tuple(value)
    if isinstance(value, list):
        return tuple(value)
    if name in ("split", "weights_sha256") and value == "":
        return None
    return value


# Keys a record has besides the fields, and the comparisons they take part in.
DERIVED_CHECKS = {"normalization": VECTOR, "feature_dim": VECTOR, "min_side": STORAGE,
                  "interpolation": STORAGE, "image_root": frozenset({RESUME})}


def checked_keys(purpose: str) -> tuple[str, ...]:
    """The record keys that must agree for `purpose` (MODEL, MERGE or RESUME)."""
    keys = [f.metadata["key"] or f.name for f in dataclasses.fields(ExtractionConfig)
            if purpose in f.metadata["checks"]]
    return tuple(keys + [key for key, checks in DERIVED_CHECKS.items() if purpose in checks])


# the value of a setting in records written before it existed
ABSENT = {f.metadata["key"] or f.name: f.metadata["absent"] for f in dataclasses.fields(ExtractionConfig)
          if f.metadata["absent"] is not REQUIRED}


def changed_settings(old: dict, new: dict, purpose: str) -> list[str]:
    """The record keys checked for `purpose` in which two records differ."""
    return [key for key in checked_keys(purpose) if old.get(key, ABSENT.get(key)) != new.get(key, ABSENT.get(key))]


# record key -> config field ('scale' -> 'scales')
FIELD_NAMES = {f.metadata["key"] or f.name: f.name for f in dataclasses.fields(ExtractionConfig)}


def setting_text(key: str, record: dict) -> str:
    """A recorded setting as the Python API writes it: 'levels=(2, 1)', 'scales=(224,)', "pool='max'"
    (the command line shows its flags instead: --levels 2,1, --scale 224, --pool max)."""
    name, value = FIELD_NAMES.get(key, key), record.get(key, ABSENT.get(key))
    return f"{name}={value if value is None else _decode(name, value)!r}"


def describe_settings(settings: dict) -> str:
    """{field: value} -> 'scale=320' in the CLI's spelling ('' for none)."""
    parts = []
    for name, value in settings.items():
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        parts.append(f"{'scale' if name == 'scales' else name}={shown}")
    return ", ".join(parts)


def provenance(weights_path: str | os.PathLike, image_root: str | os.PathLike, device: str) -> dict:
    """What a record keeps about the run besides its settings."""
    import torch

    from . import __version__

    return {"weights_file": os.path.basename(weights_path), "image_root": str(Path(image_root).resolve()),
            "sppfeat_version": __version__, "torch_version": str(torch.__version__), "device": device,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
