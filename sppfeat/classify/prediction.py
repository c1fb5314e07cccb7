"""`predict`: a trained model on new photos, one row per image, streamed.

The input is a folder of images (walked like ``extract``'s folder reader: every image below it,
sorted), one image file, or a feature file made with the model's settings. Images are described
with exactly the settings recorded in the model (backbone and weights checksum, levels, pool,
scales, max side, stored dtype) by the extraction machinery (worker processes, no feature file),
then normalised as in training (signed power, L2) and scored by the model's linear SVMs.

Scores are the SVMs' decision values w·x + b: **uncalibrated margins, not probabilities**. 0 is each
SVM's own boundary (a multi-label class is predicted above it); larger means further on the
class's side. They are comparable between images for one class, and only roughly between classes.
"""

from __future__ import annotations

import numbers
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h5py
import numpy as np

from ..data.discover import ImageList, list_file
from ..features.descriptor import DecodedItem, build_descriptor, describe_items
from ..features.interrupts import ExtractionInterrupted, StopSignals, WorkerFailed
from ..features.pipeline import list_all, run_model
from ..features.runtime import ImageFiles, Runtime, default_batch_size, resolve_device
from ..storage.feature_file import READ_ROWS, open_features
from ..storage.hdf5 import check_output, open_hdf5
from ..storage.model_file import SVMModel, check_compatible, load_model
from ..storage.prediction_file import PredictionWriter, prediction_format
from .svm import decision_function, normalize_features

DEFAULT_THRESHOLD = 0.0  # multi-label: a class is predicted when its margin is above this


@dataclass(frozen=True)
class Prediction:
    """One image's result.

    path: relative to the input folder (the file name for one image, the stored path for a feature
    file); predicted: the best class (single-label model; '' when its margin is not above a given
    threshold) or every class whose margin is above the threshold, highest first (multi-label; may
    be empty); score: the best class's margin (the winning SVM's decision value); top: the k best
    (class, margin) pairs, best first; scores: every class's margin (multi-label models, else None).
    """

    path: str
    predicted: str | tuple[str, ...]
    score: float
    top: tuple[tuple[str, float], ...]
    scores: dict[str, float] | None = None

    def columns(self) -> dict:
        """The row as the prediction file's columns (see :mod:`sppfeat.storage.prediction_file`)."""
        row = {"path": self.path, "predicted": self.predicted if isinstance(self.predicted, str)
               else list(self.predicted), "score": self.score}
        for rank, (name, score) in enumerate(self.top[1:], start=2):
            row[f"top{rank}"], row[f"top{rank}_score"] = name, score
        row.update({f"score_{name}": score for name, score in (self.scores or {}).items()})
        return row


@dataclass(frozen=True)
class Predictions:
    """The rows of a run in input order (iterate, index or len() it like a list); skipped: (path,
    reason) of every file that could not be used; class_names: the model's classes; seconds: wall
    time."""

    rows: tuple[Prediction, ...]
    skipped: tuple[tuple[str, str], ...]
    class_names: tuple[str, ...]
    multilabel: bool
    seconds: float

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


class Scorer:
    """A model's normalisation and SVMs: raw vectors n×D -> margins n×K -> Prediction rows.

    top_k: classes per row (at most K); threshold: see :class:`Prediction` (None: 0 for multi-label
    models, no threshold for single-label ones)."""

    def __init__(self, model: SVMModel, top_k: int = 1, threshold: float | None = None):
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
            raise ValueError(f"threshold must be a number or None, got {threshold!r}")
        self.model = model
        self.top_k = min(top_k, len(model.class_names))
        self.threshold = DEFAULT_THRESHOLD if threshold is None and model.multilabel else threshold

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Raw vectors n×D -> margins n×K float64."""
        x = normalize_features(vectors, self.model.power)
        return decision_function(x, self.model.coef, self.model.intercept)

    def rows(self, paths: list[str], scores: np.ndarray) -> list[Prediction]:
        """One Prediction per row of the margins `scores` (n×K)."""
        names = self.model.class_names
        rows = []
        for path, margins in zip(paths, scores):
            order = np.argsort(-margins, kind="stable")
            top = tuple((names[k], float(margins[k])) for k in order[:self.top_k])
            best = float(margins[order[0]])
            if self.model.multilabel:
                predicted = tuple(names[k] for k in order if margins[k] > self.threshold)
                per_class = {name: float(m) for name, m in zip(names, margins)}
                rows.append(Prediction(path, predicted, best, top, per_class))
            else:
                above = self.threshold is None or best > self.threshold
                rows.append(Prediction(path, names[order[0]] if above else "", best, top))
        return rows


@dataclass
class Job:
    """A prepared run: total images, the files refused before it, and the function that scores
    them: run(emit, stop) calls emit(rows) in input order and appends later refusals to skipped."""

    total: int
    skipped: list[tuple[str, str]]
    run: Callable[[Callable[[list[Prediction]], None], StopSignals], None]


def predict(model: str | os.PathLike, images: str | os.PathLike, output: str | os.PathLike | None = None, *,
            top_k: int = 1, threshold: float | None = None, runtime: Runtime | None = None,
            weights: str | os.PathLike | None = None, strict: bool = False, overwrite: bool = False,
            quiet: bool = True, on_rows: Callable[[list[Prediction]], None] | None = None) -> Predictions:
    """Label the images of `images` (a folder, one image file, or a feature file made with the
    model's settings) with the model file `model`.

    output: also write the rows to this .csv or .jsonl file as they come (flushed per batch: an
    interrupted run leaves the rows so far); on_rows: called with each batch of rows, in order.
    top_k, threshold: see :class:`Scorer`. runtime: how the run uses the machine; weights: a local
    copy of the model's backbone weights (its checksum must match the model's). strict: fail on
    the first file that cannot be used instead of skipping it. quiet: no progress on stderr.
    Raises ValueError (bad arguments, no usable image, a feature file of other settings, output
    exists without `overwrite`), WeightsUnavailable, ExtractionInterrupted (SIGINT / SIGTERM; the
    rows so far are written) and WorkerFailed.
    """
    start = time.perf_counter()
    runtime = runtime or Runtime()
    if output is not None:
        prediction_format(output)
        check_output(output, overwrite, (model, images if Path(images).is_file() else None, weights))
    try:
        svm = load_model(model)
    except ValueError:
        from ..detection.model import KIND as DETECTOR

        with open_hdf5(model, "model file") as f:
            if f.attrs.get("sppfeat_kind") == DETECTOR:
                raise ValueError(f"{model} is a detector model: use sppfeat detect") from None
        raise
    scorer = Scorer(svm, top_k, threshold)
    source = Path(images)
    if not source.exists():
        raise ValueError(f"images: {source} does not exist (expected a folder, an image file or a feature file)")
    if source.is_file() and h5py.is_hdf5(source):
        job = feature_file_job(source, scorer, strict)
    else:
        job = image_job(source, scorer, runtime, weights, strict, quiet)

    collected: list[Prediction] = []
    writer = PredictionWriter(output) if output is not None else None

    def emit(rows: list[Prediction]) -> None:
        collected.extend(rows)
        if writer is not None:
            writer.write([row.columns() for row in rows])
        if on_rows is not None:
            on_rows(rows)

    try:
        with StopSignals() as stop:
            job.run(emit, stop)
    except (ExtractionInterrupted, WorkerFailed) as exc:
        where = f"; the {len(collected)} rows so far are in {output}" if output is not None else ""
        so_far = f"after {len(collected) + len(job.skipped)} of {job.total} images{where}"
        if isinstance(exc, WorkerFailed):
            raise WorkerFailed(f"{exc} {so_far}") from None
        raise ExtractionInterrupted(exc.signum, f"interrupted by {signal.Signals(exc.signum).name} {so_far}") from None
    finally:
        if writer is not None:
            writer.close()
    if not collected:
        reasons = sorted({reason for _, reason in job.skipped})
        raise ValueError(f"no image of {images} could be used ({'; '.join(reasons)})")
    return Predictions(tuple(collected), tuple(job.skipped), tuple(svm.class_names), svm.multilabel,
                       time.perf_counter() - start)


def feature_file_job(path: Path, scorer: Scorer, strict: bool) -> Job:
    """Rows from a feature file's stored vectors, READ_ROWS at a time; its recorded skips are
    reported; ValueError when it was made with other settings than the model's."""
    features = open_features(path)
    check_compatible(scorer.model, features.record, features.dim, path)
    if strict and features.skipped:
        raise ValueError(f"--strict: {features.skipped[0][0]}: {features.skipped[0][1]}")

    def run(emit, stop: StopSignals) -> None:
        for lo in range(0, len(features.paths), READ_ROWS):
            hi = min(lo + READ_ROWS, len(features.paths))
            rows = scorer.rows(features.paths[lo:hi], scorer.scores(features.read_features(np.arange(lo, hi))))
            with stop.critical():
                emit(rows)

    return Job(len(features.paths) + len(features.skipped), list(features.skipped), run)


def image_job(source: Path, scorer: Scorer, runtime: Runtime, weights, strict: bool, quiet: bool) -> Job:
    """Rows from images described with the model's settings; ValueError for a missing or empty
    folder or a file that is not an image, WeightsUnavailable when the weights are not the model's."""
    settings = scorer.model.feature_settings.replace(weights=weights, dataset="folder", split=None)
    image_list = list_all(source, settings, strict) if source.is_dir() else list_file(source)
    device = resolve_device(runtime.device)
    descriptor, settings, _ = build_descriptor(settings, device)
    skipped = list(image_list.skipped)
    files = ImageFiles(image_list, settings.resize_policies(), np.arange(len(image_list.paths)),
                       runtime.decode_timeout)

    def run(emit, stop: StopSignals) -> None:
        sink = RowSink(scorer, image_list, settings.dtype, runtime.batch_size or default_batch_size(device), emit,
                       skipped)
        run_model(partial(describe_items, descriptor), files, sink, stop, device, runtime, strict, quiet, 0,
                  len(files), desc="predict")

    return Job(len(image_list.paths) + len(skipped), skipped, run)


class RowSink:
    """Described images -> rows, `batch` images at a time in input order; the vectors are first
    rounded to the model's stored dtype (float16 features give float16 vectors, as in training);
    images that failed go to `skipped` with their reason."""

    def __init__(self, scorer: Scorer, image_list: ImageList, dtype: str, batch: int,
                 emit: Callable[[list[Prediction]], None], skipped: list[tuple[str, str]]):
        self.scorer, self.paths, self.dtype, self.batch = scorer, image_list.paths, dtype, batch
        self.emit, self.skipped = emit, skipped
        self.items: list[DecodedItem] = []

    def add(self, item: DecodedItem) -> None:
        if item.error is None:
            self.items.append(item)
        else:
            self.skipped.append((self.paths[item.index], item.error))
        if len(self.items) == self.batch:
            self.flush()

    def flush(self) -> None:
        items, self.items = self.items, []
        if items:
            vectors = np.stack([item.vector for item in items]).astype(self.dtype).astype(np.float32)
            self.emit(self.scorer.rows([self.paths[item.index] for item in items], self.scorer.scores(vectors)))
