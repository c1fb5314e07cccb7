"""Training the detection head (sppfeat.detection.head) on windows pooled from the stored conv maps,
the conv layers fixed (SPP-net's fine-tuning of its fully-connected layers).

Each image's windows (its proposals and its non-difficult boxes) are labelled once: an object of
class k when its IoU with a non-difficult box of class k is >= fg_iou (the box it overlaps most),
background when its IoU with every box is in [bg_iou_low, fg_iou) (from [0, bg_iou_low) when the
image has none there, e.g. no objects), neither otherwise (e.g. a window on a difficult box). A
mini-batch takes `windows_per_image` windows from each of `images_per_batch` images, at most a
share `fg_fraction` of them objects, the background ones random or (hard_background > 1) the
hardest of several random candidates; the loss is the softmax cross-entropy over K+1 classes plus
`box_weight` × the smooth L1 loss of the objects' offsets. AdamW, cosine-decayed learning rate,
deterministic under the seed (one thread count).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..meter import Meter
from .geometry import iou, regression_targets
from .head import BOX_STD, WindowHead
from .maps import ImageMap, RegionVectors, StoredMap
from .settings import HeadSettings

log = logging.getLogger("sppfeat")


@dataclass
class HeadImage:
    """One image's training windows, small (28 bytes a window: a training set's windows stay in
    memory): cells W×4 int16 (half-open cells of its map), label W int16 (0 = background, k + 1 =
    class k), offsets W×4 float16 (onto the object, for label > 0); objects: the classes of its
    usable non-difficult boxes."""

    image_map: ImageMap | StoredMap
    cells: np.ndarray
    label: np.ndarray
    offsets: np.ndarray
    objects: np.ndarray


def label_head_windows(windows: np.ndarray, boxes: np.ndarray, labels: np.ndarray, difficult: np.ndarray,
                       settings: HeadSettings) -> tuple[np.ndarray, np.ndarray]:
    """(label W: 0 background, k + 1 object of class k, -1 unused; offsets W×4 onto the object) of
    windows W×4 against an image's boxes G×4 (labels G, difficult G)."""
    label = np.full(len(windows), -1, np.int64)
    offsets = np.zeros((len(windows), 4))
    if len(windows) == 0:
        return label, offsets
    overlaps = iou(windows, boxes) if len(boxes) else np.zeros((len(windows), 0))
    best_any = overlaps.max(axis=1) if len(boxes) else np.zeros(len(windows))
    easy = np.flatnonzero(~difficult & (labels >= 0))
    if len(easy):
        best = overlaps[:, easy].max(axis=1)
        owner = easy[overlaps[:, easy].argmax(axis=1)]
        fg = best >= settings.fg_iou
        label[fg] = labels[owner[fg]] + 1
        offsets[fg] = regression_targets(windows[fg], boxes[owner[fg]])
    background = best_any < settings.fg_iou
    near = background & (best_any >= settings.bg_iou_low)
    label[near if near.any() else background] = 0
    return label, offsets


def head_image(rv: RegionVectors, image_map: ImageMap, windows: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
               difficult: np.ndarray, settings: HeadSettings, never_background: np.ndarray | None = None) -> HeadImage:
    """The training windows of one image: its usable `windows` (W×4, pixels as stored) and its
    usable non-difficult boxes, labelled (label_head_windows; a window of never_background, mask W,
    is not background) and projected onto the cells of `image_map`."""
    box_ok, _ = rv.usable(image_map, boxes)
    easy = box_ok & ~difficult & (labels >= 0)
    windows = np.concatenate([np.asarray(windows, np.float64).reshape(-1, 4), boxes[easy]])
    label, offsets = label_head_windows(windows, boxes[box_ok], labels[box_ok], difficult[box_ok], settings)
    if never_background is not None:
        label[:len(never_background)][never_background & (label[:len(never_background)] == 0)] = -1
    used = label >= 0
    unique, inverse = rv.unique_cells(image_map, windows[used])
    return HeadImage(image_map, unique[inverse].astype(np.int16), label[used].astype(np.int16),
                     offsets[used].astype(np.float16), labels[easy])


def sample_windows(image: HeadImage, settings: HeadSettings, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(indices of the windows of one mini-batch from `image`, how many of its background windows
    count): up to fg_fraction × windows_per_image objects, the rest background (fewer when the
    image has fewer); with hard_background h > 1, h times as many background candidates, of which
    head_loss keeps the hardest."""
    fg, bg = np.flatnonzero(image.label > 0), np.flatnonzero(image.label == 0)
    n_fg = min(len(fg), int(round(settings.fg_fraction * settings.windows_per_image)))
    n_bg = min(len(bg), settings.windows_per_image - n_fg)
    candidates = min(len(bg), n_bg * settings.hard_background)
    return np.concatenate([rng.choice(fg, n_fg, replace=False), rng.choice(bg, candidates, replace=False)]), n_bg


def head_loss(head: WindowHead, images: list[HeadImage], picks: list[tuple[np.ndarray, int]], box_weight: float,
              device: torch.device) -> tuple[torch.Tensor, dict]:
    """The mini-batch loss (softmax + box_weight × smooth L1, averaged over the windows that count)
    of the windows `picks` of `images` (sample_windows: of each image's background candidates, the
    n with the highest softmax loss count), and its parts."""
    maps = [im.image_map.load().fmap for im in images]
    height, width = max(m.shape[1] for m in maps), max(m.shape[2] for m in maps)
    batch = maps[0].new_zeros((len(maps), maps[0].shape[0], height, width))
    for b, m in enumerate(maps):  # padded cells are never inside a window
        batch[b, :, :m.shape[1], :m.shape[2]] = m
    cells = torch.from_numpy(np.concatenate([np.hstack([np.full((len(p), 1), b), im.cells[p]])
                                             for b, (im, (p, _)) in enumerate(zip(images, picks))])).to(device)
    label = torch.from_numpy(np.concatenate([im.label[p] for im, (p, _) in zip(images, picks)])).to(device).long()
    target = torch.from_numpy(np.concatenate([im.offsets[p] for im, (p, _) in zip(images, picks)])).to(device).float()
    logits, offsets = head(head.pool_for_training(head.reduced_map(batch.to(device)), cells))
    losses = torch.nn.functional.cross_entropy(logits, label, reduction="none")
    counted, first = [], 0
    for p, n_bg in picks:  # each image's objects and its n_bg hardest background windows
        rows = torch.arange(first, first + len(p), device=device)
        fg = label[rows] > 0
        hardest = torch.argsort(losses[rows][~fg].detach(), descending=True, stable=True)[:n_bg]
        counted += [rows[fg], rows[~fg][hardest]]
        first += len(p)
    counted = torch.cat(counted)
    softmax = losses[counted].mean()
    fg = counted[label[counted] > 0]
    std = offsets.new_tensor(BOX_STD)
    moved = offsets[fg, label[fg] - 1] / std
    box = torch.nn.functional.smooth_l1_loss(moved, target[fg] / std, reduction="sum") / max(len(counted), 1)
    accuracy = (logits[counted].argmax(1) == label[counted]).float().mean()
    return softmax + box_weight * box, {"softmax": softmax.item(), "box": box.item(), "accuracy": accuracy.item()}


def fit_head(images: list[HeadImage], n_classes: int, rv: RegionVectors, settings: HeadSettings,
             quiet: bool = False) -> tuple[WindowHead, dict]:
    """Train a WindowHead on `images` (see the module); (head in eval mode, stats per epoch).
    ValueError when the loss stops being finite (a learning rate too high)."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = rv.device
    head = WindowHead(rv.model.channels, settings.reduced, settings.hidden, rv.config.levels, n_classes,
                      settings.dropout).to(device)
    usable = [im for im in images if len(im.label)]
    if not usable:
        raise ValueError("no training window for the head (no image with proposals or objects)")
    per_epoch = math.ceil(len(usable) / settings.images_per_batch)
    total = settings.epochs * per_epoch
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    stats, step = {"epochs": []}, 0
    for epoch in range(settings.epochs):
        head.train()
        start, sums = time.monotonic(), {"softmax": 0.0, "box": 0.0, "accuracy": 0.0}
        order = rng.permutation(len(usable))
        meter = Meter(f"head epoch {epoch + 1}/{settings.epochs}", per_epoch, quiet=quiet, unit="batches")
        for first in range(0, len(order), settings.images_per_batch):
            batch = [usable[i] for i in order[first:first + settings.images_per_batch]]
            picks = [sample_windows(im, settings, rng) for im in batch]
            loss, parts = head_loss(head, batch, picks, settings.box_weight, device)
            if not torch.isfinite(loss):
                diverged(f"loss {loss.item()} at step {step + 1} of {total}", settings.lr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            for key in sums:
                sums[key] += parts[key]
            meter.update(1)
        meter.close()
        means = {key: round(value / per_epoch, 4) for key, value in sums.items()}
        stats["epochs"].append({**means, "seconds": round(time.monotonic() - start, 1)})
        if not quiet:
            log.info("head epoch %d/%d: softmax loss %.3f, box loss %.3f, window accuracy %.1f %%, %.0f s", epoch + 1,
                     settings.epochs, means["softmax"], means["box"], 100 * means["accuracy"],
                     time.monotonic() - start)
    head.eval()
    with torch.no_grad():  # weights can be finite and still too large for float32 scores
        scores = head_loss(head, batch, picks, settings.box_weight, device)[0]
    if not torch.isfinite(scores):
        diverged("scores not finite after the last step", settings.lr)
    return head, stats


def diverged(what: str, lr: float):
    raise ValueError(f"the head's training diverged ({what}): use a smaller learning rate than {lr:g}")


def object_counts(images: list[HeadImage], n_classes: int) -> list[int]:
    """Training objects per class: the images' usable non-difficult boxes."""
    labels = np.concatenate([im.objects for im in images]) if images else np.zeros(0, np.int64)
    return np.bincount(labels, minlength=n_classes).tolist()
