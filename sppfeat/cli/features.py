"""The commands that make and show feature files: extract, regions, merge, backbones, info."""

from __future__ import annotations

import click

from ..config import COMBINES, REGION_DEFAULTS, ExtractionConfig
from ..data.boxes import BOX_FORMATS
from ..data.discover import DATASETS, VOC_SPLITS
from . import main, say
from .options import extraction_options, run_command, scale_defaults, skip_summary, steady_summary


@main.command()
@click.argument("images", type=click.Path(exists=True, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@extraction_options(ExtractionConfig(), "Shorter side in pixels (0 = native size); several, e.g. 224,288, give "
                                        "one vector pooled over all scales bin by bin (each file is decoded once). "
                                        "Aspect ratio is always kept. [default: "
                                        f"{scale_defaults()}]")
@click.option("--dataset", default="auto", show_default=True, type=click.Choice(DATASETS),
              help="How to read IMAGES (auto: a VOC devkit, Caltech 101 or class folders).")
@click.option("--split", type=click.Choice(VOC_SPLITS), help="VOC 2007 image set [default: trainval].")
def extract(images, output, dataset, split, **options):
    """Write one SPP vector per image under IMAGES (a folder, or one image file) to the HDF5 file OUTPUT.

    Under torchrun (WORLD_SIZE > 1) every rank extracts one shard and rank 0 writes OUTPUT as a
    virtual file over the shard files."""
    from ..features.pipeline import extract as extract_api

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
    from ..features.box_pipeline import regions as regions_api

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
    """Join the shard files of one extraction, proposals or detect run (--shard i/n) into OUTPUT, in
    single-run row order."""
    from ..detection.proposal_file import is_proposal_file, merge_proposals
    from ..storage.hdf5 import check_output
    from ..storage.merge import JOINED, merge, merge_detections

    if output.lower().endswith(JOINED):
        merge_detections(list(shards), output, overwrite=overwrite)
        say(f"{output}: {len(shards)} detection shards joined")
        return
    if is_proposal_file(shards[0]):
        check_output(output, overwrite)
        merge_proposals(list(shards), output)
        say(f"{output}: {len(shards)} proposal shards joined")
        return
    merge(list(shards), output, consolidate=consolidate, overwrite=overwrite)
    say(f"{output}: {len(shards)} shards {'copied' if consolidate else 'linked (virtual datasets)'}")


@main.command()
def backbones():
    """List the backbones, their output and normalisation, and whether weights are available offline."""
    from ..report import backbones_table

    click.echo(backbones_table())


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=str))
def info(path):
    """Summarise a feature or model file."""
    from ..report import describe_file

    click.echo(describe_file(path))
