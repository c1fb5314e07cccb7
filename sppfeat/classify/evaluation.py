"""eval: a model's scores on a feature file (accuracy per class, or VOC 2007 11-point AP)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..storage.feature_file import open_features
from ..storage.hdf5 import check_output
from ..storage.model_file import check_compatible, load_model
from .metrics import average_precision_11pt, per_class_accuracy
from .svm import decision_function, normalize_features
from .training import fingerprint


@dataclass(frozen=True)
class ClassAccuracy:
    """accuracy: fraction of the class's n test images classified correctly."""

    accuracy: float
    n: int


@dataclass(frozen=True)
class Evaluation:
    """A model's scores on a feature file; every score is a fraction in [0, 1].

    n_test: rows scored; evaluated_on: 'recorded test split' (the model's own feature file), 'every
    row' (another file) or 'every row but those left out'; left_out_training: rows of another file
    whose paths are the model's training images, left out unless asked for; unknown_classes {class
    name: rows} of classes the model does not know and n_unlabelled rows without a class (both not
    scored). Single-label models: accuracy, mean_class_accuracy and per_class {class name:
    ClassAccuracy} (classes with test images only). Multi-label models: mAP and ap {class name:
    11-point AP}. The fields of the other kind are None. Scores in ``to_json()`` are rounded to 4
    decimals.
    """

    n_test: int
    evaluated_on: str
    left_out_training: int = 0
    unknown_classes: dict[str, int] = field(default_factory=dict)
    n_unlabelled: int = 0
    accuracy: float | None = None
    mean_class_accuracy: float | None = None
    per_class: dict[str, ClassAccuracy] | None = None
    mAP: float | None = None
    ap: dict[str, float] | None = None

    @property
    def multilabel(self) -> bool:
        return self.mAP is not None

    def to_json(self) -> dict:
        """The report as plain JSON types, without the fields of the other kind of model."""
        return {key: _rounded(value) for key, value in asdict(self).items() if value is not None}


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(v) for key, v in value.items()}
    return value


def evaluate(model_path: str | os.PathLike, features_path: str | os.PathLike,
             report_path: str | os.PathLike | None = None, *, keep_training_rows: bool = False) -> Evaluation:
    """Score a model on a feature file: on the model's recorded test rows when the file is the one it
    was trained from, else on every row, except rows whose paths are the model's training images
    (unless `keep_training_rows`) and rows of classes the model does not know (counted in the
    result). With `report_path`, also write ``to_json()`` there."""
    if report_path is not None:
        check_output(report_path, replace=True)
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
    x = normalize_features(features.read_features(rows), model.power)
    scores = decision_function(x, model.coef, model.intercept)
    evaluated_on = ("recorded test split" if same_file else
                    "every row" if not (left_out_training or unknown or n_unlabelled) else "every row but those left out")
    left_out = dict(left_out_training=left_out_training, unknown_classes=unknown, n_unlabelled=n_unlabelled)
    if model.multilabel:
        ap = {name: average_precision_11pt(scores[:, k], truth[:, k]) for k, name in enumerate(model.class_names)}
        result = Evaluation(len(rows), evaluated_on, **left_out, mAP=float(np.mean(list(ap.values()))), ap=ap)
    else:
        predicted = scores.argmax(axis=1)
        per_class = per_class_accuracy(truth, predicted, len(model.class_names))
        counts = np.bincount(truth, minlength=len(model.class_names))
        result = Evaluation(
            len(rows), evaluated_on, **left_out, accuracy=float((predicted == truth).mean()),
            mean_class_accuracy=float(np.nanmean(per_class)),
            per_class={name: ClassAccuracy(float(per_class[k]), int(counts[k]))
                       for k, name in enumerate(model.class_names) if counts[k]})
    if report_path is not None:
        Path(report_path).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result
