"""Training the per-class detectors with hard-negative mining (R-CNN's and SPP-net's recipe).

Positives: the non-difficult ground-truth boxes of the class. Negatives: windows with IoU below
``negative_iou`` to every box of the class (a window overlapping a difficult box of the class that
much is neither). Training starts from a random sample of windows per image; each mining round
scores every window of every image with the current SVMs, adds up to ``new_per_image`` negatives
per image and class scoring above ``hard_margin``, retrains (warm-started) and drops cached
negatives scoring below ``easy_margin``, until a round adds fewer than ``stop_fraction`` of the
cache. Window vectors are pooled on the fly from each image's conv map; only the cached negatives
are stored (8 bits per value, shared by the classes: negatives.NegativeStore), at most
``negative_cache`` of them; a class's SVM reads its positives, which grow with the images, in 8
bits too, a block at a time, and its negatives widened to float32 (bounded by the cache). When a
round fills the cache, the easy margin rises, one margin for every class, until a fifth of it is
free (the hardest negatives stay), so that memory does not grow with the images.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..libc import release_free_memory
from ..meter import Meter, peak_memory
from .flags import Flags
from .geometry import iou
from .maps import ImageMap, RegionVectors, StoredMap, mirror_boxes
from .negatives import NegativeStore
from .regression import fit_regression
from .settings import TrainingSettings
from .solver import ArrayRows, LinearSVM, QuantizedRows, StackedRows, quantize

log = logging.getLogger("sppfeat")


@dataclass
class TrainingImage:
    """One training image, ready for mining: its map (in memory or stored), its usable windows W×4
    (float32 pixels as stored), negative W×K (window is a negative of class k), its usable
    non-difficult objects G×4 (pixels as stored) and their labels G, which are the positives (and
    again in mirror_map, the map of the image flipped left-right, when there is one), regression
    samples (window indices, class, target box R×4). Its vectors are pooled when needed, so that
    what each image keeps in memory is a few kilobytes (1,500 images: ~60 MB)."""

    path: str
    image_map: ImageMap | StoredMap
    windows: np.ndarray
    negative: Flags
    objects: np.ndarray
    object_labels: np.ndarray
    reg_windows: np.ndarray
    reg_labels: np.ndarray
    reg_targets: np.ndarray
    mirror_map: ImageMap | StoredMap | None = None
    cached: Flags | None = None  # W×K: in class k's negative cache
    store_row: np.ndarray | None = None  # W int32: row in the shared store, -1 = none

    @property
    def positive_labels(self) -> np.ndarray:
        """The labels of the positives (see positives())."""
        return self.object_labels if self.mirror_map is None else np.tile(self.object_labels, 2)

    def boxes(self, rows=slice(None)) -> np.ndarray:
        """len(rows)×4 float64 windows."""
        return self.windows[rows].astype(np.float64)

    def positives(self, rv: RegionVectors, k: int | None = None) -> np.ndarray:
        """n×D float32 vectors of the positives of class k (all classes: None): the objects in the map,
        then in the mirrored map (if any)."""
        boxes = self.objects if k is None else self.objects[self.object_labels == k]
        if len(boxes) == 0:
            return np.zeros((0, rv.dim), np.float32)
        image = self.image_map.load()
        parts = [rv.pool(image, boxes)]
        if self.mirror_map is not None:
            parts.append(rv.pool(self.mirror_map.load(), mirror_boxes(image, boxes)))
        return np.concatenate(parts)


def label_windows(windows: np.ndarray, boxes: np.ndarray, labels: np.ndarray, difficult: np.ndarray, n_classes: int,
                  settings: TrainingSettings, rng: np.random.Generator, never_negative: np.ndarray | None = None):
    """(negative W×K, regression (window indices, labels, targets)) of windows W×4 against the
    image's ground truth boxes G×4 (labels G, difficult G); never_negative: W bool, windows that
    are a negative of no class (e.g. near an object whose class is unknown)."""
    overlaps = iou(windows, boxes) if len(boxes) else np.zeros((len(windows), 0))
    negative = np.ones((len(windows), n_classes), dtype=bool)
    for k in np.unique(labels):
        negative[:, k] = overlaps[:, labels == k].max(axis=1) < settings.negative_iou
    if never_negative is not None:
        negative[never_negative] = False
    picks, classes, targets = [], [], []
    easy = np.flatnonzero(~difficult)
    if len(easy) and len(windows):  # a window regresses to the non-difficult object it overlaps most
        owner = easy[overlaps[:, easy].argmax(axis=1)]
        close_enough = overlaps[:, easy].max(axis=1) >= settings.regression_iou
        for g in easy:
            close = rng.permutation(np.flatnonzero(close_enough & (owner == g)))[:settings.regression_per_object]
            picks.append(close)
            classes.append(np.full(len(close), labels[g]))
            targets.append(np.repeat(boxes[g:g + 1], len(close), axis=0))
    cat = (lambda parts, shape: np.concatenate(parts) if parts else np.zeros(shape))
    return negative, (cat(picks, 0).astype(np.int64), cat(classes, 0).astype(np.int64), cat(targets, (0, 4)))


@dataclass
class FittedDetector:
    """coef K×D, intercept K, regression K×4×(D+1) or None, stats (per round and class counts)."""

    coef: np.ndarray
    intercept: np.ndarray
    regression: np.ndarray | None
    stats: dict = field(default_factory=dict)


def fit_detector(images: list[TrainingImage], n_classes: int, rv: RegionVectors, settings: TrainingSettings,
                 quiet: bool = False) -> FittedDetector:
    """Train the K per-class SVMs on `images` with hard-negative mining (see the module)."""
    rng = np.random.default_rng(settings.seed)
    dim = rv.dim
    pos_labels = np.concatenate([im.positive_labels for im in images]) if images else np.zeros(0, np.int64)
    n_positives = np.bincount(pos_labels, minlength=n_classes)
    store = NegativeStore(dim, n_classes)
    per_image = min(settings.initial_negatives, max(1, settings.negative_cache // 4 // max(1, len(images))))
    for i, im in enumerate(images):
        im.cached = Flags.zeros(len(im.windows), n_classes)
        im.store_row = np.full(len(im.windows), -1, np.int32)
        eligible = np.flatnonzero(np.asarray(im.negative).any(axis=1))
        pick = np.sort(rng.permutation(eligible)[:per_image])
        if len(pick):
            _add(store, im, i, pick, rv.pool(im.image_map.load(), im.boxes(pick)), im.negative.rows(pick))
    coef, intercept = np.zeros((n_classes, dim), np.float32), np.zeros(n_classes)
    stats = {"positives": n_positives.tolist(), "initial_per_image": per_image,
             "mining": []}
    for round_ in range(settings.rounds + 1):
        start = time.monotonic()
        added, trimmed = _mine(images, store, coef, intercept, rv, settings, quiet, round_) if round_ else (store.n, 0)
        warm = round_ > 0
        meter = Meter(f"round {round_} SVMs", n_classes, quiet=quiet, unit="classes")
        for k in range(n_classes):
            release_free_memory()
            coef[k], intercept[k] = _train_class(images, store, k, rv, settings,
                                                 (coef[k], intercept[k]) if warm else None)
            store.member_scores[k] = store.scores(store.members[k], coef[k], intercept[k])
            learnt = n_positives[k] > 0  # a class without positives needs no negatives
            store.keep(k, (store.member_scores[k] >= settings.easy_margin) & learnt)
            meter.update(1)
        meter.close()
        store.compact(images)
        _flag_cached(images, store)
        cache = [len(m) for m in store.members]
        stats["mining"].append({"added": int(added), "trimmed": trimmed, "cache": cache,
                                "seconds": round(time.monotonic() - start, 1)})
        if not quiet:
            log.info("detector round %d: %d negatives added, %d cached (largest class %d)%s, %.0f s%s", round_, added,
                     store.n, max(cache) if cache else 0,
                     f", {trimmed} easiest dropped to stay within --negative-cache" if trimmed else "",
                     time.monotonic() - start, peak_memory())
        if round_ and added < settings.stop_fraction * max(1, sum(cache)):
            break
    del store  # the regression's own arrays take its place
    start, regression = time.monotonic(), None
    if settings.regression:
        regression = fit_regression(images, n_classes, rv, settings)
        if not quiet:
            log.info("detector box regression: %.0f s%s", time.monotonic() - start, peak_memory())
    return FittedDetector(coef, intercept, regression, stats)


def _flag_cached(images: list[TrainingImage], store: NegativeStore) -> None:
    """Each image's cached[w, k]: window w is a member of class k's cache (after a drop)."""
    owner = np.array(store.owner, np.int64).reshape(-1, 2)  # (image, window) of each row
    pairs = np.concatenate([np.column_stack([owner[members], np.full(len(members), k)])
                            for k, members in enumerate(store.members)] + [np.zeros((0, 3), np.int64)])
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    bounds = np.searchsorted(pairs[:, 0], np.arange(len(images) + 1))
    for i, im in enumerate(images):
        flags = np.zeros(im.cached.shape, bool)
        flags[pairs[bounds[i]:bounds[i + 1], 1], pairs[bounds[i]:bounds[i + 1], 2]] = True
        im.cached = Flags(flags)


def _add(store: NegativeStore, im: TrainingImage, i: int, windows: np.ndarray, vectors: np.ndarray,
         classes: np.ndarray, scores: np.ndarray | None = None) -> int:
    """Cache `windows` of image i as negatives of `classes` (len(windows)×K bool; their margins
    len(windows)×K under the current SVMs, if any); returns how many (window, class) pairs were new."""
    fresh = im.store_row[windows] < 0
    if fresh.any():
        im.store_row[windows[fresh]] = store.add(vectors[fresh], i, windows[fresh])
    new = classes & ~im.cached.rows(windows)
    for k in np.flatnonzero(new.any(axis=0)):
        store.members[k] = np.concatenate([store.members[k], im.store_row[windows[new[:, k]]]])
        margins = np.zeros(new[:, k].sum(), np.float32) if scores is None else scores[new[:, k], k]
        store.member_scores[k] = np.concatenate([store.member_scores[k], margins])
    im.cached.set(windows, new)
    return int(new.sum())


def _mine(images, store, coef, intercept, rv, settings, quiet, round_) -> tuple[int, int]:
    """(pairs added, rows trimmed to keep within the cache) of one round over the images."""
    added, trimmed, meter = 0, 0, Meter(f"mining {round_}", len(images), quiet=quiet)
    for i, im in enumerate(images):
        if len(im.windows):
            added += _mine_image(store, im, i, coef, intercept, rv, settings)
            release_free_memory()  # the image's new arrays sit among its freed temporaries
        if store.n > settings.negative_cache:  # the pairs it drops stay flagged `cached` until the
            trimmed += store.trim(settings.negative_cache * 4 // 5, images)  # round ends: not mined again
        meter.update(1)
    meter.close()
    return added, trimmed


def _mine_image(store, im, i, coef, intercept, rv, settings) -> int:
    """Cache image i's new hard negatives: at most new_per_image per class, the highest scoring."""
    unique, inverse = rv.pool_unique(im.image_map.load(), im.boxes())
    scores = (unique @ coef.T + intercept.astype(np.float32))[inverse]
    hard = np.asarray(im.negative) & ~np.asarray(im.cached) & (scores > settings.hard_margin)
    chosen = np.zeros_like(hard)
    for k in np.flatnonzero(hard.any(axis=0)):
        candidates = np.flatnonzero(hard[:, k])
        chosen[candidates[np.argsort(-scores[candidates, k])[:settings.new_per_image]], k] = True
    windows = np.flatnonzero(chosen.any(axis=1))
    return _add(store, im, i, windows, unique[inverse[windows]], chosen[windows], scores[windows])


def _train_class(images: list[TrainingImage], store: NegativeStore, k: int, rv: RegionVectors,
                 settings: TrainingSettings, warm):
    rows = store.members[k]
    holders = [im for im in images if (im.object_labels == k).any()]
    n_positives = sum(int((im.positive_labels == k).sum()) for im in holders)
    if n_positives == 0 or len(rows) == 0:
        return np.zeros(store.dim, np.float32), -1.0  # nothing to learn: every window scores -1
    # the positives, which grow with the images, in 8 bits; the negatives, bounded by the cache, widened for speed
    codes, low, step = np.empty((n_positives, store.dim), np.uint8), np.empty(n_positives, np.float32), \
        np.empty(n_positives, np.float32)
    at = 0
    for im in holders:
        vectors = im.positives(rv, k)
        codes[at:at + len(vectors)], low[at:at + len(vectors)], step[at:at + len(vectors)] = quantize(vectors)
        at += len(vectors)
    x = StackedRows(QuantizedRows(codes, low, step), ArrayRows(store.take(rows)))
    y = np.r_[np.ones(n_positives), np.zeros(len(rows))]
    svm = LinearSVM(settings.C, settings.positive_weight).fit(x, y, warm_start=warm)
    return svm.coef_, svm.intercept_
