"""Pictures of detection: an image with its detected boxes, labels and scores (those a person wants
to see: DrawRule), precision-recall curves and AP per class of an evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..classify.plots import check_plots_folder
from .proposals import stored_rgb
from .settings import check_threshold

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]
PLOTS = ("precision_recall.png", "ap_per_class.png")
MAX_DRAWN = 20  # boxes per picture at most, the best: more are unreadable
DRAW_THRESHOLDS = {"probability": 0.5, "margin": 0.0}  # the default least score drawn, by the model's score kind


@dataclass(frozen=True)
class DrawRule:
    """Which detections a picture shows: those scoring at least `threshold`, at most MAX_DRAWN, the
    best; `kind`: what the scores are (DetectorModel.score_kind)."""

    threshold: float
    kind: str

    def chosen(self, rows: list) -> list:
        """The rows to draw, best first."""
        above = sorted((r for r in rows if r.score >= self.threshold), key=lambda r: -r.score)
        return above[:MAX_DRAWN]

    def caption(self, rows: list) -> str:
        """The rule and what it kept, e.g. 'score >= 0.5 (probability), 7 of 43 detections' (in ASCII:
        Pillow's default font has no ≥)."""
        above = sum(r.score >= self.threshold for r in rows)
        best = f" (the best {MAX_DRAWN} of {above})" if above > MAX_DRAWN else ""
        return f"score >= {self.threshold:g} ({self.kind}), {min(above, MAX_DRAWN)} of {len(rows)} detections{best}"


def draw_rule(score_kind: str, threshold: float | None = None) -> DrawRule:
    """The rule for a model whose scores are `score_kind`: `threshold`, or its kind's default
    (DRAW_THRESHOLDS). ValueError for a threshold that is not a finite number."""
    if threshold is None:
        return DrawRule(DRAW_THRESHOLDS[score_kind], score_kind)
    check_threshold("draw_threshold", threshold)
    return DrawRule(float(threshold), score_kind)


def picture_path(folder: str | os.PathLike, path: str) -> Path:
    """The picture of the image `path` (relative to the input): the same name with .png, in `folder`."""
    return (Path(folder) / path).with_suffix(".png")


def check_draw_folder(folder: str | os.PathLike, pictures: list[Path] | None, replace: bool) -> Path:
    """A folder to draw detections into, checked before any work: new, or, unless `replace`
    (overwrite, or resume: the interrupted run's pictures stay), empty when the run owns the whole
    folder (pictures None), or holding none of `pictures` (a shard's: the other shards draw beside
    them). ValueError otherwise, or for a path that is no folder."""
    folder = check_plots_folder(folder, overwrite=True)  # a folder (or one to make) whose parent exists
    if replace or not folder.is_dir():
        return folder
    if pictures is None and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty: pass overwrite=True to replace its pictures, or resume=True "
                         "to continue the run that drew them")
    taken = [p for p in pictures or () if p.exists()]
    if taken:
        raise ValueError(f"{taken[0]} exists: pass overwrite=True to replace the pictures of this shard, or "
                         "resume=True to continue the run that drew it")
    return folder


def clear_pictures(folder: str | os.PathLike, pictures: list[Path] | None) -> None:
    """Remove the pictures of an earlier run before an overwriting one: every PNG of the folder
    (pictures None: they are named after images, so none of another run survives), or `pictures`."""
    for old in Path(folder).rglob("*.png") if pictures is None else pictures:
        old.unlink(missing_ok=True)


def draw_detections(file: str, rows: list, out: Path, rule: DrawRule) -> None:
    """Draw the Detection rows of one image (pixels as stored) that `rule` chooses onto it, the best
    on top, with the rule as a caption at the bottom left, and save the PNG `out` (folders made as
    needed)."""
    image = Image.fromarray(stored_rgb(file))
    pen = ImageDraw.Draw(image)
    chosen = rule.chosen(rows)
    names = sorted({r.label for r in chosen})
    for r in reversed(chosen):
        colour = PALETTE[names.index(r.label) % len(PALETTE)]
        pen.rectangle([r.x1, r.y1, max(r.x1, r.x2 - 1), max(r.y1, r.y2 - 1)], outline=colour, width=2)
        text = f"{r.label} {r.score:.2f}"
        left, top, right, bottom = pen.textbbox((r.x1, r.y1), text)
        y = max(0, r.y1 - (bottom - top) - 2)
        pen.rectangle([r.x1, y, r.x1 + right - left + 4, y + bottom - top + 2], fill=colour)
        pen.text((r.x1 + 2, y), text, fill=(255, 255, 255))
    caption = rule.caption(rows)
    left, top, right, bottom = pen.textbbox((0, 0), caption)
    y = image.height - (bottom - top) - 4
    pen.rectangle([0, y, right - left + 4, image.height], fill=(0, 0, 0))
    pen.text((2, y + 1), caption, fill=(255, 255, 255))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def plot_evaluation(evaluation, folder: str | os.PathLike) -> list[Path]:
    """precision_recall.png (one curve per class) and ap_per_class.png in `folder`; the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    scored = {name: r for name, r in evaluation.per_class.items() if r.ap is not None}
    fig, ax = plt.subplots(figsize=(8, 6))
    for name, r in scored.items():
        ax.plot(np.r_[0, r.recall], np.r_[1, r.precision], label=f"{name} {100 * r.ap:.1f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Precision-recall per class (mAP {100 * evaluation.mAP:.1f} %)")
    ax.legend(fontsize=7, ncol=1 + len(scored) // 40, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0)  # beside the axes: no curve under it
    fig.savefig(folder / PLOTS[0], dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(scored) + 1.2))
    names = sorted(scored, key=lambda n: scored[n].ap)
    ax.barh(names, [100 * scored[n].ap for n in names], color="#4c72b0")
    ax.set(xlabel="AP (%)", xlim=(0, 100), title=f"{evaluation.ap_name} per class (mAP {100 * evaluation.mAP:.1f} %)")
    fig.savefig(folder / PLOTS[1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [folder / name for name in PLOTS]
