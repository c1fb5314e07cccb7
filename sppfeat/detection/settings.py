"""The settings of detector training (one owner: the API, the CLI's defaults and the model file's
record all read them here). No heavy imports: the CLI reads the defaults at start-up."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


def check_threshold(name: str, value) -> None:
    """ValueError unless `value` is a finite real number (not a bool): a score threshold `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_context(context: float) -> None:
    """ValueError unless `context` is 0 (none) or a factor >= 1 (see sppfeat.detection.maps.RegionVectors)."""
    if not (context == 0 or 1 <= context < math.inf):
        raise ValueError(f"context must be 0 (none) or a factor >= 1, got {context!r}")


@dataclass(frozen=True)
class TrainingSettings:
    """C: SVM penalty; positive_weight: cᵢ of positives; rounds: mining rounds after the first
    training; negative_iou; initial_negatives: random windows per image to start from;
    hard_margin / easy_margin: margins above which a negative is mined / below which a cached one
    is dropped; new_per_image: mined negatives per image, class and round (the highest scoring);
    stop_fraction: mining stops when a round adds fewer than this share of the cache;
    negative_cache: most window vectors cached (8 bits per value: 2.0 GB at 110,000 × 17,920):
    the initial negatives take at most a quarter of it (fewer per image beyond, at least one), and
    a round that fills it keeps its hardest negatives (see sppfeat.detection.mining); regression: learn box
    regressors (ridge, penalty `ridge`) on windows with IoU >= regression_iou to an object, at most
    regression_per_object per object and regression_per_class per class (a uniform draw); mirror:
    each object is also a positive as seen in the image flipped left-right (one more network pass
    per image with objects); context: 0, or each window's vector followed by that of the window
    enlarged this many times around its centre (twice the vector length: twice the negative
    cache's memory and the scoring's time; see sppfeat.detection.maps.RegionVectors); seed: of the
    samples."""

    C: float = 1.0
    positive_weight: float = 2.0
    rounds: int = 3
    negative_iou: float = 0.3
    initial_negatives: int = 20
    hard_margin: float = -1.0
    easy_margin: float = -1.2
    new_per_image: int = 10
    stop_fraction: float = 0.02
    negative_cache: int = 110_000
    regression: bool = True
    regression_iou: float = 0.6
    regression_per_object: int = 32
    regression_per_class: int = 10_000
    ridge: float = 0.3
    mirror: bool = False
    context: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("C", "positive_weight", "ridge"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name, least in (("rounds", 0), ("initial_negatives", 0), ("new_per_image", 0),
                            ("regression_per_object", 0), ("negative_cache", 1), ("regression_per_class", 1)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {getattr(self, name)!r}")
        if not 0 < self.negative_iou < 1 or not 0 < self.regression_iou <= 1:
            raise ValueError("negative_iou and regression_iou must be in (0, 1)")
        check_context(self.context)


@dataclass(frozen=True)
class HeadSettings:
    """The fine-tuned head (sppfeat.detection.head) and its training. reduced: channels of the 1×1
    convolution before pooling; hidden: sizes of the fully-connected layers; dropout; epochs over
    the training images; images_per_batch, windows_per_image: a mini-batch is that many windows
    of each of that many images, a share fg_fraction of them (at most) objects: windows with IoU
    >= fg_iou to a non-difficult box, labelled with its class, the rest background: IoU in
    [bg_iou_low, fg_iou) to every box (from [0, bg_iou_low) when an image has none there);
    hard_background: each background window is the hardest (highest softmax loss) of this many
    random ones (1: random, Fast R-CNN's way; more: online hard example mining); lr:
    AdamW's learning rate, decayed to 0 on a cosine; weight_decay; box_weight: of the box loss
    (smooth L1, objects only) against the softmax loss; seed: of the weights and the samples."""

    reduced: int = 256
    hidden: tuple[int, ...] = (1024, 1024)
    dropout: float = 0.5
    epochs: int = 12
    images_per_batch: int = 2
    windows_per_image: int = 64
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou_low: float = 0.1
    hard_background: int = 1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    box_weight: float = 1.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in ("reduced", "epochs", "images_per_batch", "windows_per_image", "hard_background"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"head {name} must be an integer >= 1, got {value!r}")
        if not self.hidden or any(not isinstance(v, int) or v < 1 for v in self.hidden):
            raise ValueError(f"head hidden sizes must be integers >= 1, got {self.hidden!r}")
        if not 0 < self.lr < math.inf or not 0 <= self.weight_decay < math.inf or not 0 <= self.box_weight < math.inf:
            raise ValueError("head lr must be a positive number, weight_decay and box_weight numbers >= 0")
        if not 0 <= self.dropout < 1 or not 0 < self.fg_fraction <= 1:
            raise ValueError("head dropout must be in [0, 1) and fg_fraction in (0, 1]")
        if not 0 <= self.bg_iou_low < self.fg_iou <= 1:
            raise ValueError("head IoUs must satisfy 0 <= bg_iou_low < fg_iou <= 1")


# What train-detector trains by default: HeadSettings() (the head, its fields' defaults) or None (the SVMs).
DEFAULT_HEAD: HeadSettings | None = None
