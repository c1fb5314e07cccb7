"""train-svm and eval: split -> normalise -> SVM (C by cross-validation) -> metrics."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metrics import average_precision_11pt, per_class_accuracy
from .split import per_class_split, stratified_split
from .store import FeatureFile, open_features
from .svm import DEFAULT_C_GRID, LinearSVM, cross_validate_c, gram_matrix, normalize_features
from .svm_file import SVMModel, check_compatible, load_model, save_model

log = logging.getLogger("sppfeat")
PROTOCOLS = ("auto", "per-class", "stratified", "all")
DEFAULT_POWER = 0.5  # signed square root before L2: +0.2 points on Caltech 101 (README)


def fingerprint(features: FeatureFile) -> str:
    """Identity of a feature file's rows: SHA-256 of its configuration and its path list."""
    digest = hashlib.sha256(json.dumps(features.config, sort_keys=True).encode())
    for path in features.paths:
        digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def choose_protocol(features: FeatureFile, protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol != "auto":
        return protocol
    if features.multilabel:
        return "all"
    return "per-class" if features.config.get("dataset") == "caltech101" else "stratified"


@dataclass
class TrainResult:
    path: Path
    C: float
    cv_scores: dict
    n_train: int
    n_test: int
    seconds: float


def train_svm(features_path, model_path, *, C: float | str = "auto", power: float = DEFAULT_POWER,
              protocol: str = "auto", train_per_class: int = 30, test_per_class: int = 50,
              test_fraction: float = 0.25, seed: int = 0, folds: int = 3, c_grid=DEFAULT_C_GRID,
              overwrite: bool = False) -> TrainResult:
    """Train linear SVMs on a feature file and write the model file.

    protocol: 'per-class' (Caltech 101: `train_per_class` train, up to `test_per_class` test per
    class), 'stratified' (`test_fraction` of each class held out), 'all' (train on every row;
    the test set is another file), 'auto' (all for multi-label data, per-class for caltech101,
    else stratified). C: a number or 'auto' (k-fold CV on the training part over `c_grid`).
    """
    start = time.perf_counter()
    model_path = Path(model_path)
    if model_path.exists() and not overwrite:
        raise ValueError(f"{model_path} exists; pass --overwrite to replace it")
    if not (C == "auto" or (isinstance(C, (int, float)) and C > 0)):
        raise ValueError(f"C must be a positive number or 'auto', got {C!r}")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    features = open_features(features_path)
    protocol = choose_protocol(features, protocol)
    if features.multilabel:
        y_all = features.targets.astype(np.int8)
        if protocol != "all":
            raise ValueError("multi-label features are trained on every row (--protocol all); "
                             "evaluate on a separate test file")
        train, test = np.arange(len(features.paths)), np.zeros(0, dtype=np.int64)
    else:
        y_all = features.labels
        if len(features.class_names) < 2 or (y_all < 0).all():
            raise ValueError(f"{features_path} has no class labels (need at least 2 classes)")
        if protocol == "per-class":
            train, test = per_class_split(y_all, train_per_class, test_per_class, seed, features.class_names)
        elif protocol == "stratified":
            train, test = stratified_split(y_all, test_fraction, seed)
        else:
            train, test = np.flatnonzero(y_all >= 0), np.zeros(0, dtype=np.int64)
    n_classes = len(features.class_names)
    x = normalize_features(features.read_features(train), power)
    y = y_all[train]
    gram = gram_matrix(x)
    cv_scores: dict = {}
    if C == "auto":
        C, cv_scores = cross_validate_c(gram, y, n_classes, c_grid, folds, seed)
        log.info("C = %g chosen by %d-fold cross-validation (%s)", C, folds,
                 ", ".join(f"{c:g}: {s:.4f}" for c, s in cv_scores.items()))
    svm = LinearSVM(C=float(C), seed=seed).fit(x, y, n_classes, gram=gram)
    split_info = {"protocol": protocol, "seed": seed, "n_train": len(train), "n_test": len(test)}
    if protocol == "per-class":
        split_info.update(train_per_class=train_per_class, test_per_class=test_per_class)
    elif protocol == "stratified":
        split_info.update(test_fraction=test_fraction)
    save_model(model_path, SVMModel(
        coef=svm.coef_, intercept=svm.intercept_, class_names=features.class_names, C=float(C), power=power,
        multilabel=features.multilabel, feature_config=features.config,
        features_fingerprint=fingerprint(features),
        train_paths=[features.paths[i] for i in train], test_paths=[features.paths[i] for i in test],
        split=split_info, cv_scores=cv_scores))
    return TrainResult(model_path, float(C), cv_scores, len(train), len(test), time.perf_counter() - start)


def evaluate(model_path, features_path, report_path=None) -> dict:
    """Score a model on a feature file: on the model's recorded test rows when the file is the one it
    was trained from, else on every row. Returns (and optionally writes as JSON) the report:
    single-label: accuracy, mean_class_accuracy, per_class {name: {accuracy, n}}, n_test;
    multi-label: mAP, ap {name: AP}, n_test. All scores are fractions in [0, 1].
    """
    model = load_model(model_path)
    features = open_features(features_path)
    check_compatible(model, features.config, features.dim, features_path)
    if features.multilabel != model.multilabel:
        raise ValueError(f"the model is {'multi' if model.multilabel else 'single'}-label, "
                         f"{features_path} is not")
    same_file = fingerprint(features) == model.features_fingerprint
    if same_file:
        if not model.test_paths:
            raise ValueError(f"the model was trained on every row of {features_path}: evaluate on another file")
        row_of = {p: i for i, p in enumerate(features.paths)}
        rows = np.array([row_of[p] for p in model.test_paths], dtype=np.int64)
    else:
        rows = np.arange(len(features.paths))
    model_index = {name: k for k, name in enumerate(model.class_names)}
    if model.multilabel:
        columns = [features.class_names.index(name) if name in features.class_names else -1
                   for name in model.class_names]
        if -1 in columns:
            raise ValueError(f"{features_path} lacks classes of the model: "
                             f"{[n for n, c in zip(model.class_names, columns) if c < 0]}")
        truth = features.targets[rows][:, columns]
    else:
        mapped = np.array([model_index.get(name, -1) for name in features.class_names] + [-1])
        truth = mapped[features.labels[rows]]  # label -1 indexes the trailing -1
        rows, truth = rows[truth >= 0], truth[truth >= 0]
    if len(rows) == 0:
        raise ValueError(f"{features_path} has no labelled rows of the model's classes to evaluate on")
    scores = model.decision_function(normalize_features(features.read_features(rows), model.power))
    if model.multilabel:
        ap = {name: average_precision_11pt(scores[:, k], truth[:, k]) for k, name in enumerate(model.class_names)}
        report = {"mAP": float(np.mean(list(ap.values()))), "ap": ap, "n_test": int(len(rows))}
    else:
        predicted = scores.argmax(axis=1)
        per_class = per_class_accuracy(truth, predicted, len(model.class_names))
        counts = np.bincount(truth, minlength=len(model.class_names))
        report = {
            "accuracy": float((predicted == truth).mean()),
            "mean_class_accuracy": float(np.nanmean(per_class)),
            "per_class": {name: {"accuracy": float(per_class[k]), "n": int(counts[k])}
                          for k, name in enumerate(model.class_names) if counts[k]},
            "n_test": int(len(rows)),
        }
    report["evaluated_on"] = "recorded test split" if same_file else "every row"
    if report_path is not None:
        Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
    return report
