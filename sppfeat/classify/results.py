"""What eval returns: an :class:`Evaluation` with a :class:`ScoredImage` per test image."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ClassAccuracy:
    """accuracy: fraction of the class's n test images classified correctly."""

    accuracy: float
    n: int


@dataclass(frozen=True)
class ScoredImage:
    """One scored test image. true: its class (single-label) or its positive classes (multi-label);
    predicted, score, scores: as in :class:`~sppfeat.classify.prediction.Prediction` (margin 0 as
    the multi-label threshold); difficult: the classes it shows only as 'difficult' objects, which
    AP ignores (multi-label, else None)."""

    path: str
    true: str | tuple[str, ...]
    predicted: str | tuple[str, ...]
    score: float
    scores: dict[str, float] | None = None
    difficult: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Evaluation:
    """A model's scores on a feature file; every score is a fraction in [0, 1].

    n_test: rows scored; evaluated_on: 'recorded test split' (the model's own feature file), 'every
    row' (another file) or 'every row but those left out'; left_out_training: rows of another file
    whose paths are the model's training images, left out unless asked for; unknown_classes {class
    name: rows} of classes the model does not know and n_unlabelled rows without a class (both not
    scored). Single-label models: accuracy, mean_class_accuracy and per_class {class name:
    ClassAccuracy} (classes with test images only). Multi-label models: ap {class name: 11-point
    AP} of the classes with a positive test image, mAP their mean, and no_positives the classes
    without one (AP undefined: left out of ap and mAP). The fields of the other kind are None. class_names: the model's classes;
    predictions: one ScoredImage per scored row, in file order. Scores in ``to_json()`` are rounded
    to 4 decimals.
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
    no_positives: tuple[str, ...] | None = None
    class_names: tuple[str, ...] = ()
    predictions: tuple[ScoredImage, ...] = ()

    @property
    def multilabel(self) -> bool:
        return self.mAP is not None

    def to_json(self) -> dict:
        """The report as plain JSON types, without the fields (and per-image keys) of the other kind
        of model."""
        return _without_none(asdict(self))


def _without_none(value):
    if isinstance(value, dict):
        return {key: _without_none(v) for key, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value
