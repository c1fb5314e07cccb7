"""Pictures of an evaluation (``sppfeat eval --plots DIR``): PNG files readable without zooming.

Single-label: ``confusion_matrix.png`` (rows true, columns predicted, each row normalised to sum 1),
``per_class_accuracy.png`` (worst class first) and ``mistakes.png`` (contact sheet of the most
confident mistakes). Multi-label: ``precision_recall.png`` (each class's curve and 11-point AP),
``average_precision.png`` and ``false_positives.png`` (each class's highest-scored images that do
not show it), of the classes with a positive test image (the others have no AP). Contact sheets
need the test images: they are read from the feature file's image folder, and left out with a
warning when it is not reachable. A folder that is not empty is
refused unless the caller allows overwriting, which removes the earlier pictures first.

Charts are drawn by matplotlib's Agg canvas (no pyplot, no display, nothing global changed),
contact sheets by Pillow.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.decode import DEFAULT_DECODE_TIMEOUT, DecodeError, ResizePolicy, decode_image
from .metrics import precision_recall
from .results import Evaluation

log = logging.getLogger("sppfeat")
DPI = 100
MISTAKES = 24  # thumbnails on the mistakes sheet
FALSE_POSITIVES = 5  # thumbnails per class on the false-positives sheet
THUMB = 150  # thumbnail box, pixels
LINE = 16  # pixels per caption line
PICTURES = ("confusion_matrix.png", "per_class_accuracy.png", "mistakes.png",
            "precision_recall.png", "average_precision.png", "false_positives.png")  # every file written
THUMBNAIL = ResizePolicy(scale=0, max_side=THUMB)  # native size, the longer side capped at THUMB


def check_plots_folder(folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """`folder` as a Path, checked before any work is done: ValueError unless matplotlib is
    installed and the folder is new (its parent exists) or empty, or `overwrite` allows
    :func:`write_plots` to replace the pictures in it."""
    _figure_class()
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    if not folder.parent.is_dir():
        raise ValueError(f"folder {folder.parent} does not exist")
    if not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty: pass overwrite=True to replace its pictures")
    return folder


def write_plots(result: Evaluation, folder: str | os.PathLike, images: Path | None) -> None:
    """Draw the pictures of `result` into `folder` (created if needed) and name them on stderr;
    `images`: the folder the test paths are relative to (None: no contact sheet). The pictures an
    earlier run left there (the PICTURES file names; other files are kept) are removed first, so
    none of another model survives: check the folder with :func:`check_plots_folder` before."""
    figure_class = _figure_class()
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    for name in PICTURES:
        (folder / name).unlink(missing_ok=True)
    if result.multilabel:
        figures = {"precision_recall.png": precision_recall_figure, "average_precision.png": average_precision_figure}
        sheet = ("false_positives.png", false_positive_tiles)
    else:
        figures = {"confusion_matrix.png": confusion_figure, "per_class_accuracy.png": accuracy_figure}
        sheet = ("mistakes.png", mistake_tiles)
    written = []
    for name, draw in figures.items():
        figure = draw(figure_class, result)
        figure.savefig(folder / name, dpi=DPI, bbox_inches="tight")
        written.append(folder / name)
    title, tiles, columns = sheet[1](result)
    if images is None:
        log.warning("no contact sheet: the test images are not reachable from the feature file's image_root")
    elif not tiles:
        log.info("no contact sheet: nothing to show (%s)", title)
    else:
        contact_sheet([(images / path, lines) for path, lines in tiles], title, columns).save(folder / sheet[0])
        written.append(folder / sheet[0])
    log.info("pictures: %s", ", ".join(map(str, written)))


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("drawing needs matplotlib: pip install matplotlib (make install installs it)") from None
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # not its font-cache notes on our stderr
    return Figure


def confusion_matrix(result: Evaluation) -> np.ndarray:
    """K×K: row t, column p = fraction of the test images of class t predicted as p (a class without
    test images has a row of zeros). Single-label evaluations only."""
    index = {name: k for k, name in enumerate(result.class_names)}
    counts = np.zeros((len(index), len(index)))
    for image in result.predictions:
        counts[index[image.true], index[image.predicted]] += 1
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def confusion_figure(figure_class, result: Evaluation):
    names = result.class_names
    k = len(names)
    side = max(5.0, 0.16 * k + 2.5)  # about 11.5 pt per class: 102 class names stay legible at 7 pt
    fontsize = 9 if k <= 30 else 7
    figure = figure_class(figsize=(side + 1.5, side))
    ax = figure.add_subplot()
    matrix = confusion_matrix(result)
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(k), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(k), names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for (t, p), value in np.ndenumerate(matrix):
            if value > 0:
                ax.text(p, t, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value > 0.5 else "black")
    ax.set_title(f"confusion matrix, rows normalised: accuracy {100 * result.accuracy:.1f} % "
                 f"on {result.n_test} images")
    figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="fraction of the true class")
    return figure


def _bar_chart(figure_class, values: dict[str, float], labels: dict[str, str], mean: float, xlabel: str,
               title: str):
    """Horizontal bars, lowest value on top, with a dashed line at `mean`; values in [0, 1]."""
    order = sorted(values, key=values.get)
    figure = figure_class(figsize=(8, max(3.0, 0.17 * len(order) + 1.2)))
    ax = figure.add_subplot()
    positions = np.arange(len(order))
    ax.barh(positions, [100 * values[n] for n in order], color="tab:blue")
    ax.set_yticks(positions, [labels[n] for n in order], fontsize=9 if len(order) <= 30 else 7)
    ax.invert_yaxis()
    ax.axvline(100 * mean, color="tab:red", linestyle="--")
    ax.set_xlim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return figure


def accuracy_figure(figure_class, result: Evaluation):
    values = {name: row.accuracy for name, row in result.per_class.items()}
    labels = {name: f"{name} ({row.n})" for name, row in result.per_class.items()}
    return _bar_chart(figure_class, values, labels, result.mean_class_accuracy, "accuracy (%)",
                      f"per-class accuracy, worst first (test images per class); "
                      f"dashed: mean {100 * result.mean_class_accuracy:.1f} %")


def average_precision_figure(figure_class, result: Evaluation):
    return _bar_chart(figure_class, result.ap, {name: name for name in result.ap}, result.mAP,
                      "11-point average precision (%)",
                      f"average precision per class, worst first; dashed: {map_text(result)}")


def map_text(result: Evaluation) -> str:
    """'mAP 52.3 %', and the classes left out of it for want of positives."""
    left_out = f" (left out, no positives: {', '.join(result.no_positives)})" if result.no_positives else ""
    return f"mAP {100 * result.mAP:.1f} %{left_out}"


def class_targets(result: Evaluation, name: str) -> np.ndarray:
    """A class's targets over the test images: 1 positive, 0 difficult, -1 negative (multi-label)."""
    return np.array([1 if name in image.true else 0 if name in image.difficult else -1
                     for image in result.predictions])


def class_scores(result: Evaluation, name: str) -> np.ndarray:
    return np.array([image.scores[name] for image in result.predictions])


def precision_recall_figure(figure_class, result: Evaluation):
    names = list(result.ap)  # the classes with an AP: a class without positives has no curve
    columns = min(5, len(names))
    rows = math.ceil(len(names) / columns)
    figure = figure_class(figsize=(2.8 * columns, 2.5 * rows), layout="constrained")
    for k, name in enumerate(names):
        ax = figure.add_subplot(rows, columns, k + 1)
        precision, recall = precision_recall(class_scores(result, name), class_targets(result, name))
        end = int(np.argmax(recall >= 1)) + 1 if len(recall) else 0  # the ranks after the last positive add nothing
        precision, recall = precision[:end], recall[:end]
        envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at recall >= r, as AP uses
        ax.plot(recall, precision, color="tab:blue", alpha=0.35, linewidth=0.8)
        ax.plot(np.r_[0, recall], np.r_[envelope[:1], envelope], drawstyle="steps-pre", color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name}: AP {100 * result.ap[name]:.1f} %", fontsize=10)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
    figure.suptitle(f"precision-recall per class (light: at each rank; dark: best at recall ≥ r, as in the "
                    f"11-point AP), {map_text(result)}, "
                    f"{result.n_test} images")
    return figure


def mistake_tiles(result: Evaluation) -> tuple[str, list[tuple[str, list[str]]], int]:
    """The MISTAKES wrong predictions with the highest scores: (title, [(path, caption lines)], columns)."""
    wrong = sorted((image for image in result.predictions if image.predicted != image.true),
                   key=lambda image: -image.score)[:MISTAKES]
    tiles = [(image.path, [f"{image.true} -> {image.predicted}", f"{image.score:+.2f}  {Path(image.path).name}"])
             for image in wrong]
    return f"most confident mistakes (true -> predicted, SVM margin), {len(wrong)} shown", tiles, 6


def false_positive_tiles(result: Evaluation) -> tuple[str, list[tuple[str, list[str]]], int]:
    """Each class's FALSE_POSITIVES highest-scored negatives (difficult ones excluded), a row per class."""
    tiles = []
    for name in result.ap:
        scores = class_scores(result, name)
        negatives = np.flatnonzero(class_targets(result, name) < 0)
        for i in negatives[np.argsort(-scores[negatives], kind="stable")][:FALSE_POSITIVES]:
            image = result.predictions[i]
            tiles.append((image.path, [f"{name} {scores[i]:+.2f}", "true: " + (", ".join(image.true) or "none")]))
    return f"highest-scored false positives per class ({FALSE_POSITIVES} per row: class, SVM margin)", tiles, \
        FALSE_POSITIVES


def contact_sheet(tiles: list[tuple[Path, list[str]]], title: str, columns: int) -> Image.Image:
    """Thumbnails (see :func:`_thumbnail`) with two caption lines each,
    `columns` per row, under a title line; an unreadable file is a grey tile saying so."""
    font = ImageFont.load_default(size=13)
    width, height = THUMB + 12, THUMB + 2 * LINE + 14
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * width + 8, rows * height + 2 * LINE + 8), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), title, fill="black", font=ImageFont.load_default(size=15))
    for n, (path, lines) in enumerate(tiles):
        x, y = 8 + (n % columns) * width, 2 * LINE + 8 + (n // columns) * height
        thumb = _thumbnail(path)
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        for i, line in enumerate(lines):
            draw.text((x, y + THUMB + 4 + i * LINE), _fit(draw, line, font, THUMB + 6), fill="black", font=font)
    return sheet


def _thumbnail(path: Path) -> Image.Image:
    """The image as the network saw it (decoded by :mod:`sppfeat.data.decode`: EXIF orientation,
    transparency over white), at most THUMB px a side; an unreadable file is a grey tile saying so."""
    try:
        return Image.fromarray(decode_image(str(path), THUMBNAIL, DEFAULT_DECODE_TIMEOUT).pixels)
    except DecodeError:  # a missing or broken file must not cost the sheet
        tile = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
        ImageDraw.Draw(tile).text((8, THUMB // 2 - 8), "unreadable", fill="black")
        return tile


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text` cut (with '...') to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
