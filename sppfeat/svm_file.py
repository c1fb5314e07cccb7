"""SVM model files (HDF5, no pickle): weights, biases, class names, C, provenance and the split.

Layout:
    coef          K×D float32        intercept   K float64
    class_names   K UTF-8 strings    train_paths / test_paths  UTF-8 strings (the split)
Attributes: sppfeat_kind = "svm_model", C, power (feature normalisation exponent), multilabel,
cv_scores (JSON), feature_config (JSON: the ``config`` of the feature file),
features_fingerprint, split (JSON: protocol, seed, counts), created, sppfeat_version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .store import STR, changed_settings, open_hdf5

KIND = "svm_model"
# feature-file settings that change the meaning of a vector: a model trained on one refuses the other
VECTOR_KEYS = ("backbone", "weights_sha256", "levels", "pool", "scale", "max_side", "normalization", "feature_dim")


@dataclass
class SVMModel:
    coef: np.ndarray  # K×D
    intercept: np.ndarray  # K
    class_names: list[str]
    C: float
    power: float
    multilabel: bool
    feature_config: dict
    features_fingerprint: str
    train_paths: list[str]
    test_paths: list[str]
    split: dict = field(default_factory=dict)
    cv_scores: dict = field(default_factory=dict)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """n×D normalised features -> n×K scores."""
        return x.astype(np.float32, copy=False) @ self.coef.T + self.intercept


def save_model(path: str | Path, model: SVMModel) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["sppfeat_kind"] = KIND
        f.create_dataset("coef", data=model.coef.astype(np.float32))
        f.create_dataset("intercept", data=model.intercept.astype(np.float64))
        f.create_dataset("class_names", data=model.class_names, dtype=STR)
        f.create_dataset("train_paths", data=model.train_paths, dtype=STR)
        f.create_dataset("test_paths", data=model.test_paths, dtype=STR)
        f.attrs["C"] = model.C
        f.attrs["power"] = model.power
        f.attrs["multilabel"] = model.multilabel
        f.attrs["feature_config"] = json.dumps(model.feature_config, sort_keys=True)
        f.attrs["features_fingerprint"] = model.features_fingerprint
        f.attrs["split"] = json.dumps(model.split, sort_keys=True)
        f.attrs["cv_scores"] = json.dumps({str(k): v for k, v in model.cv_scores.items()})
        f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        f.attrs["sppfeat_version"] = __version__
    tmp.replace(path)


def load_model(path: str | Path) -> SVMModel:
    """Read a model file; ValueError with a one-line reason if it is not one."""
    with open_hdf5(path, "model file") as f:
        if f.attrs.get("sppfeat_kind") != KIND:
            raise ValueError(f"{path} is not an sppfeat SVM model file")
        return SVMModel(
            coef=f["coef"][()], intercept=f["intercept"][()],
            class_names=f["class_names"].asstr()[()].tolist(),
            C=float(f.attrs["C"]), power=float(f.attrs["power"]), multilabel=bool(f.attrs["multilabel"]),
            feature_config=json.loads(f.attrs["feature_config"]),
            features_fingerprint=str(f.attrs["features_fingerprint"]),
            train_paths=f["train_paths"].asstr()[()].tolist(),
            test_paths=f["test_paths"].asstr()[()].tolist(),
            split=json.loads(f.attrs["split"]), cv_scores=json.loads(f.attrs["cv_scores"]),
        )


def check_compatible(model: SVMModel, feature_config: dict, dim: int, features_path) -> None:
    """ValueError naming the first setting in which the features differ from the model's."""
    if model.coef.shape[1] != dim:
        raise ValueError(f"model expects {model.coef.shape[1]}-d features, {features_path} has {dim}-d")
    changed = changed_settings(model.feature_config, feature_config, VECTOR_KEYS)
    if changed:
        key = changed[0]
        raise ValueError(f"{features_path} was extracted with {key}={feature_config.get(key)!r}, "
                         f"the model with {key}={model.feature_config.get(key)!r}")


def describe_model(path: str) -> str:
    model = load_model(path)
    cfg = model.feature_config
    lines = [f"{path}: sppfeat SVM model",
             f"  classes     {len(model.class_names)}" + (" (multi-label)" if model.multilabel else " (one-vs-rest)"),
             f"  weights     {model.coef.shape[0]} × {model.coef.shape[1]}",
             f"  C           {model.C:g}" + (f"  (cross-validated: {', '.join(f'{float(k):g}: {v:.4f}' for k, v in model.cv_scores.items())})"
                                          if model.cv_scores else ""),
             f"  features    power {model.power:g}, then L2; {cfg.get('backbone')} levels {cfg.get('levels')} "
             f"{cfg.get('pool')} pooling, scale {cfg.get('scale')}",
             f"  split       {json.dumps(model.split)}",
             f"  train/test  {len(model.train_paths)} / {len(model.test_paths)} images"]
    return "\n".join(lines)
