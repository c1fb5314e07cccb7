"""The commands of object detection: proposals, train-detector, detect, eval-detections
(reference: docs/detection.md)."""

from __future__ import annotations

import sys
import time
from functools import partial

import click

from ..backbones import BACKBONES
from ..config import DETECTION_DEFAULTS, MAX_SIDE, POOLS, ExtractionConfig
from ..data.boxes import BOX_FORMATS
from ..detection.metric import METRICS
from ..detection.settings import DEFAULT_HEAD, HeadSettings, TrainingSettings
from . import main, say
from .options import CONTEXT, FINITE, LEVELS, POSITIVE, SHARD, SIZES, apply

SHOW_SKIPPED = 20  # skipped ground-truth files named one per line; the rest counted
PROPOSALS_HELP = "Proposal file (sppfeat proposals) or box file of windows (COCO JSON, VOC XML folder, CSV " \
                 "path,x1,y1,x2,y2[,score]); paths relative to IMAGES [default: selective search here]."


def proposal_options(fn):
    from ..detection.proposals import METHODS, ProposalConfig

    d = ProposalConfig()
    return apply([
        click.option("--method", default=d.method, show_default=True, type=click.Choice(METHODS),
                     help="Selective search mode (quality: more windows, several times slower)."),
        click.option("--max-boxes", default=d.max_boxes, show_default=True, type=click.IntRange(min=1),
                     help="Windows kept per image, best ranked first."),
        click.option("--min-size", default=d.min_size, show_default=True, type=click.IntRange(min=1),
                     help="Windows narrower or shorter than this (pixels) are dropped."),
        click.option("--search-side", "search_side", default=d.max_side, show_default=True,
                     type=click.IntRange(1, MAX_SIDE),
                     help="Larger images are searched at this longer side (pixels) and the windows scaled back."),
    ], fn)


def window_options(fn):
    """The window vectors' settings of train-detector (recorded in the model; detect reuses them)."""
    d = DETECTION_DEFAULTS
    return apply([
        click.option("--backbone", default=d.backbone, show_default=True, type=click.Choice(sorted(BACKBONES)),
                     help="Network (see: sppfeat backbones)."),
        click.option("--weights", type=click.Path(dir_okay=False), help="Local state dict instead of the registry's."),
        click.option("--levels", default=",".join(map(str, d.levels)), show_default=True, type=LEVELS,
                     help="Pyramid levels n (n×n bins each) of every window."),
        click.option("--pool", default=d.pool, show_default=True, type=click.Choice(POOLS), help="Pooling in each bin."),
        click.option("--scale", default=d.scales[0], show_default=True, type=click.IntRange(1, MAX_SIDE),
                     help="Shorter side (pixels) of the one conv pass per image."),
        click.option("--max-side", default=d.max_side, show_default=True, type=click.IntRange(1, MAX_SIDE),
                     help="Cap on the longer side in pixels."),
    ], fn)


@main.command()
@click.argument("images", type=click.Path(exists=True, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@proposal_options
@click.option("--cores", type=click.IntRange(min=1), help="Processes, one image each [default: the usable cores].")
@click.option("--resume", is_flag=True, help="Continue an interrupted run (same arguments).")
@click.option("--shard", type=SHARD, help="i/n: only the i-th of n parts of the image list, into "
                                          "OUT.shard-0000i-of-0000n.h5.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--strict", is_flag=True, help="Fail on the first file that is not a readable image.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary.")
def proposals(images, output, method, max_boxes, min_size, search_side, cores, shard, **flags):
    """Selective-search windows of every image under IMAGES (or of one image) into the HDF5 file
    OUTPUT, in pixels of the image as stored (no EXIF rotation). Under torchrun every rank takes
    one shard and rank 0 joins them."""
    from ..detection.proposal_file import merge_proposals
    from ..detection.proposals import ProposalConfig, finished
    from ..detection.proposals import proposals as proposals_api
    from ..distributed import extract_distributed, launch_info
    from ..features.runtime import Runtime

    config = ProposalConfig(method, max_boxes, min_size, search_side)
    launch = launch_info()
    if launch is None:
        result = proposals_api(images, output, config, cores=cores, shard=shard, **flags)
    elif shard:
        raise click.BadParameter("--shard cannot be combined with torchrun (the ranks are the shards)")
    else:
        def run(images, output, config, runtime, **rank_flags):
            return proposals_api(images, output, config, cores=runtime.cores, **rank_flags)

        start = time.monotonic()
        extract_distributed(images, output, launch, config, Runtime(), run=run, join=merge_proposals, **flags)
        if launch.rank != 0:
            return
        result = finished(output, start)  # the joined file: every rank's images
    for path, reason in result.skipped:
        say(f"skipped {path}: {reason}")
    if not flags["quiet"]:
        say(f"{result.path}: {result.n_boxes} windows of {result.n_images} images in {result.seconds:.1f} s "
            f"({result.n_boxes / max(result.n_images, 1):.0f} per image); {result.n_skipped} skipped")


@main.command("train-detector")
@click.argument("images", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.argument("boxes", type=click.Path(exists=True, path_type=str))
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--proposals", type=click.Path(exists=True, path_type=str), help=PROPOSALS_HELP)
@click.option("--box-format", default="auto", show_default=True, type=click.Choice(("auto", *BOX_FORMATS)),
              help="BOXES: COCO JSON, a folder of VOC XML files, CSV path,x1,y1,x2,y2,label[,difficult] (or "
                   "LabelImg's filename,width,height,class,xmin,ymin,xmax,ymax), or a folder of YOLO labels.")
@window_options
@proposal_options
@click.option("--head/--no-head", default=DEFAULT_HEAD is not None, show_default=True,
              help="Fine-tune a head on the pooled windows (scores: softmax probabilities, comparable across "
                   "classes), or --no-head: one linear SVM per class with hard-negative mining (scores: margins).")
@click.option("--head-epochs", default=HeadSettings.epochs, show_default=True, type=click.IntRange(min=1),
              help="Head: passes over the training images.")
@click.option("--head-lr", default=HeadSettings.lr, show_default=True, type=POSITIVE,
              help="Head: AdamW's learning rate (cosine-decayed to 0).")
@click.option("--head-reduce", default=HeadSettings.reduced, show_default=True, type=click.IntRange(min=1),
              help="Head: channels of the 1×1 convolution on the conv map before pooling.")
@click.option("--head-hidden", default=",".join(map(str, HeadSettings.hidden)), show_default=True, type=SIZES,
              help="Head: sizes of its fully-connected layers.")
@click.option("--seed", default=HeadSettings.seed, show_default=True, type=int,
              help="Seed of the head's weights and of the sampled windows.")
@click.option("--C", "C", default=TrainingSettings.C, show_default=True, type=POSITIVE,
              help="--no-head: SVM penalty.")
@click.option("--rounds", default=TrainingSettings.rounds, show_default=True, type=click.IntRange(min=0),
              help="--no-head: hard-negative mining rounds.")
@click.option("--negative-cache", default=TrainingSettings.negative_cache, show_default=True,
              type=click.IntRange(min=1), help="--no-head: most negatives' vectors kept while mining (the hardest; "
                                               "1 byte per value: 2.0 GB at 110,000 windows of 17,920 values).")
@click.option("--regression/--no-regression", default=TrainingSettings.regression, show_default=True,
              help="--no-head: learn ridge box regressors (the head always learns its box offsets).")
@click.option("--mirror/--no-mirror", default=TrainingSettings.mirror, show_default=True,
              help="--no-head: objects are also positives as seen in the image flipped left-right.")
@click.option("--context", default=TrainingSettings.context, show_default=True, type=CONTEXT,
              help="--no-head: each window's vector followed by that of the window enlarged this many times around "
                   "its centre, e.g. 1.5 (0: none; twice the vector length: twice the negative cache's memory and "
                   "the scoring time).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--cores", type=click.IntRange(min=1), help="CPU cores: torch threads, and without --proposals "
                                                          "selective search processes [default: the usable cores].")
@click.option("--overwrite", is_flag=True, help="Replace MODEL if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary.")
def train_detector(images, boxes, model, proposals, box_format, backbone, weights, levels, pool, scale, max_side,
                   method, max_boxes, min_size, search_side, head, head_epochs, head_lr, head_reduce, head_hidden,
                   seed, C, rounds, negative_cache, regression, mirror, context, device, cores, overwrite, quiet):
    """Train a detector of the classes of BOXES (ground truth; difficult boxes are neither objects
    nor background) on the windows of the images under IMAGES, and write it to MODEL: one linear
    SVM per class (--no-head) or a head fine-tuned on the pooled windows (--head)."""
    from ..detection.proposals import ProposalConfig
    from ..detection.training import train_detector as train_api

    config = ExtractionConfig(backbone=backbone, weights=weights, levels=levels, pool=pool, scales=(scale,),
                              max_side=max_side)
    try:
        head_settings = HeadSettings(reduced=head_reduce, hidden=head_hidden, epochs=head_epochs, lr=head_lr,
                                     seed=seed) if head else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--head-*") from None
    for given, name in ((context, "--context"), (mirror, "--mirror")):
        if head and given:
            raise click.BadParameter("applies to the linear SVMs (--no-head) only", param_hint=name)
    result = train_api(images, boxes, model, proposals=proposals, config=config, box_format=box_format,
                       settings=TrainingSettings(C=C, rounds=rounds, negative_cache=negative_cache,
                                                 regression=regression, mirror=mirror, context=context, seed=seed),
                       head=head_settings,
                       proposal_config=ProposalConfig(method, max_boxes, min_size, search_side),
                       device=device, cores=cores, overwrite=overwrite, quiet=quiet)
    for path, reason in result.skipped[:20]:
        say(f"skipped {path}: {reason}")
    if not quiet:
        trained = (f"head trained {len(result.stats['epochs'])} epochs" if head else
                   f"{len(result.stats['mining']) - 1} mining rounds")
        say(f"{result.path}: {len(result.classes)} classes, {sum(result.n_positives)} objects in "
            f"{result.n_images} images, {trained}, {result.seconds:.1f} s; {len(result.skipped)} skipped")


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("images", metavar="INPUT", type=click.Path(exists=True, path_type=str))
@click.option("--proposals", type=click.Path(exists=True, path_type=str), help=PROPOSALS_HELP)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=str),
              help="DETS.csv or DETS.jsonl (path,x1,y1,x2,y2,label,score), or DETS.json (COCO results: image_id, "
                   "category_id, bbox as x,y,w,h, score) [default: a table on stdout].")
@click.option("--coco-ids", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="COCO ground truth whose images[].file_name and categories[].name give a .json output's ids "
                   "[default: images 1..N in sorted path order, classes 1..K in the model's order].")
@click.option("--threshold", type=FINITE, help="Keep only scores above this (a head's probabilities or SVM "
                                              "margins: sppfeat info MODEL says which) [default: every detection "
                                              "after NMS, at most 100 per image, as AP needs].")
@click.option("--draw", type=click.Path(file_okay=False, path_type=str),
              help="Folder for each image drawn with its boxes, labels and scores.")
@click.option("--draw-threshold", type=FINITE, help="Draw the detections scoring at least this, at most 20 per "
                                                   "picture, the best [default: 0.5 for probabilities, 0 for SVM "
                                                   "margins]; --output keeps every detection.")
@click.option("--box-voting/--no-box-voting", default=True, show_default=True,
              help="Place each box kept by NMS at the margin-weighted mean of its class's windows overlapping it "
                   "by IoU >= 0.5 (--no-box-voting: the kept windows as they are, the paper's way).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--cores", type=click.IntRange(min=1), help="CPU cores: without --proposals, selective search "
                                                          "processes ahead of the network [default: the usable cores].")
@click.option("--shard", type=SHARD, help="i/n: only the i-th of n parts of the image list, into "
                                          "DETS.shard-0000i-of-0000n.csv (join them with sppfeat merge).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into --output (same arguments).")
@click.option("--overwrite", is_flag=True, help="Replace --output and the pictures of --draw if they exist.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary.")
def detect(model, images, proposals, output, coco_ids, threshold, draw, draw_threshold, box_voting, device, cores,
           shard, resume, overwrite, quiet):
    """Detect MODEL's classes in INPUT (a folder or one image): boxes in pixels of the image as
    stored, label and score. Scores are the model's: SVM margins (the default; comparable within a
    class, not across classes) or a fine-tuned head's probabilities (comparable across classes)."""
    from ..detection.inference import detect as detect_api
    from ..libc import keep_large_blocks
    from ..distributed import extract_distributed, launch_info
    from ..features.runtime import Runtime
    from ..storage.merge import merge_detections

    def table(rows):
        for r in rows:
            click.echo(f"{r.path}\t{r.label}\t{r.score:+.3f}\t{r.x1:.0f},{r.y1:.0f},{r.x2:.0f},{r.y2:.0f}")
        sys.stdout.flush()

    settings = dict(proposals=proposals, threshold=threshold, draw=draw, draw_threshold=draw_threshold,
                    box_voting=box_voting, coco_ids=coco_ids)
    keep_large_blocks()  # this process is detect's own: freed memory kept for the next image
    launch = launch_info()
    if launch is None:
        result = detect_api(model, images, output, device=device, cores=cores, shard=shard, resume=resume,
                            overwrite=overwrite, quiet=quiet, on_rows=None if output else table, **settings)
    elif shard or not output:
        raise click.BadParameter("under torchrun the ranks are the shards: give --output, not --shard")
    else:
        def run(images, output, config, runtime, strict, **rank_flags):
            return detect_api(model, images, output, device=runtime.device, cores=runtime.cores, **settings,
                              **rank_flags)

        result = extract_distributed(images, output, launch, None, Runtime(device=device), run=run,
                                     join=partial(merge_detections, overwrite=True), resume=resume,
                                     overwrite=overwrite, quiet=quiet)
    for path, reason in result.skipped:  # under torchrun each rank names its own
        say(f"skipped {path}: {reason}")
    if launch is not None:
        if launch.rank == 0 and not quiet:
            say(f"{output}: {launch.world_size} shards joined")
        return
    if not quiet:
        say(f"{output or 'stdout'}: {len(result)} detections in {result.seconds:.1f} s; {len(result.skipped)} skipped")


@main.command("eval-detections")
@click.argument("detections", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("boxes", type=click.Path(exists=True, path_type=str))
@click.option("--box-format", default="auto", show_default=True, type=click.Choice(("auto", *BOX_FORMATS)),
              help="BOXES: COCO JSON, a folder of VOC XML files, CSV, or a folder of YOLO labels.")
@click.option("--metric", default="voc07", show_default=True, type=click.Choice(METRICS),
              help="voc07: VOC 2007's 11-point AP; voc: VOC 2010+'s all-point AP; coco: pycocotools' AP at IoU "
                   "0.5:0.95 with AP50, AP75, APs, APm, APl.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=str), help="Write the scores as JSON.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=str),
              help="Folder for precision_recall.png and ap_per_class.png.")
@click.option("--overwrite", is_flag=True, help="Replace --report and the pictures of --plots if they exist.")
def eval_detections(detections, boxes, box_format, metric, report, plots, overwrite):
    """Score DETECTIONS (sppfeat detect's CSV or JSONL; COCO results .json against COCO JSON BOXES)
    against the ground truth BOXES: AP per class and mAP by the VOC devkit's rules (IoU >= 0.5,
    difficult boxes ignored; 11-point or all-point AP) or COCO's (pycocotools)."""
    from ..detection.evaluation import evaluate_detections

    result = evaluate_detections(detections, boxes, report=report, plots=plots, box_format=box_format, metric=metric,
                                 overwrite=overwrite)
    for file, reason in result.skipped[:SHOW_SKIPPED]:
        say(f"skipped {file}: {reason}")
    if len(result.skipped) > SHOW_SKIPPED:
        say(f"{len(result.skipped) - SHOW_SKIPPED} more ground-truth files skipped")
    for name, r in result.per_class.items():
        ap = "   n/a" if r.ap is None else f"{100 * r.ap:5.1f}%"
        click.echo(f"{name:<16} AP {ap}  ({r.n_objects} objects, {r.n_detections} detections)")
    if result.coco is not None:
        click.echo("  ".join(f"{key} {'n/a' if v is None else f'{100 * v:.1f}%'}" for key, v in result.coco.items()))
    click.echo(f"mAP {100 * result.mAP:.2f}% ({result.ap_name}) over "
               f"{sum(r.ap is not None for r in result.per_class.values())} classes, {result.n_images} images, "
               f"{result.n_detections} detections")
    if result.unknown_images:
        say(f"{sum(result.unknown_images.values())} detections name {len(result.unknown_images)} images absent from "
            f"{boxes} (not scored), e.g. {next(iter(result.unknown_images))}")
    if result.unknown_labels:
        say(f"{sum(result.unknown_labels.values())} detections have classes absent from {boxes} (not scored): "
            f"{', '.join(sorted(result.unknown_labels))}")
