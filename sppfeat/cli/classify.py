"""The commands of the classifier: train-svm, eval, predict."""

from __future__ import annotations

import sys

import click

from ..classify.protocol import (DEFAULT_POWER, DEFAULT_TEST_FRACTION, DEFAULT_TEST_PER_CLASS,
                                 DEFAULT_TRAIN_PER_CLASS, PROTOCOLS)
from . import cli_wording, main, say
from .options import FINITE, PENALTY, PLOTS_FOLDER, POSITIVE, PREDICTION_FILE, Number, runtime_options


@main.command("train-svm")
@click.argument("features", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--C", "C", default="auto", show_default=True, type=PENALTY,
              help="SVM penalty, or 'auto' (cross-validated; the grid grows when the best C is on its edge).")
@click.option("--protocol", default="auto", show_default=True, type=click.Choice(PROTOCOLS),
              help="per-class (Caltech 101), stratified, all (multi-label / separate test file); auto follows "
                   "the options given, else the data set.")
@click.option("--train-per-class", type=click.IntRange(min=1),
              help=f"per-class: training images per class [default: {DEFAULT_TRAIN_PER_CLASS}].")
@click.option("--test-per-class", type=click.IntRange(min=0),
              help=f"per-class: test images per class, 0 = all remaining [default: {DEFAULT_TEST_PER_CLASS}].")
@click.option("--test-fraction", type=Number(0, 1, min_open=True, max_open=True),
              help=f"stratified: fraction of each class held out [default: {DEFAULT_TEST_FRACTION}].")
@click.option("--power", default=DEFAULT_POWER, show_default=True, type=POSITIVE,
              help="Signed power normalisation before L2 (0.5 = signed square root).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and the folds.")
@click.option("--folds", default=3, show_default=True, type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--overwrite", is_flag=True, help="Replace MODEL if it exists.")
def train_svm(features, model, **options):
    """Train linear SVMs on FEATURES (an extract output) and write MODEL."""
    from ..classify.training import train_svm as train_api

    result = train_api(features, model, **options)
    say(f"{result.path}: C = {result.C:g}, {result.protocol} protocol, {result.n_train} training / "
        f"{result.n_test} test images, {result.seconds:.1f} s")


@main.command("eval")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("features", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.option("--report", type=click.Path(dir_okay=False), help="Write the scores as JSON.")
@click.option("--show", default=10, show_default=True, type=click.IntRange(min=0),
              help="Classes below 100 % to list, worst first.")
@click.option("--keep-training-rows", is_flag=True,
              help="Also score rows whose paths are the model's training images (left out by default).")
@click.option("--plots", type=PLOTS_FOLDER,
              help="Draw PNG pictures into this folder: confusion matrix, per-class accuracy and the most "
                   "confident mistakes; multi-label: precision-recall curves, AP per class, false positives.")
@click.option("--overwrite", is_flag=True, help="Replace --report and the pictures of --plots if they exist.")
def eval_(model, features, report, show, keep_training_rows, plots, overwrite):
    """Score MODEL on FEATURES: accuracy and per-class accuracy, or VOC 11-point AP and mAP.
    The report's `predictions` hold every test image's path, true and predicted classes and score."""
    from ..classify.evaluation import evaluate
    from ..report import evaluation_text

    result = evaluate(model, features, report, plots, keep_training_rows=keep_training_rows, overwrite=overwrite)
    click.echo(cli_wording(evaluation_text(result, worst=show)))


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("images", metavar="INPUT", type=click.Path(exists=True, path_type=str))
@click.option("--output", "-o", type=PREDICTION_FILE,
              help="Write the rows to PRED.csv or PRED.jsonl as they come [default: a table on stdout].")
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(min=1),
              help="Best classes per row, with their scores (at most the model's classes).")
@click.option("--threshold", type=FINITE,
              help="Margin a class must exceed: multi-label, every class above it is predicted [default: 0]; "
                   "single-label, the best class or none [default: always the best].")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Local copy of the model's backbone weights (its checksum must match the model's).")
@runtime_options
@click.option("--strict", is_flag=True, help="Fail on the first file that is not a readable image.")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary (skipped files are still listed).")
def predict(model, images, output, batch_size, workers, device, decode_timeout, quiet, **options):
    """Label the photos of INPUT (a folder, one image, or a feature file made with MODEL's settings)
    with MODEL, extracted with MODEL's settings: one row per image (path, predicted class, score =
    uncalibrated SVM margin) to --output or, as a table, to stdout; progress and messages to stderr."""
    from tqdm import tqdm

    from ..classify.prediction import predict as predict_api
    from ..features.runtime import Runtime
    from ..report import PredictionTable

    def show(text: str) -> None:  # below the progress bar; flushed, so a reader that has gone stops the run
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()

    table = None if output else PredictionTable(show)
    runtime = Runtime(device=device, batch_size=batch_size, workers=workers, decode_timeout=decode_timeout)
    result = predict_api(model, images, output, runtime=runtime, quiet=quiet, on_rows=table.write if table else None,
                         **options)
    for path, reason in result.skipped:
        say(f"skipped {path}: {reason}")
    if not quiet:
        say(f"{output or 'stdout'}: {len(result)} images in {result.seconds:.1f} s "
            f"({len(result) / max(result.seconds, 1e-9):.1f} images/s); {len(result.skipped)} skipped")
