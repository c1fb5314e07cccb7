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
from .protocol import DEFAULT_POWER, Protocol, choose_protocol
from .split import per_class_split, stratified_split
from .svm import DEFAULT_C_GRID, LinearSVM, cross_validate_c, gram_matrix, normalize_features

log = logging.getLogger("sppfeat")


def fingerprint(features: FeatureFile) -> str:
    """Identity of a feature file's rows: SHA-256 of its extraction record and its path list."""
    digest = hashlib.sha256(json.dumps(features.record, sort_keys=True).encode())
    for path in features.paths:
        digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


@dataclass
class TrainResult:
    """path: the model file written; C: the penalty used; cv_scores: {C: mean cross-validation score}
    (empty for a fixed C); protocol: the protocol used; n_train / n_test: rows in the split;
    seconds: wall time."""

    path: Path
    C: float
    cv_scores: dict
    protocol: str
    n_train: int
    n_test: int
    seconds: float


def train_svm(features_path: str | os.PathLike, model_path: str | os.PathLike, *, C: float | str = "auto",
              power: float = DEFAULT_POWER, protocol: str = "auto", train_per_class: int | None = None,
              test_per_class: int | None = None, test_fraction: float | None = None, seed: int = 0,
              folds: int = 3, c_grid=DEFAULT_C_GRID, overwrite: bool = False) -> TrainResult:
    """Train linear SVMs on a feature file and write the model file.

    protocol and its options: see :mod:`sppfeat.classify.protocol` (options left None take their
    defaults: 30 train / 50 test per class, test fraction 0.25). C: a number or 'auto' (k-fold CV on
    the training part over `c_grid`, extended when the best C is on its edge). power: signed power
    applied before L2 normalisation (1 = plain L2).
    """
    start = time.perf_counter()
    model_path = check_output(model_path, overwrite, (features_path,))
    if not (C == "auto" or (isinstance(C, (int, float)) and C > 0)):
        raise ValueError(f"C must be a positive number or 'auto', got {C!r}")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    if C == "auto" and folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    features = open_features(features_path)
    chosen = choose_protocol(protocol, multilabel=features.multilabel, dataset=features.record.get("dataset", ""),
                             train_per_class=train_per_class, test_per_class=test_per_class,
                             test_fraction=test_fraction)
    train, test, y_all = split_rows(features, chosen, seed)
    n_classes = len(features.class_names)
    y = y_all[train]
    check_enough_images(y, features.class_names, folds if C == "auto" else None)
    x = normalize_features(features.read_features(train), power)
    gram = gram_matrix(x)
    cv_scores: dict = {}
    if C == "auto":
        C, cv_scores = cross_validate_c(gram, y, n_classes, c_grid, folds, seed)
        log.info("C = %g chosen by %d-fold cross-validation (%s)", C, folds,
                 ", ".join(f"{c:g}: {s:.4f}" for c, s in cv_scores.items()))
    svm = LinearSVM(C=float(C), seed=seed).fit(x, y, n_classes, gram=gram)
    split_info = {"protocol": chosen.name, "seed": seed, "n_train": len(train), "n_test": len(test),
                  **chosen.as_dict()}
    save_model(model_path, SVMModel(
        coef=svm.coef_, intercept=svm.intercept_, class_names=features.class_names, C=float(C), power=power,
        multilabel=features.multilabel, feature_record=features.record,
        features_fingerprint=fingerprint(features),
        train_paths=[features.paths[i] for i in train], test_paths=[features.paths[i] for i in test],
        split=split_info, cv_scores=cv_scores))
    return TrainResult(model_path, float(C), cv_scores, chosen.name, len(train), len(test),
                       time.perf_counter() - start)


def check_enough_images(y: np.ndarray, class_names: list[str], folds: int | None) -> None:
    """ValueError naming the classes with too few training images: fewer than `folds` (C chosen by
    cross-validation over that many stratified folds), or none (folds None: a fixed C).

    y: the training targets, class indices n (single-label: a class without rows is not checked: it
    is not trained, or :func:`split_rows` refuses it) or n×K targets in {1, -1, 0} (multi-label: positive images of
    every class counted).
    """
    if y.ndim == 1:
        counts = np.bincount(y, minlength=len(class_names))
        checked = counts > 0
    else:
        counts = (y > 0).sum(axis=0)
        checked = np.ones(len(class_names), dtype=bool)
    needed = folds or 1
    short = [(name, n) for name, n, c in zip(class_names, counts.tolist(), checked) if c and n < needed]
    if not short:
        return
    listed = ", ".join(f"{name} has {n}" for name, n in short[:5])
    listed += f" and {len(short) - 5} more classes" if len(short) > 5 else ""
    images = "training images" if y.ndim == 1 else "positive training images"
    if folds is None:
        raise ValueError(f"every class needs {images}: {listed}")
    fewer = "fewer folds=N, " if min(n for _, n in short) >= 2 else ""
    raise ValueError(f"C='auto' picks C by {folds}-fold cross-validation, which needs {folds} {images} of every "
                     f"class: {listed}; pass {fewer}a fixed C=N or more images")


def split_rows(features: FeatureFile, protocol: Protocol, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train rows, test rows, targets of every row: class indices, or N×K targets when multi-label);
    ValueError when the labels cannot train one-vs-rest SVMs (fewer than 2 classes, or a class
    whose folder's files were all skipped when extracting)."""
    if features.multilabel:
        return np.arange(len(features.paths)), np.zeros(0, dtype=np.int64), features.targets.astype(np.int8)
    labels = features.labels
    present = np.unique(labels[labels >= 0])
    if len(present) < 2:
        found = ("no labelled rows" if len(present) == 0 else
                 f"one class ({features.class_names[present[0]]}, {int((labels == present[0]).sum())} rows)")
        raise ValueError(f"{features.path} has {found}; training needs at least 2 classes "
                         "(class folders under the image folder)")
    # a class folder whose files were all skipped; a class without rows and without skipped files (a box
    # file's unused category, a shard's absent class) is not trained, as before
    lost = {name: sum(path.split("/")[0] == name for path, _ in features.skipped)
            for k, name in enumerate(features.class_names) if k not in present}
    lost = {name: n for name, n in lost.items() if n}
    if lost:
        named = ", ".join(f"{name} ({n} files skipped)" for name, n in lost.items())
        raise ValueError(f"{features.path} has no image of {len(lost)} of its classes: {named}; every class needs "
                         "training images (remove the class folder, or replace its files, and extract again)")
    if protocol.name == "per-class":
        train, test = per_class_split(labels, protocol.train_per_class, protocol.test_per_class, seed,
                                      features.class_names)
    elif protocol.name == "stratified":
        train, test = stratified_split(labels, protocol.test_fraction, seed)
    else:
        train, test = np.flatnonzero(labels >= 0), np.zeros(0, dtype=np.int64)
    return train, test, labels
