"""Pictures of detection: an image with its detected boxes, labels and scores; precision-recall
curves and AP per class of an evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..classify.plots import check_plots_folder
from .proposals import stored_rgb

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]
PLOTS = ("precision_recall.png", "ap_per_class.png")


def check_draw_folder(folder: str | os.PathLike, overwrite: bool) -> Path:
    """A folder to draw detections into, by the rule of every picture folder (check_plots_folder:
    new, empty, or overwrite); with overwrite its earlier pictures (every PNG: they are named after
    the images) are removed, so none of another run survives."""
    folder = check_plots_folder(folder, overwrite=overwrite)
    if overwrite and folder.is_dir():
        for old in folder.rglob("*.png"):
            old.unlink()
    return folder


def draw_detections(file: str, rows, out: Path) -> None:
    """Draw the Detection rows of one image (pixels as stored) onto it and save a PNG at `out`
    (its suffix replaced by .png; folders made as needed)."""
    image = Image.fromarray(stored_rgb(file))
    pen = ImageDraw.Draw(image)
    names = sorted({r.label for r in rows})
    for r in rows:
        colour = PALETTE[names.index(r.label) % len(PALETTE)]
        pen.rectangle([r.x1, r.y1, max(r.x1, r.x2 - 1), max(r.y1, r.y2 - 1)], outline=colour, width=2)
        text = f"{r.label} {r.score:.2f}"
        left, top, right, bottom = pen.textbbox((r.x1, r.y1), text)
        y = max(0, r.y1 - (bottom - top) - 2)
        pen.rectangle([r.x1, y, r.x1 + right - left + 4, y + bottom - top + 2], fill=colour)
        pen.text((r.x1 + 2, y), text, fill=(255, 255, 255))
    out = out.with_suffix(".png")
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
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.savefig(folder / PLOTS[0], dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(scored) + 1.2))
    names = sorted(scored, key=lambda n: scored[n].ap)
    ax.barh(names, [100 * scored[n].ap for n in names], color="#4c72b0")
    ax.set(xlabel="AP (%)", xlim=(0, 100), title=f"11-point AP per class (mAP {100 * evaluation.mAP:.1f} %)")
    fig.savefig(folder / PLOTS[1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [folder / name for name in PLOTS]
