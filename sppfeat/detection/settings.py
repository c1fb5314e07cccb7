"""The settings of detector training (one owner: the API, the CLI's defaults and the model file's
record all read them here). No heavy imports: the CLI reads the defaults at start-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingSettings:
    """C: SVM penalty; positive_weight: cᵢ of positives; rounds: mining rounds after the first
    training; negative_iou; initial_negatives: random windows per image to start from;
    hard_margin / easy_margin: margins above which a negative is mined / below which a cached one
    is dropped; new_per_image: mined negatives per image, class and round (the highest scoring);
    stop_fraction: mining stops when a round adds fewer than this share of the cache; regression:
    learn box regressors (ridge, penalty `ridge`) on windows with IoU >= regression_iou to an
    object, at most regression_per_object per object; mirror: each object is also a positive as
    seen in the image flipped left-right (one more network pass per image with objects); seed:
    of the samples."""

    C: float = 1.0
    positive_weight: float = 2.0
    rounds: int = 3
    negative_iou: float = 0.3
    initial_negatives: int = 20
    hard_margin: float = -1.0
    easy_margin: float = -1.2
    new_per_image: int = 10
    stop_fraction: float = 0.02
    regression: bool = True
    regression_iou: float = 0.6
    regression_per_object: int = 32
    ridge: float = 0.3
    mirror: bool = False
    seed: int = 0

    def __post_init__(self):
        for name in ("C", "positive_weight", "ridge"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("rounds", "initial_negatives", "new_per_image", "regression_per_object"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not 0 < self.negative_iou < 1 or not 0 < self.regression_iou <= 1:
            raise ValueError("negative_iou and regression_iou must be in (0, 1)")
