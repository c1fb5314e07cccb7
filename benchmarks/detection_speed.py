"""SPP-net's way against R-CNN's way on the same images and windows.

    python benchmarks/detection_speed.py whole --model M.h5 [M2.h5 ...] [--n 16] [--pairs P]
    python benchmarks/detection_speed.py stages --model bench-out/detection/detector.h5 [--n 10]

`stages` (issue 21): seconds per stage of detection in one process and thread, and R-CNN's way with
the same extractor inside the same process (each window cropped, warped to 224 × 224 and run
through the network and the model's scoring on its own; cropping counted).

`whole` (issue 27), as a user would compare the two ways, whole processes, start-up counted:
- SPP-net's way: ``sppfeat detect MODEL imgs/ --proposals windows.csv -o dets.csv`` (one conv
  pass per image, every window pooled and scored).
- R-CNN's way: every window cropped from its image and warped to 224 × 224 beforehand (not timed),
  then ``sppfeat extract crops/ out.h5 --scale 0 --levels L --dtype float16`` (one network pass per
  window, the project's batched pipeline on every core).

Each way runs on the first image alone and on all N, each with its own images' windows; steady state
per image = (T_N - T_1) / (N - 1) and start-up = T_1 minus one image's steady time, beside the floor
of any start-up: ``python -c "import torch"``. Pairs are interleaved (`--pairs`), medians quoted.
The val images of the shared sample and their windows from bench-out/detection/proposals.h5
(`python benchmarks/detection.py proposals` first). Results go to bench-out/detection/results.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detection import OUT, VOC, record, split_ids  # noqa: E402
from sppfeat.classify.svm import normalize_features  # noqa: E402
from sppfeat.detection.inference import detect_windows  # noqa: E402
from sppfeat.libc import keep_large_blocks  # noqa: E402
from sppfeat.detection.maps import POWER, RegionVectors  # noqa: E402
from sppfeat.detection.model import load_detector  # noqa: E402
from sppfeat.detection.proposal_file import read_proposals  # noqa: E402
from sppfeat.detection.proposals import ProposalConfig, propose_file, stored_rgb  # noqa: E402
from sppfeat.pyramid import spatial_pyramid_pool  # noqa: E402

WORK = OUT / "speed"
SPPFEAT = [sys.executable, "-m", "sppfeat"]


def prepare(n: int) -> list[str]:
    """imgs-1/ and imgs-N/ (symbolic links), windows-1.csv and windows-N.csv, crops-1/ and crops-N/
    (224 × 224 JPEG, quality 95)."""
    ids = split_ids("val")[:n]
    found = read_proposals(OUT / "proposals.h5")
    for count in (1, n):
        images, crops = WORK / f"imgs-{count}", WORK / f"crops-{count}"
        with open(WORK / f"windows-{count}.csv", "w", newline="") as fh:  # only this run's images, as a user's
            writer = csv.writer(fh)
            writer.writerow(["path", "x1", "y1", "x2", "y2"])
            for image_id in ids[:count]:
                for w in found.of(f"{image_id}.jpg"):
                    writer.writerow([f"{image_id}.jpg", *(f"{v:.1f}" for v in w)])
        if crops.is_dir():
            continue
        images.mkdir(parents=True, exist_ok=True)
        crops.mkdir(parents=True)
        for image_id in ids[:count]:
            (images / f"{image_id}.jpg").symlink_to(VOC / "JPEGImages" / f"{image_id}.jpg")
            with Image.open(VOC / "JPEGImages" / f"{image_id}.jpg") as image:
                for k, w in enumerate(found.of(f"{image_id}.jpg")):
                    image.crop(tuple(int(round(v)) for v in w)).resize((224, 224), Image.BILINEAR).save(
                        crops / f"{image_id}-{k:04d}.jpg", quality=95)
    return ids


def timed(command: list) -> float:
    start = time.perf_counter()
    r = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - start


@torch.inference_mode()
def rcnn_scores(model, rv: RegionVectors, file: str, windows: np.ndarray, batch: int = 64) -> np.ndarray:
    """R-CNN's way with our extractor: every window cropped from the image, warped to 224 × 224 and
    run through the network on its own, then scored as the model scores a window (its head on the
    whole crop's map, or its SVMs on the crop's pyramid vector)."""
    image = Image.fromarray(stored_rgb(file))
    out = []
    for start in range(0, len(windows), batch):
        crops = [np.asarray(image.crop(tuple(int(v) for v in w)).resize((224, 224), Image.BILINEAR))
                 for w in windows[start:start + batch]]
        fmap = rv.model.feature_map(torch.from_numpy(np.stack(crops)))
        if model.head is not None:
            whole = np.array([[0, 0, fmap.shape[3], fmap.shape[2]]])
            out.append(np.concatenate([model.head.predict(m, whole)[0] for m in fmap]))
        else:
            vectors = spatial_pyramid_pool(fmap.float(), rv.model.levels, rv.model.pool)
            out.append(model.scores(normalize_features(vectors, POWER).numpy()))
    return np.concatenate(out)


def stages(a) -> None:
    """Seconds per image of each stage on `--n` val images, one thread, and the detection stage
    (all but proposals) against R-CNN's way on the same images and windows, in one run."""
    torch.set_num_threads(1)
    keep_large_blocks()  # the heap `sppfeat detect` runs with
    model = load_detector(a.model)
    rv = RegionVectors(model.feature_settings, "cpu", model.context)
    proposal_set = read_proposals(OUT / "proposals.h5")
    timings = {"proposals": [], "conv": [], "pool_score": [], "nms": [], "rcnn": [], "windows": []}
    for image_id in split_ids("val")[:a.n]:
        file = str(VOC / "JPEGImages" / f"{image_id}.jpg")
        t0 = time.perf_counter()
        propose_file(file, ProposalConfig())
        t1 = time.perf_counter()
        image_map = rv.image_map(file)
        t2 = time.perf_counter()
        windows = proposal_set.of(f"{image_id}.jpg")
        stage: dict = {}
        detect_windows(model, rv, image_map, windows, timings=stage)
        t3 = time.perf_counter()
        rcnn_scores(model, rv, file, windows)
        t4 = time.perf_counter()
        for key, value in (("proposals", t1 - t0), ("conv", t2 - t1), ("pool_score", stage["pool_score"]),
                           ("nms", stage["nms"]), ("rcnn", t4 - t3), ("windows", len(windows))):
            timings[key].append(value)
        print(image_id, {k: round(v[-1], 3) for k, v in timings.items()}, flush=True)
    med = {k: float(np.median(v)) for k, v in timings.items()}
    ours = [c + p + n for c, p, n in zip(timings["conv"], timings["pool_score"], timings["nms"])]
    record({"step": "speed", "model": a.model, "images": a.n, "threads": torch.get_num_threads(),
            "median_seconds": {k: round(v, 4) for k, v in med.items()},
            "detection_stage_seconds": round(float(np.median(ours)), 4),
            "rcnn_over_spp": round(float(np.median(np.array(timings["rcnn"]) / np.array(ours))), 1)})


def whole(a) -> None:
    """SPP-net's way (each model of `--model`) and R-CNN's way as whole processes (see the module)."""
    ids = prepare(a.n)
    levels = {",".join(map(str, load_detector(m).feature_settings.levels)) for m in a.model}
    if len(levels) != 1:
        raise SystemExit(f"the models pool different levels ({sorted(levels)}): R-CNN's way would differ")
    n_windows = sum(1 for _ in open(WORK / f"windows-{a.n}.csv")) - 1
    ways = {f"spp{k}": [*SPPFEAT, "detect", m, "{images}", "--proposals", "{windows}", "-o",
                        WORK / "dets.csv", "--overwrite", "-q"] for k, m in enumerate(a.model)}
    ways["rcnn"] = [*SPPFEAT, "extract", "{crops}", WORK / "crops.h5", "--scale", 0, "--levels", levels.pop(),
                    "--dtype", "float16", "--overwrite", "-q"]
    times: dict[str, list[float]] = {f"{way}_{key}": [] for way in ways for key in ("1", "n")}
    times["import_torch"] = []  # the floor of any start-up: a process that imports torch and stops
    for _ in range(a.pairs):
        times["import_torch"].append(timed([sys.executable, "-c", "import torch"]))
        for count, key in ((1, "1"), (a.n, "n")):
            for way, command in ways.items():
                filled = [str(c).format(images=WORK / f"imgs-{count}", crops=WORK / f"crops-{count}",
                                        windows=WORK / f"windows-{count}.csv") for c in command]
                times[f"{way}_{key}"].append(timed(filled))
            print({k: [round(v, 2) for v in t] for k, t in times.items()}, flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    steady = {way: (med[f"{way}_n"] - med[f"{way}_1"]) / (a.n - 1) for way in ways}
    startup = {way: med[f"{way}_1"] - steady[way] for way in ways}
    record({"step": "speed_whole_process", "models": a.model, "images": len(ids), "windows": n_windows,
            "threads": torch.get_num_threads(), "median_seconds": {k: round(v, 2) for k, v in med.items()},
            "steady_seconds_per_image": {k: round(v, 3) for k, v in steady.items()},
            "startup_seconds": {k: round(v, 2) for k, v in startup.items()},
            "import_torch_seconds": round(med["import_torch"], 2),
            "whole_process_ratio": {way: round(med["rcnn_n"] / med[f"{way}_n"], 1) for way in ways if way != "rcnn"},
            "steady_state_ratio": {way: round(steady["rcnn"] / steady[way], 1) for way in ways if way != "rcnn"}})
    shutil.rmtree(WORK / "crops.h5.parts", ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("whole", "stages"))
    p.add_argument("--model", nargs="+", default=[str(OUT / "detector.h5")], help="whole: several (same levels)")
    p.add_argument("--n", type=int, default=None, help="images (default: 16 for whole, 10 for stages)")
    p.add_argument("--pairs", type=int, default=1, help="whole: interleaved repetitions")
    a = p.parse_args()
    a.n = a.n or (16 if a.step == "whole" else 10)
    if a.step == "stages":
        a.model = a.model[0]
    (whole if a.step == "whole" else stages)(a)


if __name__ == "__main__":
    main()
