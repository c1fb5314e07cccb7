"""Every text summary the command line prints: feature and model files (``sppfeat info``), the
backbone table (``sppfeat backbones``), scores (``sppfeat eval``) and predicted rows (``sppfeat predict``)."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from .backbones import BACKBONES, DEFAULT_BACKBONE
from .meter import size_text
from .storage.feature_file import open_features
from .storage.hdf5 import open_hdf5
from .storage.model_file import KIND, load_model

if TYPE_CHECKING:
    from .classify.evaluation import Evaluation
    from .classify.prediction import Prediction


def describe_file(path: str | os.PathLike) -> str:
    """Summary of an sppfeat feature, SVM model, detector or proposal file; ValueError for anything else."""
    with open_hdf5(path, "file") as f:
        kind = f.attrs.get("sppfeat_kind", "features")
    describe = {KIND: describe_model, "detector_model": describe_detector, "proposals": describe_proposals}
    return describe.get(kind, describe_features)(path)


def describe_detector(path: str | os.PathLike) -> str:
    from .detection.model import load_detector

    m = load_detector(path)
    c, t, p = m.feature_settings, m.training, m.proposals
    if m.head is not None:
        shape, h = m.head.shape, t.get("head", {})
        epochs = t.get("epochs", [])
        kind = (f"{len(m.class_names)} classes, fine-tuned head: 1×1 to {shape['reduced']} channels, "
                f"layers {','.join(map(str, shape['hidden']))}; scores are probabilities)")
        training = (f"{t.get('n_images', '?')} images, {sum(t.get('positives', []))} objects, {len(epochs)} epochs, "
                    f"lr {h.get('lr', '?')}, seed {h.get('seed', '?')}"
                    + (f", last epoch's window accuracy {100 * epochs[-1]['accuracy']:.1f} %" if epochs else ""))
    else:
        rounds = t.get("mining", [])
        kind = (f"{len(m.class_names)} classes × {m.coef.shape[1]} dims, linear SVMs"
                + (f" on windows with context ×{m.context:g}" if m.context else "")
                + (", box regression" if m.regression is not None else "") + "; scores are margins)")
        training = (f"{t.get('n_images', '?')} images, {sum(t.get('positives', []))} objects, C {t.get('C', '?')}, "
                    f"{max(len(rounds) - 1, 0)} mining rounds, {sum(r['added'] for r in rounds)} negatives mined")
    return "\n".join([
        f"{path}: sppfeat detector ({kind}",
        f"  classes     {', '.join(m.class_names)}",
        f"  windows     {c.backbone}, scale {','.join(map(str, c.scales))}, levels {','.join(map(str, c.levels))}, "
        f"{c.pool} pooling",
        f"  proposals   {p.get('method', '?')}, at most {p.get('max_boxes', '?')} per image"
        + (f" (from {p['source']})" if "source" in p else ""),
        f"  training    {training}"])


def describe_proposals(path: str | os.PathLike) -> str:
    from .detection.proposal_file import read_proposals

    p = read_proposals(path)
    counts = np.diff(p.first)
    s = p.settings
    return "\n".join([
        f"{path}: sppfeat proposal file",
        f"  images      {len(p.paths)} ({len(p.boxes)} windows; per image median {int(np.median(counts)) if len(counts) else 0}"
        f", max {counts.max() if len(counts) else 0})",
        f"  settings    {s.get('method', '?')}, at most {s.get('max_boxes', '?')}, min size {s.get('min_size', '?')} px, "
        f"searched at <= {s.get('max_side', '?')} px ({s.get('implementation', '?')})",
        f"  skipped     {len(p.skipped)}"])


def describe_features(path: str | os.PathLike) -> str:
    ff = open_features(path)
    raw = len(ff.paths) * ff.dim * np.dtype(ff.dtype).itemsize
    stored = ("virtual (rows in the shard files)" if ff.stored_bytes is None else
              f"{size_text(ff.stored_bytes)} stored, {size_text(raw)} raw"
              + (f" ({raw / ff.stored_bytes:.1f}× smaller)" if ff.stored_bytes else ""))
    lines = [f"{path}: sppfeat feature file (format {ff.format_version})",
             f"  rows        {len(ff.paths)} × {ff.dim} ({ff.dtype})",
             f"  size        {stored}",
             f"  classes     {len(ff.class_names)}" + (" (multi-label)" if ff.multilabel else "")]
    if ff.class_names:
        counts = Counter(ff.labels.tolist()) if not ff.multilabel else Counter(
            {i: int((ff.targets[:, i] == 1).sum()) for i in range(len(ff.class_names))})
        shown = ", ".join(f"{ff.class_names[i]} {counts.get(i, 0)}" for i in range(min(8, len(ff.class_names))))
        lines.append(f"              {shown}" + (", ..." if len(ff.class_names) > 8 else ""))
    if len(ff.image_sizes):
        heights, widths = ff.image_sizes[:, 0], ff.image_sizes[:, 1]
        lines.append(f"  image size  height {heights.min()}..{heights.max()}, width {widths.min()}..{widths.max()} px")
    lines.append(f"  skipped     {len(ff.skipped)}")
    for skipped_path, reason in ff.skipped[:10]:
        lines.append(f"              {skipped_path}: {reason}")
    if len(ff.skipped) > 10:
        lines.append(f"              ... and {len(ff.skipped) - 10} more")
    lines.append("  configuration")
    for key, value in sorted(ff.record.items()):
        if value != "":  # a setting that does not apply (no VOC split, say)
            lines.append(f"    {key:<18}{setting_text(key, value, ff.record)}")
    return "\n".join(lines)


def setting_text(key: str, value, record: dict) -> str:
    """A recorded setting as `info` shows it. A regions file of one scale records combine 'max' even
    when 'best' was asked for (the same vectors; the recorded value is what resume and models compare)."""
    scales = record.get("scale")
    if key == "combine" and "boxes_file" in record and not (isinstance(scales, list) and len(scales) > 1):
        return f"{value} (one scale: best and max are the same)"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))  # as the command line writes it: levels 6,3,2,1
    return str(value)


def describe_model(path: str | os.PathLike) -> str:
    model = load_model(path)
    record = model.feature_record
    cv = ", ".join(f"{float(k):g}: {v:.4f}" for k, v in model.cv_scores.items())
    lines = [f"{path}: sppfeat SVM model (format {model.format_version})",
             f"  classes     {len(model.class_names)}" + (" (multi-label)" if model.multilabel else " (one-vs-rest)"),
             f"  weights     {model.coef.shape[0]} × {model.coef.shape[1]}",
             f"  C           {model.C:g}" + (f"  (cross-validated: {cv})" if cv else ""),
             f"  features    power {model.power:g}, then L2; {record.get('backbone')} levels "
             f"{setting_text('levels', record.get('levels'), record)} {record.get('pool')} pooling, scale "
             f"{setting_text('scale', record.get('scale'), record)}",
             f"  split       {json.dumps(model.split)}",
             f"  train/test  {len(model.train_paths)} / {len(model.test_paths)} images"]
    return "\n".join(lines)


def backbones_table() -> str:
    """One row per registered backbone (under 100 columns): output, input normalisation, weights
    source, whether the weights are here (offline)."""
    rows = [("name", "ch", "stride", "px", "input", "weights", "here")]
    for name, spec in sorted(BACKBONES.items()):
        offline = "yes" if spec.weights.cached_path() is not None else "no"
        rows.append((name + ("*" if name == DEFAULT_BACKBONE else ""), str(spec.channels), str(spec.stride),
                     str(spec.native_size), spec.normalization.label, spec.weights.source(), offline))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(table + ["* default; ch: output channels; px: side the weights were trained at; "
                              "input: normalisation", "here: the weights are on this machine (works offline)"])


def evaluation_text(result: Evaluation, worst: int = 10) -> str:
    """mAP and every class's AP (multi-label), or accuracy and up to `worst` classes below 100 %
    (single-label); then what was left out and why."""
    if result.multilabel:
        lines = [f"mAP {100 * result.mAP:.2f} % over {len(result.ap)} classes, {result.n_test} images "
                 f"({result.evaluated_on})"]
        lines += [f"  {name:<20}{100 * ap:6.2f}" for name, ap in sorted(result.ap.items(), key=lambda kv: kv[1])]
        if result.no_positives:
            lines.append(f"left out of the mAP (no positives in the test images): {', '.join(result.no_positives)}")
    else:
        lines = [f"accuracy {100 * result.accuracy:.2f} %, mean per-class accuracy "
                 f"{100 * result.mean_class_accuracy:.2f} % on {result.n_test} images ({result.evaluated_on})"]
        wrong = [(name, row) for name, row in sorted(result.per_class.items(), key=lambda kv: kv[1].accuracy)
                 if row.accuracy < 1.0][:worst]
        if wrong:
            lines.append("worst classes:")
        lines += [f"  {name:<24}{100 * row.accuracy:6.1f} %  ({row.n} images)" for name, row in wrong]
    return "\n".join(lines + left_out_lines(result))


def left_out_lines(result: Evaluation) -> list[str]:
    """Rows of the evaluated file that were not scored, and why."""
    lines = []
    if result.left_out_training:
        lines.append(f"left out: {result.left_out_training} rows whose paths are the model's training images "
                     "(keep_training_rows=True scores them)")
    if result.unknown_classes:
        named = ", ".join(f"{name} {n}" for name, n in sorted(result.unknown_classes.items()))
        lines.append(f"left out: {sum(result.unknown_classes.values())} rows of classes the model does not know "
                     f"({named})")
    if result.n_unlabelled:
        lines.append(f"left out: {result.n_unlabelled} rows without a class")
    return lines


class PredictionTable:
    """`sppfeat predict`'s rows as a text table, printed as they come: predicted class, score (SVM
    margin), the next best classes with --top-k, and the path last (so no column waits for the
    longest path). `echo` prints text (the lines of a batch at once)."""

    CLASS_WIDTH = 20

    def __init__(self, echo):
        self.echo = echo
        self.started = False

    def write(self, rows: list[Prediction]) -> None:
        lines = []
        if not self.started:
            ranks = "".join(f"{f'top{k}':<{self.CLASS_WIDTH}}{'score':>9}  " for k in range(2, len(rows[0].top) + 1))
            lines.append(f"{'predicted':<{self.CLASS_WIDTH}}{'score':>9}  {ranks}path")
            self.started = True
        for row in rows:
            predicted = row.predicted if isinstance(row.predicted, str) else ",".join(row.predicted)
            ranks = "".join(f"{name:<{self.CLASS_WIDTH}}{score:9.3f}  " for name, score in row.top[1:])
            lines.append(f"{predicted or '-':<{self.CLASS_WIDTH}}{row.score:9.3f}  {ranks}{row.path}")
        self.echo("\n".join(lines))
