"""Detector model files (HDF5, no pickle): a fine-tuned head (softmax probabilities and box
offsets) or one linear SVM per class on window vectors with optional box regressors, and every
setting that made them.

Layout:
    class_names   K UTF-8 strings
    head/<name>   float32 tensors of the WindowHead's state dict (optional), its shape in the
                  attribute head (JSON: sppfeat.detection.head.WindowHead.shape)
    coef          K×D float32, intercept K float64 (the SVMs; absent when the head scores)
    regression    K×4×(D+1) float32 (optional: per class, (dx, dy, dw, dh) = W · [x, 1])
Attributes: sppfeat_kind = "detector_model", format_version, feature_config (JSON: the extraction
record of the window vectors), proposals (JSON: the ProposalConfig record, or the proposal
source when given as a file), training (JSON: the training settings and counts), created,
sppfeat_version. Files written before the head (SVMs only) load and detect as they did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import FORMAT_VERSION, ExtractionConfig
from ..storage.hdf5 import STR, UNREADABLE, damaged_file, open_hdf5, read_strings, written_hdf5
from ..classify.svm import normalize_features
from .head import WindowHead
from .maps import ImageMap, RegionVectors
from .proposals import ProposalConfig

KIND = "detector_model"


@dataclass
class WindowScores:
    """scores N×K of N windows (probabilities or margins); offsets(rows): len(rows)×K×4 box
    offsets of those windows for every class, or None without box regression."""

    scores: np.ndarray
    offsets: Callable[[np.ndarray], np.ndarray | None]


@dataclass
class DetectorModel:
    """coef K×D float32, intercept K: margins = x · coefᵀ + intercept for normalised window vectors
    x (sppfeat.detection.maps; with a head, its L2-normalised last hidden layer), or None when the
    head scores (softmax probabilities); regression K×4×(D+1) or None (the SVMs' box regression on
    pooled vectors); head: the fine-tuned WindowHead (its box offsets move the windows) or None;
    feature_record: the extraction settings' record; proposals: how windows are proposed
    (ProposalConfig record, + 'source' when training used a given file); training: the training
    settings and counts."""

    coef: np.ndarray | None
    intercept: np.ndarray | None
    class_names: list[str]
    feature_record: dict
    proposals: dict
    training: dict = field(default_factory=dict)
    regression: np.ndarray | None = None
    head: WindowHead | None = None

    @property
    def feature_settings(self) -> ExtractionConfig:
        return ExtractionConfig.from_record(self.feature_record)

    @property
    def context(self) -> float:
        """The window vectors' context factor (0: none; see RegionVectors); 0 in models from before it."""
        return float(self.training.get("context", 0.0))

    @property
    def score_kind(self) -> str:
        """'probability' (a softmax head: scores in [0, 1], comparable across classes) or 'margin'
        (linear SVMs: comparable within a class only)."""
        return "probability" if self.coef is None else "margin"

    @property
    def vote_floor(self) -> float:
        """Box voting weighs a window by its score above this: 0 for probabilities, -1 for margins
        (the SVMs' margin for negatives)."""
        return 0.0 if self.coef is None else -1.0

    def trained_classes(self) -> np.ndarray:
        """Indices of the classes that can detect (an SVM without training positives cannot)."""
        if self.coef is None:
            return np.arange(len(self.class_names))
        return np.flatnonzero(self.coef.any(axis=1))

    def score_windows(self, rv: RegionVectors, image_map: ImageMap, windows: np.ndarray) -> WindowScores:
        """Scores and box offsets of N usable windows (pixels as stored) of an image's map; each
        window covering other cells of the map is pooled and scored once."""
        if self.head is not None:
            cells, inverse = rv.unique_cells(image_map, windows)
            probs, moves, hidden = self.head.predict(image_map.fmap, cells)
            scores = probs if self.coef is None else self.scores(normalize_features(hidden))
            return WindowScores(scores[inverse], lambda rows: moves[inverse[rows]])
        unique, inverse = rv.pool_unique(image_map, windows)

        def moves(rows: np.ndarray) -> np.ndarray | None:  # one product over the vectors the rows cover
            if self.regression is None:
                return None
            needed, back = np.unique(inverse[rows], return_inverse=True)
            return self.offsets(unique if len(needed) == len(unique) else unique[needed])[back.reshape(-1)]

        return WindowScores(self.scores(unique)[inverse], moves)

    def problem(self) -> str | None:
        """Why these arrays cannot be a detector (shapes that disagree, values that are not finite), or None."""
        k = len(self.class_names)
        if k == 0 or len(set(self.class_names)) != k:
            return f"{k} class names, {k - len(set(self.class_names))} repeated" if k else "no class names"
        if self.coef is None and self.head is None:
            return "neither SVMs (coef) nor a head"
        arrays = {"regression": self.regression}
        if self.coef is not None:
            if self.coef.ndim != 2 or len(self.coef) != k or self.intercept is None or self.intercept.shape != (k,):
                return f"SVMs of shape {self.coef.shape} for {k} class names"
            arrays.update(coef=self.coef, intercept=self.intercept)
        if self.regression is not None and (self.regression.ndim != 3 or self.regression.shape[:2] != (k, 4)):
            return f"box regressors of shape {self.regression.shape} for {k} class names"
        if self.head is not None:
            if self.head.n_classes != k:
                return f"a head of {self.head.n_classes} classes for {k} class names"
            arrays.update({f"head/{name}": t.detach().cpu().numpy() for name, t in self.head.state_dict().items()})
        for name, array in arrays.items():
            if array is not None and not np.isfinite(array).all():
                return f"{name} is not finite (NaN or infinity)"
        return None

    @property
    def proposal_settings(self) -> ProposalConfig:
        """The settings to propose windows with where no proposals are given."""
        return ProposalConfig.from_record(self.proposals) if "method" in self.proposals else ProposalConfig()

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """N×K margins of N×D normalised window vectors."""
        return vectors @ self.coef.T + self.intercept.astype(np.float32)

    def offsets(self, vectors: np.ndarray) -> np.ndarray:
        """N×K×4 box offsets of N×D normalised window vectors for every class (needs regression)."""
        k, _, width = self.regression.shape
        weights = self.regression.reshape(k * 4, width)
        return (vectors @ weights[:, :-1].T + weights[:, -1]).reshape(len(vectors), k, 4)


def save_detector(path: str | Path, model: DetectorModel) -> None:
    """Write `model` to `path`; ValueError (nothing written) when it is not a usable detector."""
    problem = model.problem()
    if problem:
        raise ValueError(f"not writing {path}: {problem}")
    with written_hdf5(path, KIND, FORMAT_VERSION) as f:
        f.create_dataset("class_names", data=model.class_names, dtype=STR)
        if model.coef is not None:
            f.create_dataset("coef", data=model.coef.astype(np.float32))
            f.create_dataset("intercept", data=model.intercept.astype(np.float64))
        if model.head is not None:
            group = f.create_group("head")
            for name, tensor in model.head.state_dict().items():
                group.create_dataset(name, data=tensor.detach().cpu().float().numpy())
            f.attrs["head"] = json.dumps(model.head.shape, sort_keys=True)
        if model.regression is not None:
            f.create_dataset("regression", data=model.regression.astype(np.float32))
        f.attrs["feature_config"] = json.dumps(model.feature_record, sort_keys=True)
        f.attrs["proposals"] = json.dumps(model.proposals, sort_keys=True)
        f.attrs["training"] = json.dumps(model.training, sort_keys=True)


def load_detector(path: str | Path) -> DetectorModel:
    """Read a detector file; ValueError with a one-line reason if it is not one or is damaged."""
    with open_hdf5(path, "detector model") as f:
        if f.attrs.get("sppfeat_kind") != KIND:
            raise ValueError(f"{path} is not an sppfeat detector model (made by sppfeat train-detector)")
        try:
            head = None
            if "head" in f:
                head = WindowHead.from_record(json.loads(f.attrs["head"]))
                head.load_state_dict({name: torch.from_numpy(f["head"][name][()]) for name in f["head"]})
                head.eval()
            model = DetectorModel(f["coef"][()] if "coef" in f else None, f["intercept"][()] if "coef" in f else None,
                                  read_strings(f["class_names"]), json.loads(f.attrs["feature_config"]),
                                  json.loads(f.attrs["proposals"]), json.loads(f.attrs["training"]),
                                  f["regression"][()] if "regression" in f else None, head)
        except UNREADABLE as exc:
            raise damaged_file(path, "detector model", exc) from None
    problem = model.problem()
    if problem:
        raise ValueError(f"{path} is a damaged detector model: {problem}")
    return model
