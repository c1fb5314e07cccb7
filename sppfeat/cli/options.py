"""The command line's option types (strings parsed once into typed values; ValueError -> a usage
error naming the option), the option sets commands share, and the summary lines they print."""

from __future__ import annotations

import math

import click

from ..backbones import BACKBONES
from ..config import (COMPUTES, DATASET_SETTINGS, DTYPES, GENERAL_SCALES, MAX_BATCH, MAX_SIDE, POOLS,
                      ExtractionConfig, as_levels, as_scales)
from ..data.decode import DEFAULT_DECODE_TIMEOUT, MAX_DECODE_TIMEOUT
from ..shards import check_shard
from ..storage.feature_file import reasons_text
from ..storage.prediction_file import prediction_format
from . import say


class ParsedOption(click.ParamType):
    """A string option parsed by `parse` (ValueError on bad input -> a usage error naming the option);
    `separator` joins the items of a tuple value the way the option is written (2,1; 1/3)."""

    def __init__(self, name: str, parse, separator: str = ","):
        self.name = name
        self.parse = parse
        self.separator = separator  # between the items of a tuple value, as the option is written

    def convert(self, value, param, ctx):
        if not isinstance(value, str):  # a default already parsed
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Number(click.FloatRange):
    """click.FloatRange that also refuses nan and infinity (which its range check lets through)."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value} is not a finite number", param, ctx)
        return value


def int_list(check):
    """'6,3,2,1' -> check((6, 3, 2, 1))."""

    def parse(text: str):
        try:
            values = tuple(int(p) for p in text.split(","))
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
    if not 0 < c < math.inf:
        raise ValueError(f"C must be a positive number, got {text}")
    return c


def parse_context(text: str) -> float:
    """'0' (none) or a factor >= 1 (train-detector --context)."""
    from ..detection.settings import check_context

    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    check_context(factor)
    return factor


def parse_prediction_file(text: str) -> str:
    prediction_format(text)
    return text


def parse_plots_folder(text: str) -> str:
    """A folder, or one to make in an existing folder, and matplotlib installed: checked where
    parsed. Whether its pictures may be replaced is evaluate's check (eval --overwrite)."""
    from ..classify.plots import check_plots_folder

    return str(check_plots_folder(text, overwrite=True))


LEVELS = ParsedOption("levels", int_list(as_levels))
SCALES = ParsedOption("scales", int_list(as_scales))
SHARD = ParsedOption("i/n", parse_shard, separator="/")
SIZES = ParsedOption("sizes", int_list(lambda sizes: sizes))  # checked by the settings they go into
PENALTY = ParsedOption("C", parse_penalty)
CONTEXT = ParsedOption("factor", parse_context)
FINITE = Number()
POSITIVE = Number(0, min_open=True)
PREDICTION_FILE = ParsedOption("file", parse_prediction_file)
PLOTS_FOLDER = ParsedOption("folder", parse_plots_folder)


def apply(options: list, fn):
    """`fn` decorated with click `options`, listed in the order --help shows them."""
    for option in reversed(options):
        fn = option(fn)
    return fn


def runtime_options(fn):
    """The options of a Runtime (how a run uses the machine), shared by extract and predict."""
    return apply([
        click.option("--batch-size", default=None, type=click.IntRange(1, MAX_BATCH),
                     help="Images per batch [default: 16 on the CPU; 256 on a GPU, gathered by shape]."),
        click.option("--workers", default=None, type=click.IntRange(min=0),
                     help="Worker processes: on the CPU each decodes and runs the network on one core [default: "
                          "cores]; with a GPU they only decode [default: cores - 1]. 0: all in this process."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--decode-timeout", default=DEFAULT_DECODE_TIMEOUT, show_default=True,
                     type=Number(0, MAX_DECODE_TIMEOUT), help="Seconds per image before it is skipped (0 = no limit)."),
    ], fn)


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
        click.option("--scale", "scales", type=SCALES, help=scale_help, show_default=defaults.scales is not None,
                     default=None if defaults.scales is None else ",".join(map(str, defaults.scales))),
        click.option("--exact/--bucketed", "shapes", default=None,
                     help="exact: every image at its own resized size (a vector independent of its batch); "
                          "bucketed: each side also rounded to a multiple of the network's stride (aspect change "
                          "<= half a stride), so equal shapes run as one batch [default: exact on the CPU, "
                          "bucketed on a GPU]."),
        click.option("--compute", default="auto", show_default=True, type=click.Choice(COMPUTES),
                     help="Numeric type of the network (auto: float32 on the CPU, bfloat16 autocast on a GPU); "
                          "vectors are float32 before --dtype."),
        click.option("--max-side", default=defaults.max_side, show_default=True, type=click.IntRange(1, MAX_SIDE),
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
    return lambda fn: apply(options, fn)


def run_command(run, images, output, options: dict, **settings):
    """Parse the shared options into typed settings and call `run(images, output, config, runtime,
    shard=..., resume=..., overwrite=..., strict=..., quiet=...)`, once, or under torchrun
    (WORLD_SIZE > 1) once per rank, rank 0 merging the shards. `settings`: further config fields."""
    from ..distributed import extract_distributed, launch_info
    from ..features.runtime import Runtime

    o = options
    shapes = "auto" if o["shapes"] is None else "exact" if o["shapes"] else "bucketed"
    config = ExtractionConfig(backbone=o["backbone"], weights=o["weights"], levels=o["levels"], pool=o["pool"],
                              scales=o["scales"], max_side=o["max_side"], dtype=o["dtype"], shapes=shapes,
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
    reasons = reasons_text(result.skip_reasons)
    return f"{result.n_skipped} skipped" + (f" ({reasons})" if reasons else "")
