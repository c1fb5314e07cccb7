"""Object detection on the shared VOC 2007 sample (issue 21): accuracy and speed of sppfeat's
detectors, reproducibly.

    python benchmarks/detection.py proposals          # selective search on the 1,700 images (resumable)
    python benchmarks/detection.py maps               # conv maps at the detection scale, cached on disk
    python benchmarks/detection.py accuracy [--train-n N] [--levels 3,2,1] [--cv 3] ...
    python benchmarks/detection.py model --model M.h5 # a trained model on val, with and without its regression
    python benchmarks/detection.py folders            # bench-out/detection/{train,val}/{photos,Annotations}
                                                      # (symbolic links) for the commands themselves

Train on the 1,500 `train` images, test on the 200 `val` images (and/or 3-fold CV inside `train`);
11-point AP by the devkit's rules on the official boxes (difficult flags included). Results are
appended to bench-out/detection/results.jsonl as they are measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sppfeat.config import DETECTION_DEFAULTS  # noqa: E402
from sppfeat.data.boxes import read_boxes  # noqa: E402
from sppfeat.detection.maps import ImageMap, RegionVectors  # noqa: E402
from sppfeat.libc import return_large_blocks  # noqa: E402

from detection_variants import CoarseContextVectors, ImageNetVectors, MultiScaleVectors, ScaledMaps  # noqa: E402

VOC = Path(__file__).resolve().parents[2] / "shared/data/voc2007-sample/VOCdevkit/VOC2007"
OUT = Path("bench-out/detection")


def split_ids(name: str) -> list[str]:
    return (VOC / "ImageSets/Main" / f"{name}.txt").read_text().split()


def map_cache(scale: int, backbone: str = DETECTION_DEFAULTS.backbone) -> Path:
    return OUT / (f"maps-{scale}.h5" if backbone == DETECTION_DEFAULTS.backbone else f"maps-{scale}-{backbone}.h5")


def compute_maps(scale: int, backbone: str = DETECTION_DEFAULTS.backbone) -> None:
    """Every image's conv map at `scale` into bench-out (resumable: images already there are kept)."""
    rv = RegionVectors(DETECTION_DEFAULTS.replace(scales=(scale,), backbone=backbone), "cpu")
    ids = split_ids("train") + split_ids("val")
    start = time.monotonic()
    with h5py.File(map_cache(scale, backbone), "a") as f:
        todo = [i for i in ids if i not in f]
        for n, image_id in enumerate(todo):
            m = rv.image_map(str(VOC / "JPEGImages" / f"{image_id}.jpg"))
            d = f.create_dataset(image_id, data=m.fmap.numpy())
            d.attrs.update(input_size=m.input_size, original_size=m.original_size, stored_size=m.stored_size,
                           orientation=m.orientation)
            if n % 100 == 0:
                print(f"{n}/{len(todo)} maps, {(time.monotonic() - start) / max(n, 1):.2f} s each", flush=True)
    print(f"maps done: {len(todo)} in {time.monotonic() - start:.0f} s", flush=True)


def load_maps(scale: int, ids: list[str], backbone: str = DETECTION_DEFAULTS.backbone) -> dict[str, ImageMap]:
    out = {}
    with h5py.File(map_cache(scale, backbone), "r") as f:
        for image_id in ids:
            d = f[image_id]
            out[image_id] = ImageMap(torch.from_numpy(d[()]), tuple(d.attrs["input_size"]),
                                     tuple(d.attrs["original_size"]), tuple(d.attrs["stored_size"]),
                                     int(d.attrs["orientation"]))
    return out


class WithoutRegression:
    """A detector model whose windows stay where they are (its box regression unused)."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def score_windows(self, rv, image_map, windows):
        from sppfeat.detection.model import WindowScores

        return WindowScores(self.model.score_windows(rv, image_map, windows).scores, lambda rows: None)


def detections_of(model, rv, truth, maps, proposal_set, regression: bool, box_voting: bool = False):
    """Detections of `model` on the images of `truth` (maps and windows given)."""
    from sppfeat.detection.inference import detect_windows
    from sppfeat.detection.metric import Detections

    scorer = model if regression else WithoutRegression(model)
    paths, boxes, labels, scores = [], [], [], []
    for path in truth.paths:
        b, k, s = detect_windows(scorer, rv, maps[path[:-4]], proposal_set.of(path), box_voting=box_voting)
        paths += [path] * len(b)
        boxes.append(b)
        labels += [model.class_names[j] for j in k]
        scores.append(s)
    return Detections(paths, np.concatenate(boxes), labels, np.concatenate(scores))


def train_and_test(train, test, maps, proposal_set, rv, settings, save: Path | None = None) -> dict:
    """Fit on the images of BoxSet `train`, score on `test`: mAP with and without box regression."""
    from sppfeat.detection.mining import fit_detector
    from sppfeat.detection.model import DetectorModel, save_detector
    from sppfeat.detection.proposal_file import read_proposals
    from sppfeat.detection.training import prepare_image

    return_large_blocks()  # as train_detector does
    start = time.monotonic()
    rng = np.random.default_rng(settings.seed)
    mirrored = (lambda path: (lambda: rv.image_map(str(VOC / "JPEGImages" / path), mirrored=True))
                if settings.mirror else None)
    images = [prepare_image(rv, train, i, maps[path[:-4]], proposal_set.of(path), settings, rng, mirrored(path))[0]
              for i, path in enumerate(train.paths)]
    fitted = fit_detector(images, len(train.class_names), rv, settings, quiet=True)
    trained = time.monotonic()
    model = DetectorModel(fitted.coef, fitted.intercept, list(train.class_names), rv.config.to_record(),
                          read_proposals(OUT / "proposals.h5").settings,
                          {**dataclasses.asdict(settings), **fitted.stats, "n_images": len(images)}, fitted.regression)
    if save is not None:
        save_detector(save, model)
    out = {"train_images": len(train.paths), "test_images": len(test.paths), "rounds": fitted.stats["mining"],
           "train_seconds": round(trained - start, 1)}
    out.update(test_variants(model, rv, test, maps, proposal_set))
    out["test_seconds"] = round(time.monotonic() - trained, 1)
    return out


VARIANTS = {"no_regression": (False, False), "with_regression": (True, False), "with_voting": (True, True)}


def test_variants(model, rv, test, maps, proposal_set) -> dict:
    """mAP and APs (%) of `model` on `test`: windows as scored, moved by the regression, then also
    placed by box voting (the defaults of sppfeat detect)."""
    from sppfeat.detection.metric import evaluate_boxes

    out = {}
    for key, (regression, voting) in VARIANTS.items():
        if regression and model.regression is None and model.head is None:
            continue
        e = evaluate_boxes(detections_of(model, rv, test, maps, proposal_set, regression, voting), test)
        out[key] = {"mAP": round(100 * e.mAP, 2),
                    "ap": {n: None if r.ap is None else round(100 * r.ap, 1) for n, r in e.per_class.items()}}
    return out


def accuracy(args, rest) -> None:
    from sppfeat.detection.settings import TrainingSettings

    p = argparse.ArgumentParser()
    p.add_argument("--train-n", type=int, default=0, help="first N train images (0 = all 1,500)")
    p.add_argument("--levels", default=",".join(map(str, DETECTION_DEFAULTS.levels)))
    p.add_argument("--cv", type=int, default=0, help="K-fold CV inside the training images (0 = none)")
    p.add_argument("--fold", type=int, action="append", help="with --cv: only these folds (repeatable)")
    p.add_argument("--fold-train-n", type=int, default=0,
                   help="with --cv: train on N of each fold's training images (a fixed random subset), test on "
                        "all its held-out images (a learning curve on the same test set)")
    p.add_argument("--no-val", action="store_true")
    p.add_argument("--settings", default="{}", help="TrainingSettings fields as JSON")
    p.add_argument("--tag", default="")
    p.add_argument("--context", type=float, default=0.0, help="TrainingSettings.context (the enlarged window's vector)")
    p.add_argument("--context-levels", default="", help="experiment: with --context, the enlarged window's levels")
    p.add_argument("--more-scales", default="", help="experiment: further cached scales, one per window")
    p.add_argument("--imagenet", type=float, default=0.0, help="experiment: weight of the appended √ImageNet probabilities")
    a = p.parse_args(rest)
    coarse = tuple(int(v) for v in a.context_levels.split(",")) if a.context_levels else ()
    settings = TrainingSettings(**json.loads(a.settings))
    if a.context and not coarse:  # the coarse variant's vectors are not the product's: its model records none
        settings = dataclasses.replace(settings, context=a.context)
    levels = tuple(int(v) for v in a.levels.split(","))
    train_ids, val_ids, subset, proposal_set = sample(a.train_n)
    maps = load_maps(args.scale, train_ids + ([] if a.no_val else val_ids), args.backbone)
    if a.more_scales:
        more = [load_maps(int(v), list(maps)) for v in a.more_scales.split(",")]
        maps = {k: ScaledMaps.of(m, tuple(x[k] for x in more)) for k, m in maps.items()}
    config = DETECTION_DEFAULTS.replace(scales=(args.scale,), levels=levels, backbone=args.backbone)
    rv = (CoarseContextVectors(config, "cpu", a.context, coarse) if coarse
          else ImageNetVectors(config, "cpu", a.imagenet) if a.imagenet
          else MultiScaleVectors(config, "cpu") if a.more_scales else RegionVectors(config, "cpu", settings.context))
    base = {"tag": a.tag, "scale": args.scale, "backbone": args.backbone, "levels": list(levels),
            "settings": json.loads(a.settings), "context": a.context, "context_levels": list(coarse),
            "more_scales": a.more_scales,
            "imagenet": a.imagenet, "train_n": a.train_n, "fold_train_n": a.fold_train_n}
    if not a.no_val:
        record({**base, "test": "val", **train_and_test(subset(train_ids), subset(val_ids), maps, proposal_set, rv,
                                                          settings, OUT / f"detector{a.tag}.h5")})
    if a.cv:
        for k, (kept_ids, held_ids) in enumerate(cv_folds(train_ids, a.cv)):
            if a.fold and k not in a.fold:
                continue
            if a.fold_train_n:
                chosen = np.random.default_rng(1).permutation(len(kept_ids))[:a.fold_train_n]
                kept_ids = [kept_ids[i] for i in sorted(chosen)]
            record({**base, "test": f"cv{k}", **train_and_test(subset(kept_ids), subset(held_ids), maps,
                                                                proposal_set, rv, settings,
                                                                OUT / f"detector{a.tag}-cv{k}.h5")})


def sample(train_n: int = 0):
    """(train ids (the first train_n; 0: all), val ids, subset: ids -> their BoxSet, the proposal set)."""
    from sppfeat.detection.proposal_file import read_proposals

    truth = read_boxes(VOC / "Annotations", keep_empty=True)
    train_ids, val_ids = split_ids("train"), split_ids("val")
    index = {path: i for i, path in enumerate(truth.paths)}
    return (train_ids[:train_n] if train_n else train_ids, val_ids,
            lambda ids: truth.keep_images(sorted(index[f"{i}.jpg"] for i in ids)), read_proposals(OUT / "proposals.h5"))


def cv_folds(ids: list[str], n: int) -> list[tuple[list[str], list[str]]]:
    """(training ids, held-out ids) of each of n folds of `ids` (a fixed random split)."""
    out = []
    for held in np.array_split(np.random.default_rng(0).permutation(len(ids)), n):
        held_set = set(held.tolist())
        out.append(([v for i, v in enumerate(ids) if i not in held_set], [ids[i] for i in sorted(held_set)]))
    return out


def proposal_recall() -> dict:
    """Share of the non-difficult objects of each split with a proposal at IoU >= 0.5 and >= 0.7."""
    from sppfeat.detection.geometry import iou
    from sppfeat.detection.proposal_file import read_proposals

    truth = read_boxes(VOC / "Annotations", keep_empty=True)
    found = read_proposals(OUT / "proposals.h5")
    out = {}
    for split in ("train", "val"):
        best = []
        for image_id in split_ids(split):
            i = truth.paths.index(f"{image_id}.jpg")
            objects = truth.boxes[(truth.image == i) & ~truth.difficult]
            if len(objects):
                best.extend(iou(objects, found.of(f"{image_id}.jpg")).max(axis=1))
        best = np.array(best)
        out[split] = {"objects": len(best), "at_0.5": round(float((best >= 0.5).mean()), 4),
                      "at_0.7": round(float((best >= 0.7).mean()), 4),
                      "windows_per_image": round(float(np.mean([len(found.of(f"{i}.jpg")) for i in split_ids(split)])))}
    return out


def score_model(args, rest) -> None:
    """A trained detector (e.g. made by sppfeat train-detector) on the val images, without its box
    regression, with it, and with box voting too (test_variants), on the cached maps."""
    from sppfeat.detection.model import load_detector

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    a = p.parse_args(rest)
    model = load_detector(a.model)
    _, val_ids, subset, proposal_set = sample()
    maps = load_maps(model.feature_settings.scales[0], val_ids, model.feature_settings.backbone)
    rv = RegionVectors(model.feature_settings, "cpu", model.context)
    record({"step": "model", "model": a.model, "levels": list(model.feature_settings.levels),
            **test_variants(model, rv, subset(val_ids), maps, proposal_set)})


def folders() -> None:
    """train/ and val/ folders of symbolic links (photos/, Annotations/) for the sppfeat commands."""
    for split in ("train", "val"):
        for sub, suffix, source in (("photos", "jpg", "JPEGImages"), ("Annotations", "xml", "Annotations")):
            folder = OUT / split / sub
            folder.mkdir(parents=True, exist_ok=True)
            for image_id in split_ids(split):
                link = folder / f"{image_id}.{suffix}"
                if not link.exists():
                    link.symlink_to(VOC / source / f"{image_id}.{suffix}")
    print(f"{OUT}/train and {OUT}/val: photos/ and Annotations/")


def record(result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "results.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("proposals", "maps", "accuracy", "model", "folders"))
    parser.add_argument("--scale", type=int, default=DETECTION_DEFAULTS.scales[0])
    parser.add_argument("--backbone", default=DETECTION_DEFAULTS.backbone, help="maps and accuracy: the network")
    args, rest = parser.parse_known_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.step == "proposals":
        from sppfeat.detection.proposals import proposals

        r = proposals(VOC / "JPEGImages", OUT / "proposals.h5", resume=True, quiet=True)
        record({"step": "proposals", "images": r.n_images, "boxes": r.n_boxes, "skipped": r.n_skipped,
                "seconds": round(r.seconds, 1), "recall": proposal_recall()})
    elif args.step == "maps":
        compute_maps(args.scale, args.backbone)
    elif args.step == "accuracy":
        accuracy(args, rest)
    elif args.step == "model":
        score_model(args, rest)
    elif args.step == "folders":
        folders()


if __name__ == "__main__":
    main()
