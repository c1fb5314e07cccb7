"""sppfeat regions on the object boxes of the VOC 2007 sample (boxes.coco.json, 20 classes): one conv
pass per image + pooling of every box, against cropping every box and describing the crop.

    python benchmarks/regions.py accuracy [--scales 480 688 480,576,688,864,1200]
        train linear SVMs on the boxes of the `train` images, accuracy on the boxes of the `val` images:
        ours at each scale setting (a list: the paper's per-box choice), and each box cropped and
        described by `extract` (same levels and dtype, shorter side 224)
    python benchmarks/regions.py budget [--scale 480]
        accuracy per byte of the vector choices under 16 KB per box: 3-fold cross-validation inside
        the train boxes and train -> val, all from one {3,2,1} float32 extraction sliced per level
    python benchmarks/regions.py speed [--images 4]
        seconds per image, model loaded, 2 cores: ours (defaults, 688, the five scales) against
        crop-and-warp to 224 × 224 and one forward pass per box (R-CNN's way), at 10/100/200/1000
        random boxes per image
    python benchmarks/regions.py            # all three
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sppfeat import REGION_DEFAULTS, ExtractionConfig, Runtime, evaluate, extract, regions, train_svm
from sppfeat.classify.svm import DEFAULT_C_GRID, LinearSVM, cross_validate_c, decision_function, gram_matrix
from sppfeat.classify.svm import normalize_features
from sppfeat.classify.training import DEFAULT_POWER
from sppfeat.data.boxes import read_boxes
from sppfeat.data.decode import ResizePolicy, decode_scales
from sppfeat.features.boxes import RegionDescriber, region_item
from sppfeat.features.descriptor import build_descriptor
from sppfeat.storage.feature_file import load_features

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "voc2007-sample"
FIVE_SCALES = (480, 576, 688, 864, 1200)
CROP_BATCH = 50  # crops per forward pass of the crop-and-warp baseline


def voc_paths(sample: Path) -> tuple[Path, Path]:
    voc = sample / "VOCdevkit" / "VOC2007"
    return voc / "JPEGImages", voc / "ImageSets" / "Main"


def split_boxes(sample: Path, out: Path) -> dict[str, Path]:
    """boxes.coco.json cut into the boxes of the train images and of the val images."""
    data = json.loads((sample / "boxes.coco.json").read_text())
    _, sets = voc_paths(sample)
    files = {}
    for split in ("train", "val"):
        ids = {int(line.split()[0]) for line in (sets / f"{split}.txt").read_text().split("\n") if line.strip()}
        part = {**data, "images": [i for i in data["images"] if i["id"] in ids],
                "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
        files[split] = out / f"boxes_{split}.json"
        files[split].write_text(json.dumps(part))
    return files


def train_and_test(train: Path, test: Path, out: Path) -> float:
    """Accuracy on `test` of SVMs trained on every row of `train` (C by 3-fold cross-validation)."""
    model = out / f"{train.stem}_svm.h5"
    train_svm(train, model, protocol="all", overwrite=True)
    return evaluate(model, test).accuracy


def ours(sample: Path, boxes: dict[str, Path], out: Path, config: ExtractionConfig, name: str) -> dict:
    images, _ = voc_paths(sample)
    files, seconds = {}, 0.0
    for split, path in boxes.items():
        files[split] = out / f"{name}_{split}.h5"
        result = regions(images, path, files[split], config, Runtime(), overwrite=True, quiet=True)
        seconds += result.seconds
    return {"method": name, "accuracy": train_and_test(files["train"], files["val"], out), "seconds": seconds,
            "bytes": config.feature_dim * np.dtype(config.dtype).itemsize}


def write_crops(sample: Path, boxes: Path, folder: Path) -> None:
    """Every box cropped from its image (clipped to it) as a PNG in a folder named after its class."""
    images, _ = voc_paths(sample)
    box_set = read_boxes(boxes)
    for k, (box, image, label) in enumerate(zip(box_set.boxes, box_set.image, box_set.labels)):
        target = folder / box_set.class_names[label] / f"{k:05d}.png"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(images / box_set.paths[image]) as im:
            x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
            x2, y2 = min(im.width, int(np.ceil(box[2]))), min(im.height, int(np.ceil(box[3])))
            im.convert("RGB").crop((x1, y1, x2, y2)).save(target)


def crops(sample: Path, boxes: dict[str, Path], out: Path, config: ExtractionConfig, name: str) -> dict:
    files, seconds = {}, 0.0
    for split, path in boxes.items():
        write_crops(sample, path, out / "crops" / split)
        files[split] = out / f"{name}_{split}.h5"
        result = extract(out / "crops" / split, files[split], config, Runtime(), overwrite=True, quiet=True)
        seconds += result.seconds
    return {"method": name, "accuracy": train_and_test(files["train"], files["val"], out), "seconds": seconds,
            "bytes": config.feature_dim * np.dtype(config.dtype).itemsize}


def accuracy(args, out: Path) -> None:
    boxes = split_boxes(args.sample, out)
    rows = []
    for spec in args.scales:
        scales = tuple(int(s) for s in spec.split(","))
        rows.append(ours(args.sample, boxes, out, REGION_DEFAULTS.replace(scales=scales, combine="best"),
                         f"ours_{spec.replace(',', '-')}"))
        print(rows[-1], flush=True)
    same = ExtractionConfig(scales=(224,), levels=REGION_DEFAULTS.levels, dtype=REGION_DEFAULTS.dtype)
    rows.append(crops(args.sample, boxes, out, same, "crops_224"))
    print(rows[-1], flush=True)
    if args.crop_full:
        rows.append(crops(args.sample, boxes, out, ExtractionConfig(), "crops_224_full"))
        print(rows[-1], flush=True)
    print("\n| method | bytes per box | val accuracy | extraction, train + val |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['bytes']:,} | {100 * row['accuracy']:.2f} % | {row['seconds']:.0f} s |")


def svm_scores(x_train, y_train, x_val, y_val, n_classes: int) -> tuple[float, float]:
    """(best 3-fold cross-validation accuracy inside the train rows, train -> val accuracy)."""
    x_train, x_val = normalize_features(x_train, DEFAULT_POWER), normalize_features(x_val, DEFAULT_POWER)
    gram = gram_matrix(x_train)
    C, cv = cross_validate_c(gram, y_train, n_classes, DEFAULT_C_GRID, 3, 0)
    svm = LinearSVM(C=C).fit(x_train, y_train, n_classes, gram=gram)
    predicted = decision_function(x_val, svm.coef_, svm.intercept_).argmax(axis=1)
    return max(cv.values()), float((predicted == y_val).mean())


def budget(args, out: Path) -> None:
    boxes = split_boxes(args.sample, out)
    images, _ = voc_paths(args.sample)
    wide = REGION_DEFAULTS.replace(scales=(args.scale,), levels=(3, 2, 1), dtype="float32")
    data = {}
    for split, path in boxes.items():
        target = out / f"budget_{args.scale}_{split}.h5"
        if not target.exists():
            regions(images, path, target, wide, Runtime(), quiet=True)
        data[split] = load_features(target)
    channels = wide.spec.channels
    last = {"{3,2,1}": 14, "{2,1}": 5, "{1}": 1}  # bins of the trailing levels: the vector ends with level 1
    print("| levels | dtype | bytes per box | 3-fold CV in train | train -> val |\n|---|---|---|---|---|")
    for levels, bins in last.items():
        for dtype in ("float16", "float32"):
            columns = slice(data["train"].features.shape[1] - bins * channels, None)
            x = {s: data[s].features[:, columns].astype(dtype).astype(np.float32) for s in data}
            cv, val = svm_scores(x["train"], data["train"].labels, x["val"], data["val"].labels,
                                 len(data["train"].class_names))
            size = bins * channels * np.dtype(dtype).itemsize
            print(f"| {levels} | {dtype} | {size:,} | {100 * cv:.2f} % | {100 * val:.2f} % |", flush=True)


def random_boxes(rng, height: int, width: int, n: int) -> np.ndarray:
    """n boxes of at least 16 pixels a side, uniformly placed."""
    x = np.sort(rng.uniform(0, width, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, height, (n, 2)), axis=1)
    x[:, 1], y[:, 1] = np.maximum(x[:, 1], x[:, 0] + 16), np.maximum(y[:, 1], y[:, 0] + 16)
    return np.stack([x[:, 0], y[:, 0], np.minimum(x[:, 1], width), np.minimum(y[:, 1], height)], axis=1)


def describer(config: ExtractionConfig) -> RegionDescriber:
    model, config, _ = build_descriptor(config, torch.device("cpu"))
    return RegionDescriber(model, config)


def run_ours(describe: RegionDescriber, policies: list[ResizePolicy], job: tuple[Path, np.ndarray]) -> None:
    """One image: decode it at its scales, one forward pass per scale, pool every box."""
    path, boxes = job
    decoded = decode_scales(str(path), policies)
    describe([region_item(0, decoded, boxes, 0)], torch.device("cpu"))


def run_crops(model, job: tuple[Path, np.ndarray]) -> None:
    """Boxes of one image: crop each, warp it to 224 × 224, run the network on the crops (R-CNN's way)."""
    path, boxes = job
    with Image.open(path) as im:
        im = im.convert("RGB")
        warped = [np.asarray(im.crop(tuple(int(round(v)) for v in b)).resize((224, 224), Image.Resampling.BICUBIC))
                  for b in boxes]
    with torch.inference_mode():
        model(torch.from_numpy(np.stack(warped)))


def seconds_per_image(pool: ThreadPoolExecutor, run, jobs: list, n_images: int, repeats: int = 2) -> float:
    """Wall time of all jobs on the pool's threads (one core each), per image; best of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        list(pool.map(run, jobs))
        best = min(best, time.perf_counter() - start)
    return best / n_images


def speed(args, out: Path) -> None:
    """2 cores as the pipeline uses them: two threads with one intra-op thread each, whole images (ours)
    or batches of CROP_BATCH crops (crop and warp) in parallel."""
    torch.set_num_threads(1)
    images, sets = voc_paths(args.sample)
    paths = [images / f"{i}.jpg" for i in (sets / "val.txt").read_text().split()[:args.images]]
    rng = np.random.default_rng(0)
    configs = {"ours, defaults": REGION_DEFAULTS, "ours, 688": REGION_DEFAULTS.replace(scales=(688,)),
               "ours, five scales": REGION_DEFAULTS.replace(scales=FIVE_SCALES, combine="best")}
    configs = {name: config.resolved("coco", None, "cpu") for name, config in configs.items()}
    contenders = {name: partial(run_ours, describer(config), config.resize_policies()) for name, config in configs.items()}
    crop_model, _, _ = build_descriptor(ExtractionConfig(levels=REGION_DEFAULTS.levels), torch.device("cpu"))
    contenders["crop + warp 224 per box"] = partial(run_crops, crop_model)
    print("| boxes per image | " + " | ".join(contenders) + " | speed-up (defaults) |")
    print("|---" * (len(contenders) + 2) + "|")
    with ThreadPoolExecutor(2) as pool:
        for n in (10, 100, 200, 1000):
            jobs = []
            for path in paths:
                with Image.open(path) as im:
                    jobs.append((path, random_boxes(rng, im.height, im.width, n)))
            crop_jobs = [(path, boxes[i:i + CROP_BATCH]) for path, boxes in jobs for i in range(0, n, CROP_BATCH)]
            times = {name: seconds_per_image(pool, run, crop_jobs if name.startswith("crop") else jobs, len(paths))
                     for name, run in contenders.items()}
            cells = " | ".join(f"{t:.3f} s" for t in times.values())
            print(f"| {n} | {cells} | {times['crop + warp 224 per box'] / times['ours, defaults']:.1f}× |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=("accuracy", "budget", "speed", "all"), default="all")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="the VOC 2007 sample folder")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "regions")
    parser.add_argument("--scales", nargs="+", default=[",".join(map(str, REGION_DEFAULTS.scales))],
                        help="scale settings for ours (a comma list: one scale per box)")
    parser.add_argument("--crop-full", action="store_true", help="also crops with extract's defaults (64,000-d)")
    parser.add_argument("--scale", type=int, default=REGION_DEFAULTS.scales[0], help="scale of the budget study")
    parser.add_argument("--images", type=int, default=4, help="images of the speed test")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for part in (("accuracy", "budget", "speed") if args.part == "all" else (args.part,)):
        print(f"\n## {part}", flush=True)
        {"accuracy": accuracy, "budget": budget, "speed": speed}[part](args, args.out)


if __name__ == "__main__":
    main()
