"""train-svm: split -> normalise -> SVMs (C by cross-validation) -> model file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..storage.feature_file import FeatureFile, open_features
from ..storage.hdf5 import check_output
from ..storage.model_file import SVMModel, save_model
from .split import per_class_split, stratified_split
from .svm import DEFAULT_C_GRID, LinearSVM, cross_validate_c, gram_matrix, normalize_features

log = logging.getLogger("sppfeat")
PROTOCOLS = ("auto", "per-class", "stratified", "all")
DEFAULT_POWER = 0.5  # signed square root before L2: +0.2 points on Caltech 101 (docs/benchmarks.md)


def fingerprint(features: FeatureFile) -> str:
    """Identity of a feature file's rows: SHA-256 of its extraction record and its path list."""
    digest = hashlib.sha256(json.dumps(features.record, sort_keys=True).encode())
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
    return "per-class" if features.record.get("dataset") == "caltech101" else "stratified"


@dataclass
class TrainResult:
    """path: the model file written; C: the penalty used; cv_scores: {C: mean cross-validation score}
    (empty for a fixed C); n_train / n_test: rows in the split; seconds: wall time."""

    path: Path
    C: float
    cv_scores: dict
    n_train: int
    n_test: int
    seconds: float


def train_svm(features_path: str | os.PathLike, model_path: str | os.PathLike, *, C: float | str = "auto",
              power: float = DEFAULT_POWER, protocol: str = "auto", train_per_class: int = 30,
              test_per_class: int = 50, test_fraction: float = 0.25, seed: int = 0, folds: int = 3,
              c_grid=DEFAULT_C_GRID, overwrite: bool = False) -> TrainResult:
    """Train linear SVMs on a feature file and write the model file.

    protocol: 'per-class' (Caltech 101: `train_per_class` train, up to `test_per_class` test per
    class), 'stratified' (`test_fraction` of each class held out), 'all' (train on every row;
    the test set is another file), 'auto' (all for multi-label data, per-class for caltech101,
    else stratified). C: a number or 'auto' (k-fold CV on the training part over `c_grid`).
    power: signed power applied before L2 normalisation (1 = plain L2).
    """
    start = time.perf_counter()
    model_path = check_output(model_path, overwrite)
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
        multilabel=features.multilabel, feature_record=features.record,
        features_fingerprint=fingerprint(features),
        train_paths=[features.paths[i] for i in train], test_paths=[features.paths[i] for i in test],
        split=split_info, cv_scores=cv_scores))
    return TrainResult(model_path, float(C), cv_scores, len(train), len(test), time.perf_counter() - start)
