"""Detector model files (HDF5, no pickle): one linear SVM per class on window vectors, optional
box regressors, and every setting that made them.

Layout:
    coef          K×D float32       intercept    K float64      class_names   K UTF-8 strings
    regression    K×4×(D+1) float32 (optional: per class, (dx, dy, dw, dh) = W · [x, 1])
Attributes: sppfeat_kind = "detector_model", format_version, feature_config (JSON: the extraction
record of the window vectors), proposals (JSON: the ProposalConfig record, or the proposal
source when given as a file), training (JSON: the training settings and counts), created,
sppfeat_version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import FORMAT_VERSION, ExtractionConfig
from ..storage.hdf5 import STR, open_hdf5, read_strings, written_hdf5
from .proposals import ProposalConfig

KIND = "detector_model"


@dataclass
class DetectorModel:
    """coef K×D float32, intercept K: margins = x · coefᵀ + intercept for normalised window vectors
    x (sppfeat.detection.maps); regression K×4×(D+1) or None; feature_record: the extraction
    settings' record; proposals: how windows are proposed (ProposalConfig record, + 'source' when
    training used a given file); training: the training settings and counts."""

    coef: np.ndarray
    intercept: np.ndarray
    class_names: list[str]
    feature_record: dict
    proposals: dict
    training: dict = field(default_factory=dict)
    regression: np.ndarray | None = None

    @property
    def feature_settings(self) -> ExtractionConfig:
        return ExtractionConfig.from_record(self.feature_record)

    @property
    def score_kind(self) -> str:
        """'probability' (a softmax head: scores in [0, 1], comparable across classes) or 'margin'
        (linear SVMs: comparable within a class only)."""
        return "margin"

    @property
    def proposal_settings(self) -> ProposalConfig:
        """The settings to propose windows with where no proposals are given."""
        return ProposalConfig.from_record(self.proposals) if "method" in self.proposals else ProposalConfig()

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """N×K margins of N×D normalised window vectors."""
        return vectors @ self.coef.T + self.intercept.astype(np.float32)

    def offsets(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """N×4 box offsets of class k (zeros without regression)."""
        if self.regression is None:
            return np.zeros((len(vectors), 4), np.float32)
        return vectors @ self.regression[k, :, :-1].T + self.regression[k, :, -1]


def save_detector(path: str | Path, model: DetectorModel) -> None:
    with written_hdf5(path, KIND, FORMAT_VERSION) as f:
        f.create_dataset("coef", data=model.coef.astype(np.float32))
        f.create_dataset("intercept", data=model.intercept.astype(np.float64))
        f.create_dataset("class_names", data=model.class_names, dtype=STR)
        if model.regression is not None:
            f.create_dataset("regression", data=model.regression.astype(np.float32))
        f.attrs["feature_config"] = json.dumps(model.feature_record, sort_keys=True)
        f.attrs["proposals"] = json.dumps(model.proposals, sort_keys=True)
        f.attrs["training"] = json.dumps(model.training, sort_keys=True)


def load_detector(path: str | Path) -> DetectorModel:
    """Read a detector file; ValueError with a one-line reason if it is not one."""
    with open_hdf5(path, "detector model") as f:
        if f.attrs.get("sppfeat_kind") != KIND:
            raise ValueError(f"{path} is not an sppfeat detector model (made by sppfeat train-detector)")
        return DetectorModel(f["coef"][()], f["intercept"][()], read_strings(f["class_names"]),
                             json.loads(f.attrs["feature_config"]), json.loads(f.attrs["proposals"]),
                             json.loads(f.attrs["training"]), f["regression"][()] if "regression" in f else None)
