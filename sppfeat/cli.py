"""Command-line interface: strings are parsed here, once (click parameter types), into the typed
settings the Python API takes; each command is a thin layer over one API call. Every message goes
to stderr as one line starting 'sppfeat: ' (data, such as tables, goes to stdout).

Over 300 lines on purpose: every command's options and help live here, together, and nowhere else."""

from __future__ import annotations

import logging
import re
import signal
import sys

import click

from .backbones import BACKBONES, WeightsUnavailable
from .classify.protocol import (DEFAULT_POWER, DEFAULT_TEST_FRACTION, DEFAULT_TEST_PER_CLASS,
                                DEFAULT_TRAIN_PER_CLASS, PROTOCOLS)
from .config import (COMBINES, COMPUTES, DATASET_SETTINGS, DTYPES, GENERAL_SCALES, POOLS, REGION_DEFAULTS,
                     ExtractionConfig, as_levels, as_scales)
from .data.boxes import BOX_FORMATS
from .data.decode import DEFAULT_DECODE_TIMEOUT
from .data.discover import DATASETS, VOC_SPLITS
from .features.interrupts import DiskFull, ExtractionInterrupted, WorkerFailed
from .shards import check_shard
from .storage.prediction_file import prediction_format

PREFIX = "sppfeat: "


def say(message: str) -> None:
    """One line on stderr, with the tool's prefix."""
    click.echo(PREFIX + message, err=True)


class Failure(click.ClickException):
    """The end of a command: one line on stderr and an exit code (2: bad input, missing weights,
    mismatched files; 1: a worker died; 128 + signal: interrupted)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def cli_wording(message: str) -> str:
    """An API message with the command line's names: overwrite=True -> --overwrite,
    shard=(1, 3) -> --shard 1/3, protocol='all' -> --protocol all, workers=N -> --workers N."""
    flags = {p.name: max(p.opts, key=len) for c in main.commands.values() for p in c.params
             if isinstance(p, click.Option)}

    def flag(match: re.Match) -> str:
        option, value = flags[match.group(1)], match.group(2) or ""
        if value in ("", "True"):
            return option
        if value.startswith("("):
            return f"{option} " + "/".join(v.strip() for v in value[1:-1].split(","))
        return f"{option} {value.strip(chr(39))}"

    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    return re.sub(rf"\b({names})=(True\b|'[^']*'|\([^)]*\)|N\b|FILE\b)?(?![\w'(])", flag, message)


class Commands(click.Group):
    """The command group: whatever stops a command (an error, Ctrl-C, a dead worker) ends as one
    line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, WeightsUnavailable, FileNotFoundError, PermissionError) as exc:
            raise Failure(str(exc)) from None
        except ExtractionInterrupted as exc:
            raise Failure(str(exc), 128 + exc.signum) from None
        except (WorkerFailed, DiskFull) as exc:
            raise Failure(str(exc), 1) from None
        except OSError as exc:  # the machine, not the input: one line, exit 1
            raise Failure(" ".join(str(exc).split()), 1) from None
        except KeyboardInterrupt:
            raise Failure("interrupted", 130) from None

    def main(self, args=None, prog_name=None, standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the last line
            message = exc.format_message()
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                message += f" (see: {exc.ctx.command_path} --help)"
            say(cli_wording(message))
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            say("interrupted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


class ParsedOption(click.ParamType):
    """A string option parsed by `parse` (ValueError on bad input -> a usage error naming the option)."""

    def __init__(self, name: str, parse):
        self.name = name
        self.parse = parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):  # a default already parsed
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def int_list(check):
    """'6,3,2,1' -> check((6, 3, 2, 1))."""

    def parse(text: str):
        try:
            values = tuple(int(p) for p in text.split(",") if p.strip())
        except ValueError:
            raise ValueError(f"expected comma-separated integers, got {text!r}") from None
        return check(values)

    return parse


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n)."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"expected i/n (e.g. 0/4), got {text!r}") from None
    return check_shard((index, count))


def parse_penalty(text: str) -> float | str:
    """'auto' or a positive number."""
    if text == "auto":
        return text
    try:
        c = float(text)
    except ValueError:
        raise ValueError(f"expected a positive number or 'auto', got {text!r}") from None
    if not c > 0:
        raise ValueError(f"C must be positive, got {text}")
    return c


def parse_prediction_file(text: str) -> str:
    prediction_format(text)
    return text


def parse_plots_folder(text: str) -> str:
    from .classify.plots import check_plots_folder

    return str(check_plots_folder(text))


LEVELS = ParsedOption("levels", int_list(as_levels))
SCALES = ParsedOption("scales", int_list(as_scales))
SHARD = ParsedOption("i/n", parse_shard)
PENALTY = ParsedOption("C", parse_penalty)
PREDICTION_FILE = ParsedOption("file", parse_prediction_file)
PLOTS_FOLDER = ParsedOption("folder", parse_plots_folder)


def runtime_options(fn):
    """The options of a Runtime (how a run uses the machine), shared by extract and predict."""
    options = [
        click.option("--batch-size", default=None, type=click.IntRange(min=1),
                     help="Images per batch [default: 16 on the CPU; 256 on a GPU, gathered by shape]."),
        click.option("--workers", default=None, type=click.IntRange(min=0),
                     help="Worker processes: on the CPU each decodes and runs the network on one core [default: "
                          "cores]; with a GPU they only decode [default: cores - 1]. 0: all in this process."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--decode-timeout", default=DEFAULT_DECODE_TIMEOUT, show_default=True,
                     type=click.FloatRange(min=0), help="Seconds per image before it is skipped (0 = no limit)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sppfeat")
def main():
    """Fixed-length SPP descriptors from images of any size, and linear SVMs on them."""
    logging.basicConfig(format=PREFIX + "%(message)s", level=logging.INFO, stream=sys.stderr)


def extraction_options(defaults: ExtractionConfig, scale_help: str):
    """The options extract and regions share (the settings of a vector and of the run), with the
    command's defaults; the command gets them as keyword arguments (see run_command)."""
    options = [
        click.option("--backbone", default=defaults.backbone, show_default=True, type=click.Choice(sorted(BACKBONES)),
                     help="Network (see: sppfeat backbones)."),
        click.option("--weights", type=click.Path(dir_okay=False),
                     help="Local state dict instead of the registry's weights."),
        click.option("--levels", default=",".join(map(str, defaults.levels)), show_default=True, type=LEVELS,
                     help="Pyramid levels n (n×n bins each)."),
        click.option("--pool", default=defaults.pool, show_default=True, type=click.Choice(POOLS),
                     help="Pooling in each bin."),
        click.option("--scale", default=None if defaults.scales is None else ",".join(map(str, defaults.scales)),
                     show_default=defaults.scales is not None, type=SCALES, help=scale_help),
        click.option("--exact/--bucketed", "exact", default=None,
                     help="exact: every image at its own resized size (a vector independent of its batch); "
                          "bucketed: each side also rounded to a multiple of the network's stride (aspect change "
                          "<= half a stride), so equal shapes run as one batch [default: exact on the CPU, "
                          "bucketed on a GPU]."),
        click.option("--compute", default="auto", show_default=True, type=click.Choice(COMPUTES),
                     help="Numeric type of the network (auto: float32 on the CPU, bfloat16 autocast on a GPU); "
                          "vectors are float32 before --dtype."),
        click.option("--max-side", default=defaults.max_side, show_default=True, type=click.IntRange(min=1),
                     help="Cap on the longer side in pixels."),
        runtime_options,
        click.option("--dtype", default=defaults.dtype, show_default=True, type=click.Choice(DTYPES),
                     help="Stored vector type (float16: half the size)."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run (same arguments)."),
        click.option("--shard", type=SHARD, help="i/n: only the i-th of n parts of the image list, into "
                                                 "OUT.shard-0000i-of-0000n.h5 next to OUT.h5 (join them with "
                                                 "sppfeat merge)."),
        click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists."),
        click.option("--strict", is_flag=True, help="Fail on the first file that is not a readable image."),
        click.option("--checkpoint-every", type=click.IntRange(min=1),
                     help="Images per saved progress segment [default: about 16 MiB of vectors, at most 512]."),
        click.option("--quiet", "-q", is_flag=True, help="No progress or summary."),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def run_command(run, images, output, options: dict, **settings):
    """Parse the shared options into typed settings and call `run(images, output, config, runtime,
    shard=..., resume=..., overwrite=..., strict=..., quiet=...)`, once, or under torchrun
    (WORLD_SIZE > 1) once per rank, rank 0 merging the shards. `settings`: further config fields."""
    from .distributed import extract_distributed, launch_info
    from .features.runtime import Runtime

    o = options
    shapes = "auto" if o["exact"] is None else "exact" if o["exact"] else "bucketed"
    config = ExtractionConfig(backbone=o["backbone"], weights=o["weights"], levels=o["levels"], pool=o["pool"],
                              scales=o["scale"], max_side=o["max_side"], dtype=o["dtype"], shapes=shapes,
                              compute=o["compute"], **settings)
    runtime = Runtime(device=o["device"], batch_size=o["batch_size"], workers=o["workers"],
                      decode_timeout=o["decode_timeout"], checkpoint_every=o["checkpoint_every"])
    flags = {name: o[name] for name in ("resume", "overwrite", "strict", "quiet")}
    launch = launch_info()
    if launch is None:
        return run(images, output, config, runtime, shard=o["shard"], **flags)
    if o["shard"]:
        raise click.BadParameter("--shard cannot be combined with torchrun (the ranks are the shards)")
    result = extract_distributed(images, output, launch, config, runtime, run=run, **flags)
    if launch.rank == 0 and not o["quiet"]:
        say(f"{output}: merged {launch.world_size} shards")
    return result


def scale_defaults() -> str:
    """'224; voc2007: 320' — the general scale, then each data set's measured one."""
    measured = "; ".join(f"{name}: {','.join(map(str, values['scales']))}"
                         for name, values in DATASET_SETTINGS.items() if "scales" in values)
    return ",".join(map(str, GENERAL_SCALES)) + (f"; --dataset {measured}" if measured else "")


def steady_summary(result) -> str:
    if result.steady_images_per_second != result.steady_images_per_second:  # NaN: one batch
        return ""
    return f"; {result.steady_images_per_second:.1f} images/s after {result.startup_seconds:.1f} s of start-up"


def skip_summary(result) -> str:
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result.skip_reasons.items()))
    return f"{result.n_skipped} skipped" + (f" ({reasons})" if reasons else "")


@main.command()
@click.argument("images", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@extraction_options(ExtractionConfig(), "Shorter side in pixels (0 = native size); several, e.g. 224,288, give "
                                        "one vector pooled over all scales bin by bin (each file is decoded once). "
                                        "Aspect ratio is always kept. [default: "
                                        f"{scale_defaults()}]")
@click.option("--dataset", default="auto", show_default=True, type=click.Choice(DATASETS),
              help="How to read IMAGES (auto: a VOC devkit, Caltech 101 or class folders).")
@click.option("--split", type=click.Choice(VOC_SPLITS), help="VOC 2007 image set [default: trainval].")
def extract(images, output, dataset, split, **options):
    """Write one SPP vector per image under IMAGES to the HDF5 file OUTPUT.

    Under torchrun (WORLD_SIZE > 1) every rank extracts one shard and rank 0 writes OUTPUT as a
    virtual file over the shard files."""
    from .features.pipeline import extract as extract_api

    result = run_command(extract_api, images, output, options, dataset=dataset, split=split)
    if not options["quiet"]:
        say(f"{result.path}: {result.n_images} images × {result.dim} dims in {result.seconds:.1f} s "
            f"({result.images_per_second:.1f} images/s{steady_summary(result)}); {skip_summary(result)}")


@main.command()
@click.argument("images", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.argument("boxes", type=click.Path(exists=True, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@extraction_options(REGION_DEFAULTS, "Shorter side in pixels (0 = native size). Several, e.g. 480,576,688,864,1200 "
                                     "(the paper's five): each box is pooled at the one scale where its area is "
                                     "closest to 224 × 224 (stored in scale_used), or with --combine max at every "
                                     "scale bin by bin, as extract does.")
@click.option("--box-format", default="auto", show_default=True, type=click.Choice(("auto", *BOX_FORMATS)),
              help="BOXES: COCO JSON, a folder of VOC XML files or CSV path,x1,y1,x2,y2[,label]; auto: by content.")
@click.option("--combine", default="best", show_default=True, type=click.Choice(COMBINES),
              help="With several scales: best = one scale per box (the paper's); max = every scale, bin by bin.")
def regions(images, boxes, output, box_format, combine, **options):
    """Write one SPP vector per box of BOXES to the HDF5 file OUTPUT: each image under IMAGES is run
    through the network once per scale, and every box is pooled from its conv map.

    Boxes are pixels of the image as stored on disk, before EXIF orientation. Same options,
    resume, shards and torchrun as extract."""
    from .features.box_pipeline import regions as regions_api

    def run(images, output, config, runtime, **flags):
        return regions_api(images, boxes, output, config, runtime, box_format=box_format, **flags)

    result = run_command(run, images, output, options, combine=combine)
    if not options["quiet"]:
        say(f"{result.path}: {result.n_boxes} boxes × {result.dim} dims in {result.seconds:.1f} s; "
            f"{skip_summary(result)}")


@main.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@click.option("--consolidate", is_flag=True, help="Copy the rows into one ordinary file instead of a virtual one.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def merge_(shards, output, consolidate, overwrite):
    """Join the shard files of one extraction (--shard i/n) into OUTPUT, in single-run row order."""
    from .storage.merge import merge

    merge(list(shards), output, consolidate=consolidate, overwrite=overwrite)
    say(f"{output}: {len(shards)} shards {'copied' if consolidate else 'linked (virtual datasets)'}")


@main.command()
def backbones():
    """List the backbones, their output and normalisation, and whether weights are available offline."""
    from .report import backbones_table

    click.echo(backbones_table())


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=str))
def info(path):
    """Summarise a feature or model file."""
    from .report import describe_file

    click.echo(describe_file(path))


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
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help=f"stratified: fraction of each class held out [default: {DEFAULT_TEST_FRACTION}].")
@click.option("--power", default=DEFAULT_POWER, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Signed power normalisation before L2 (0.5 = signed square root).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and the folds.")
@click.option("--folds", default=3, show_default=True, type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--overwrite", is_flag=True, help="Replace MODEL if it exists.")
def train_svm(features, model, C, protocol, train_per_class, test_per_class, test_fraction, power, seed, folds,
              overwrite):
    """Train linear SVMs on FEATURES (an extract output) and write MODEL."""
    from .classify.training import train_svm as train_api

    result = train_api(features, model, C=C, protocol=protocol, train_per_class=train_per_class,
                       test_per_class=test_per_class, test_fraction=test_fraction, power=power, seed=seed,
                       folds=folds, overwrite=overwrite)
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
def eval_(model, features, report, show, keep_training_rows, plots):
    """Score MODEL on FEATURES: accuracy and per-class accuracy, or VOC 11-point AP and mAP.
    The report's `predictions` hold every test image's path, true and predicted classes and score."""
    from .classify.evaluation import evaluate
    from .report import evaluation_text

    result = evaluate(model, features, report, plots, keep_training_rows=keep_training_rows)
    click.echo(cli_wording(evaluation_text(result, worst=show)))


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("images", metavar="INPUT", type=click.Path(exists=True, path_type=str))
@click.option("--output", "-o", type=PREDICTION_FILE,
              help="Write the rows to PRED.csv or PRED.jsonl as they come [default: a table on stdout].")
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(min=1),
              help="Best classes per row, with their scores (at most the model's classes).")
@click.option("--threshold", type=float,
              help="Margin a class must exceed: multi-label, every class above it is predicted [default: 0]; "
                   "single-label, the best class or none [default: always the best].")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Local copy of the model's backbone weights (its checksum must match the model's).")
@runtime_options
@click.option("--strict", is_flag=True, help="Fail on the first file that is not a readable image.")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary (skipped files are still listed).")
def predict(model, images, output, top_k, threshold, weights, batch_size, workers, device, decode_timeout, strict,
            overwrite, quiet):
    """Label the photos of INPUT (a folder, one image, or a feature file made with MODEL's settings)
    with MODEL, extracted with MODEL's settings: one row per image (path, predicted class, score =
    uncalibrated SVM margin) to --output or, as a table, to stdout; progress and messages to stderr."""
    from tqdm import tqdm

    from .classify.prediction import predict as predict_api
    from .features.runtime import Runtime
    from .report import PredictionTable

    table = None if output else PredictionTable(lambda text: tqdm.write(text, file=sys.stdout))  # below the bar
    runtime = Runtime(device=device, batch_size=batch_size, workers=workers, decode_timeout=decode_timeout)
    result = predict_api(model, images, output, top_k=top_k, threshold=threshold, runtime=runtime, weights=weights,
                         strict=strict, overwrite=overwrite, quiet=quiet, on_rows=table.write if table else None)
    for path, reason in result.skipped:
        say(f"skipped {path}: {reason}")
    if not quiet:
        say(f"{output or 'stdout'}: {len(result)} images in {result.seconds:.1f} s "
            f"({len(result) / max(result.seconds, 1e-9):.1f} images/s); {len(result.skipped)} skipped")
