"""SVM model files (HDF5, no pickle): weights, biases, class names, C, provenance and the split.

Layout:
    coef          K×D float32        intercept   K float64
    class_names   K UTF-8 strings    train_paths / test_paths  UTF-8 strings (the split)
Attributes: sppfeat_kind = "svm_model", format_version, C, power (feature normalisation exponent),
multilabel, cv_scores (JSON), feature_config (JSON: the extraction record of the feature file, from
which :attr:`SVMModel.feature_settings` rebuilds its settings), features_fingerprint, split (JSON:
protocol, seed, counts), created, sppfeat_version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import FORMAT_VERSION, MODEL, ExtractionConfig, changed_settings, setting_text
from .hdf5 import STR, UNREADABLE, damaged_file, open_hdf5, read_strings, written_hdf5

KIND = "svm_model"


@dataclass
class SVMModel:
    """coef K×D float32, intercept K; feature_record: the extraction record of the training features;
    train_paths / test_paths: the split; cv_scores {C: mean CV score} when C was cross-validated."""

    coef: np.ndarray
    intercept: np.ndarray
    class_names: list[str]
    C: float
    power: float
    multilabel: bool
    feature_record: dict
    features_fingerprint: str
    train_paths: list[str]
    test_paths: list[str]
    split: dict = field(default_factory=dict)
    cv_scores: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def feature_settings(self) -> ExtractionConfig:
        """The extraction settings the model's features were made with."""
        return ExtractionConfig.from_record(self.feature_record)


def save_model(path: str | Path, model: SVMModel) -> None:
    with written_hdf5(path, KIND, FORMAT_VERSION) as f:
        f.create_dataset("coef", data=model.coef.astype(np.float32))
        f.create_dataset("intercept", data=model.intercept.astype(np.float64))
        f.create_dataset("class_names", data=model.class_names, dtype=STR)
        f.create_dataset("train_paths", data=model.train_paths, dtype=STR)
        f.create_dataset("test_paths", data=model.test_paths, dtype=STR)
        f.attrs["C"] = model.C
        f.attrs["power"] = model.power
        f.attrs["multilabel"] = model.multilabel
        f.attrs["feature_config"] = json.dumps(model.feature_record, sort_keys=True)
        f.attrs["features_fingerprint"] = model.features_fingerprint
        f.attrs["split"] = json.dumps(model.split, sort_keys=True)
        f.attrs["cv_scores"] = json.dumps({str(k): v for k, v in model.cv_scores.items()})


def load_model(path: str | Path) -> SVMModel:
    """Read a model file (format 1 or 2); ValueError with a one-line reason if it is not one or is
    damaged (arrays or attributes missing or unreadable, shapes that disagree, weights not finite)."""
    with open_hdf5(path, "model file") as f:
        if f.attrs.get("sppfeat_kind") != KIND:
            raise ValueError(f"{path} is not an sppfeat SVM model file")
        try:
            model = SVMModel(
                coef=f["coef"][()], intercept=f["intercept"][()],
                class_names=read_strings(f["class_names"]),
                C=float(f.attrs["C"]), power=float(f.attrs["power"]), multilabel=bool(f.attrs["multilabel"]),
                feature_record=json.loads(f.attrs["feature_config"]),
                features_fingerprint=str(f.attrs["features_fingerprint"]),
                train_paths=read_strings(f["train_paths"]), test_paths=read_strings(f["test_paths"]),
                split=json.loads(f.attrs["split"]), cv_scores=json.loads(f.attrs["cv_scores"]),
                format_version=int(f.attrs.get("format_version", 1)),
            )
        except UNREADABLE as exc:
            raise damaged_file(path, "SVM model file", exc) from None
    problem = weights_problem(model)
    if problem:
        raise ValueError(f"{path} is a damaged SVM model file: {problem}")
    return model


def weights_problem(model: SVMModel) -> str | None:
    """Why coef (K×D), intercept (K) and the K class names cannot score features, or None."""
    k = len(model.class_names)
    if model.coef.dtype.kind != "f" or model.intercept.dtype.kind != "f":
        return f"SVMs of type {model.coef.dtype} and biases of type {model.intercept.dtype}, not floats"
    if model.coef.ndim != 2 or len(model.coef) != k or model.intercept.shape != (k,):
        return f"SVMs of shape {model.coef.shape} and biases of shape {model.intercept.shape} for {k} class names"
    if not (np.isfinite(model.coef).all() and np.isfinite(model.intercept).all()):
        return "its SVMs are not finite (NaN or infinity)"
    return None


def check_compatible(model: SVMModel, feature_record: dict, dim: int, features_path) -> None:
    """ValueError naming the first setting in which the features differ from the model's (or their
    dimensions, when no recorded setting explains it)."""
    changed = changed_settings(model.feature_record, feature_record, MODEL)
    if changed:
        key = changed[0]
        raise ValueError(f"{features_path} was extracted with {setting_text(key, feature_record)}, "
                         f"the model with {setting_text(key, model.feature_record)}")
    if model.coef.shape[1] != dim:
        raise ValueError(f"model expects {model.coef.shape[1]}-d features, {features_path} has {dim}-d")
