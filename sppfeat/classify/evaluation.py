"""eval: a model's scores on a feature file (accuracy per class, or VOC 2007 11-point AP)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..data.discover import find_voc_root
from ..storage.feature_file import open_features
from ..storage.hdf5 import check_output
from ..storage.model_file import check_compatible, load_model
from .metrics import average_precision_11pt, per_class_accuracy
from .plots import check_plots_folder, write_plots
from .prediction import Prediction, Scorer
from .results import ClassAccuracy, Evaluation, ScoredImage
from .training import fingerprint


def evaluate(model_path: str | os.PathLike, features_path: str | os.PathLike,
             report_path: str | os.PathLike | None = None, plots: str | os.PathLike | None = None, *,
             keep_training_rows: bool = False, overwrite: bool = False) -> Evaluation:
    """Score a model on a feature file: on the model's recorded test rows when the file is the one it
    was trained from, else on every row, except rows whose paths are the model's training images
    (unless `keep_training_rows`) and rows of classes the model does not know (counted in the
    result). With `report_path`, also write ``to_json()`` there; with `plots`, draw the pictures of
    :mod:`sppfeat.classify.plots` into that folder (created if needed). An existing report, or a
    plots folder that is not empty, is refused before any work unless `overwrite` (which replaces
    the report and the folder's earlier pictures)."""
    if report_path is not None:
        check_output(report_path, overwrite, (model_path, features_path))
    if plots is not None:
        try:
            check_plots_folder(plots, overwrite=overwrite)
        except ValueError as exc:
            raise ValueError(f"plots: {exc}") from None
    model = load_model(model_path)
    features = open_features(features_path)
    check_compatible(model, features.record, features.dim, features_path)
    if features.multilabel != model.multilabel:
        raise ValueError(f"the model is {'multi' if model.multilabel else 'single'}-label, "
                         f"{features_path} is not")
    same_file = fingerprint(features) == model.features_fingerprint
    if same_file:
        if not model.test_paths:
            raise ValueError(f"the model was trained on every row of {features_path}: evaluate on another file")
        row_of = {p: i for i, p in enumerate(features.paths)}
        rows = np.array([row_of[p] for p in model.test_paths], dtype=np.int64)
        left_out_training = 0
    else:
        training = set(model.train_paths)
        seen = np.array([p in training for p in features.paths], dtype=bool)
        left_out_training = 0 if keep_training_rows else int(seen.sum())
        rows = np.flatnonzero(~seen) if left_out_training else np.arange(len(features.paths))
    unknown: dict[str, int] = {}
    n_unlabelled = 0
    model_index = {name: k for k, name in enumerate(model.class_names)}
    if model.multilabel:
        columns = [features.class_names.index(name) if name in features.class_names else -1
                   for name in model.class_names]
        if -1 in columns:
            raise ValueError(f"{features_path} lacks classes of the model: "
                             f"{[n for n, c in zip(model.class_names, columns) if c < 0]}")
        truth = features.targets[rows][:, columns]
    else:
        labels = features.labels[rows]
        mapped = np.array([model_index.get(name, -1) for name in features.class_names] + [-1])
        truth = mapped[labels]  # label -1 indexes the trailing -1
        n_unlabelled = int((labels < 0).sum())
        for k in np.unique(labels[(labels >= 0) & (truth < 0)]):
            unknown[features.class_names[k]] = int((labels == k).sum())
        rows, truth = rows[truth >= 0], truth[truth >= 0]
    if len(rows) == 0:
        raise ValueError(f"{features_path} has no labelled rows of the model's classes to evaluate on"
                         + (f" ({left_out_training} rows are the model's training images: keep_training_rows=True "
                            "scores them)" if left_out_training else ""))
    scorer = Scorer(model)
    scores = scorer.scores(features.read_features(rows))
    images = scored_images(scorer.rows([features.paths[i] for i in rows], scores), truth, model.class_names)
    evaluated_on = ("recorded test split" if same_file else
                    "every row" if not (left_out_training or unknown or n_unlabelled) else "every row but those left out")
    common = dict(left_out_training=left_out_training, unknown_classes=unknown, n_unlabelled=n_unlabelled,
                  class_names=tuple(model.class_names), predictions=images)
    if model.multilabel:
        positive = (truth > 0).any(axis=0)  # AP is undefined without positives (the devkit divides by 0)
        if not positive.any():
            raise ValueError(f"{features_path} has no positive image of any of the model's classes among "
                             f"the {len(rows)} test images: no AP to compute")
        ap = {name: average_precision_11pt(scores[:, k], truth[:, k])
              for k, name in enumerate(model.class_names) if positive[k]}
        result = Evaluation(len(rows), evaluated_on, mAP=float(np.mean(list(ap.values()))), ap=ap,
                            no_positives=tuple(n for n, p in zip(model.class_names, positive) if not p), **common)
    else:
        predicted = scores.argmax(axis=1)
        per_class = per_class_accuracy(truth, predicted, len(model.class_names))
        counts = np.bincount(truth, minlength=len(model.class_names))
        result = Evaluation(
            len(rows), evaluated_on, accuracy=float((predicted == truth).mean()),
            mean_class_accuracy=float(np.nanmean(per_class)),
            per_class={name: ClassAccuracy(float(per_class[k]), int(counts[k]))
                       for k, name in enumerate(model.class_names) if counts[k]}, **common)
    if report_path is not None:
        Path(report_path).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if plots is not None:
        write_plots(result, plots, image_folder(features.record))
    return result


def scored_images(rows: list[Prediction], truth: np.ndarray, class_names: list[str]) -> tuple[ScoredImage, ...]:
    """The model's rows with their truth: class indices n (single-label) or targets n×K (multi-label)."""
    if truth.ndim == 1:
        return tuple(ScoredImage(row.path, class_names[t], row.predicted, row.score) for row, t in zip(rows, truth))
    return tuple(ScoredImage(row.path, tuple(n for n, t in zip(class_names, targets) if t > 0), row.predicted,
                           row.score, row.scores, tuple(n for n, t in zip(class_names, targets) if t == 0))
                 for row, targets in zip(rows, truth))


def image_folder(record: dict) -> Path | None:
    """The folder a feature file's paths are relative to, if it is reachable here (VOC files record
    the folder given to extract, the devkit's paths are relative to its VOC2007 folder below it)."""
    root = Path(record.get("image_root") or "")
    if record.get("dataset") == "voc2007":
        root = find_voc_root(root) or root
    return root if record.get("image_root") and root.is_dir() else None
