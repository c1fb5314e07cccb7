"""Command-line interface: strings are parsed here, once (click parameter types), into the typed
settings the Python API takes; each command is a thin layer over one API call."""

from __future__ import annotations

import functools
import logging
import sys

import click

from .backbones import BACKBONES, WeightsUnavailable
from .classify.training import DEFAULT_POWER, PROTOCOLS
from .config import COMBINES, DTYPES, REGION_DEFAULTS, ExtractionConfig, as_levels, as_scales
from .data.boxes import BOX_FORMATS
from .data.decode import DEFAULT_DECODE_TIMEOUT
from .data.discover import DATASETS, VOC_SPLITS
from .features.interrupts import ExtractionInterrupted, WorkerFailed
from .features.runtime import Runtime
from .pyramid import POOLS
from .shards import check_shard


class UserError(click.ClickException):
    """A one-line error, exit code 2 (bad input, missing weights, mismatched files)."""

    exit_code = 2


def user_errors(fn):
    """Turn the API's ValueError / WeightsUnavailable / OSError into one-line errors with exit 2; an
    interrupted run or a dead worker process also ends with one line (exit 128 + signal, or 1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, WeightsUnavailable, FileNotFoundError, PermissionError) as exc:
            raise UserError(str(exc)) from None
        except ExtractionInterrupted as exc:
            click.echo(f"sppfeat: {exc}", err=True)
            sys.exit(128 + exc.signum)
        except WorkerFailed as exc:
            click.echo(f"sppfeat: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("sppfeat: interrupted", err=True)
            sys.exit(130)

    return wrapper


class ParsedOption(click.ParamType):
    """A string option parsed by `parse` (ValueError on bad input). A bad value is one line naming
    the option, exit code 2."""

    def __init__(self, name: str, parse):
        self.name = name
        self.parse = parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):  # a default already parsed
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            option = param.opts[0] if param is not None else self.name
            raise UserError(f"Invalid value for '{option}': {exc}") from None


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


LEVELS = ParsedOption("levels", int_list(as_levels))
SCALES = ParsedOption("scales", int_list(as_scales))
SHARD = ParsedOption("i/n", parse_shard)
PENALTY = ParsedOption("C", parse_penalty)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sppfeat")
def main():
    """Fixed-length SPP descriptors from images of any size, and linear SVMs on them."""
    logging.basicConfig(format="sppfeat: %(message)s", level=logging.INFO, stream=sys.stderr)


def extraction_options(defaults: ExtractionConfig, scale_help: str):
    """The options extract and regions share (the settings of a vector and of the run), with the
    command's defaults; the command gets them as keyword arguments (see run_command)."""
    options = [
        click.option("--backbone", default=defaults.backbone, show_default=True, type=click.Choice(sorted(BACKBONES))),
        click.option("--weights", type=click.Path(dir_okay=False),
                     help="Local state dict instead of the registry's weights."),
        click.option("--levels", default=",".join(map(str, defaults.levels)), show_default=True, type=LEVELS,
                     help="Pyramid levels n (n×n bins each)."),
        click.option("--pool", default=defaults.pool, show_default=True, type=click.Choice(POOLS)),
        click.option("--scale", default=",".join(map(str, defaults.scales)), show_default=True, type=SCALES,
                     help=scale_help),
        click.option("--max-side", default=defaults.max_side, show_default=True, type=click.IntRange(min=1),
                     help="Cap on the longer side."),
        click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1)),
        click.option("--workers", default=None, type=click.IntRange(min=0),
                     help="Worker processes: on the CPU each decodes and runs the network on one core [default: "
                          "cores]; with a GPU they only decode [default: cores - 1]. 0: all in this process."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--dtype", default=defaults.dtype, show_default=True, type=click.Choice(DTYPES)),
        click.option("--resume", is_flag=True, help="Continue an interrupted run (same arguments)."),
        click.option("--shard", type=SHARD, help="i/n: only the i-th of n parts of the image list, into "
                                                 "OUT.shard-0000i-of-0000n.h5 next to OUT.h5 (join them with "
                                                 "sppfeat merge)."),
        click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists."),
        click.option("--strict", is_flag=True, help="Fail on the first file that is not a readable image."),
        click.option("--decode-timeout", default=DEFAULT_DECODE_TIMEOUT, show_default=True,
                     type=click.FloatRange(min=0), help="Seconds per image before it is skipped (0 = no limit)."),
        click.option("--checkpoint-every", type=click.IntRange(min=1),
                     help="Images per saved progress segment [default: about 16 MiB of vectors, at most 512]."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary."),
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

    o = options
    config = ExtractionConfig(backbone=o["backbone"], weights=o["weights"], levels=o["levels"], pool=o["pool"],
                              scales=o["scale"], max_side=o["max_side"], dtype=o["dtype"], **settings)
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
        click.echo(f"{output}: merged {launch.world_size} shards", err=True)
    return result


def skip_summary(result) -> str:
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result.skip_reasons.items()))
    return f"{result.n_skipped} skipped" + (f" ({reasons})" if reasons else "")


@main.command()
@click.argument("images", type=click.Path(file_okay=False, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@extraction_options(ExtractionConfig(), "Shorter side in pixels (0 = native size); several, e.g. 224,288, give "
                                        "one vector pooled over all scales bin by bin (regions instead pools each box at "
                                        "one scale). Aspect ratio is always kept.")
@click.option("--dataset", default="auto", show_default=True, type=click.Choice(DATASETS))
@click.option("--split", type=click.Choice(VOC_SPLITS), help="VOC 2007 image set [default: trainval].")
@user_errors
def extract(images, output, dataset, split, **options):
    """Write one SPP vector per image under IMAGES to the HDF5 file OUTPUT.

    Under torchrun (WORLD_SIZE > 1) every rank extracts one shard and rank 0 writes OUTPUT as a
    virtual file over the shard files."""
    from .features.pipeline import extract as extract_api

    result = run_command(extract_api, images, output, options, dataset=dataset, split=split)
    if not options["quiet"]:
        click.echo(f"{result.path}: {result.n_images} images × {result.dim} dims in {result.seconds:.1f} s "
                   f"({result.images_per_second:.1f} images/s); {skip_summary(result)}", err=True)


@main.command()
@click.argument("images", type=click.Path(file_okay=False, path_type=str))
@click.argument("boxes", type=click.Path(path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@extraction_options(REGION_DEFAULTS, "Shorter side in pixels (0 = native size). Several, e.g. 480,576,688,864,1200 "
                                     "(the paper's five): each box is pooled at the one scale where its area is "
                                     "closest to 224 × 224 (stored in scale_used), or with --combine max at every "
                                     "scale bin by bin, as extract does.")
@click.option("--box-format", default="auto", show_default=True, type=click.Choice(("auto", *BOX_FORMATS)),
              help="BOXES: COCO JSON, a folder of VOC XML files or CSV path,x1,y1,x2,y2[,label]; auto: by content.")
@click.option("--combine", default="best", show_default=True, type=click.Choice(COMBINES),
              help="With several scales: best = one scale per box (the paper's); max = every scale, bin by bin.")
@user_errors
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
        click.echo(f"{result.path}: {result.n_boxes} boxes × {result.dim} dims in {result.seconds:.1f} s; "
                   f"{skip_summary(result)}", err=True)


@main.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@click.option("--consolidate", is_flag=True, help="Copy the rows into one ordinary file instead of a virtual one.")
@click.option("--overwrite", is_flag=True)
@user_errors
def merge_(shards, output, consolidate, overwrite):
    """Join the shard files of one extraction (--shard i/n) into OUTPUT, in single-run row order."""
    from .storage.merge import merge

    merge(list(shards), output, consolidate=consolidate, overwrite=overwrite)
    click.echo(f"{output}: {len(shards)} shards {'copied' if consolidate else 'linked (virtual datasets)'}", err=True)


@main.command()
def backbones():
    """List the backbones, their output and normalisation, and whether weights are available offline."""
    from .report import backbones_table

    click.echo(backbones_table())


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@user_errors
def info(path):
    """Summarise a feature or model file."""
    from .report import describe_file

    click.echo(describe_file(path))


@main.command("train-svm")
@click.argument("features", type=click.Path(dir_okay=False, path_type=str))
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--C", "C", default="auto", show_default=True, type=PENALTY,
              help="SVM penalty, or 'auto' (cross-validated).")
@click.option("--protocol", default="auto", show_default=True, type=click.Choice(PROTOCOLS),
              help="per-class (Caltech 101), stratified, all (multi-label / separate test file).")
@click.option("--train-per-class", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--test-per-class", default=50, show_default=True, type=click.IntRange(min=0),
              help="0 = all remaining images.")
@click.option("--test-fraction", default=0.25, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--power", default=DEFAULT_POWER, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Signed power normalisation before L2 (0.5 = signed square root).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--folds", default=3, show_default=True, type=click.IntRange(min=2))
@click.option("--overwrite", is_flag=True)
@user_errors
def train_svm(features, model, C, protocol, train_per_class, test_per_class, test_fraction, power, seed, folds,
              overwrite):
    """Train linear SVMs on FEATURES (an extract output) and write MODEL."""
    from .classify.training import train_svm as train_api

    result = train_api(features, model, C=C, protocol=protocol, train_per_class=train_per_class,
                       test_per_class=test_per_class, test_fraction=test_fraction, power=power, seed=seed,
                       folds=folds, overwrite=overwrite)
    click.echo(f"{result.path}: C = {result.C:g}, {result.n_train} training / {result.n_test} test images, "
               f"{result.seconds:.1f} s", err=True)


@main.command("eval")
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.argument("features", type=click.Path(dir_okay=False, path_type=str))
@click.option("--report", type=click.Path(dir_okay=False), help="Write the scores as JSON.")
@click.option("--show", default=10, show_default=True, type=click.IntRange(min=0), help="Per-class rows to print.")
@user_errors
def eval_(model, features, report, show):
    """Score MODEL on FEATURES: accuracy and per-class accuracy, or VOC 11-point AP and mAP."""
    from .classify.evaluation import evaluate
    from .report import evaluation_text

    click.echo(evaluation_text(evaluate(model, features, report), worst=show))
