"""Throughput of `sppfeat extract` against two hand-written baselines, on the same images, in one run.

    A  per-image loop: PIL open, resize shorter side to 224, the same backbone weights, pyramid
       pooling, one image at a time under torch.no_grad (the loop only, not start-up)
    B  the usual fixed-size pipeline: torchvision DataLoader with workers, Resize(224) +
       CenterCrop(224), batches of 64, the same backbone and pooling (the loop only)
    C  `sppfeat extract` with its defaults, the whole process from start to written file

Each runs in its own process (so peak RSS is its own). Figures are appended to
bench-out/throughput.jsonl as soon as they are measured.

    python benchmarks/throughput.py [--n 1000] [--images FOLDER] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALTECH = ROOT.parent / "shared" / "data" / "caltech101" / "101_ObjectCategories"
LEVELS = (6, 3, 2, 1)


def pick_images(folder: Path, n: int) -> list[Path]:
    """n files spread evenly over the sorted listing (so every class is represented)."""
    from sppfeat.data.discover import list_images

    listed = list_images(folder, dataset="folder")
    step = max(1, len(listed.paths) // n)
    return [folder / p for p in listed.paths[::step][:n]]


def linked_folder(paths: list[Path], folder: Path) -> Path:
    """`folder` holding `paths` as symlinks, one subfolder per class (the files' own folder names)."""
    for path in paths:
        target = folder / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    return folder


def load_net(device):
    from sppfeat.backbones import load_backbone

    return load_backbone("efficientnet_lite0").net.to(device)


def run_a(paths: list[str], device: str) -> float:
    import numpy as np
    import torch
    from PIL import Image

    from sppfeat.pyramid import spatial_pyramid_pool

    net = load_net(device)
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            with Image.open(path) as im:
                im = im.convert("RGB")
                w, h = im.size
                f = 224 / min(w, h)
                im = im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BICUBIC)
            x = torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
            vector = spatial_pyramid_pool(net.forward_features((x - 127.0) / 128.0), LEVELS)
            vector.cpu()
    return time.perf_counter() - start


def center_crops(paths: list[str]):
    """The usual fixed-size input: a Dataset of `paths` as Resize(224) + CenterCrop(224) uint8
    3×224×224 tensors (baseline B here and in gpu.py)."""
    from PIL import Image
    from torch.utils.data import Dataset
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
        transforms.PILToTensor()])

    class Files(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as im:
                return transform(im.convert("RGB"))

    return Files()


def run_b(paths: list[str], device: str) -> float:
    import torch
    from torch.utils.data import DataLoader

    from sppfeat.pyramid import spatial_pyramid_pool

    net = load_net(device)
    workers = max(1, min(8, (os.cpu_count() or 1)))
    loader = DataLoader(center_crops(paths), batch_size=64, num_workers=workers, pin_memory=device != "cpu")
    start = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            x = (batch.to(device).float() - 127.0) / 128.0
            spatial_pyramid_pool(net.forward_features(x), LEVELS).cpu()
    return time.perf_counter() - start


def measure(label: str, command: list[str], n: int, log: Path) -> dict:
    """Run one contender in a child process; its stdout's last line is its loop time (if any)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (workers not included)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{label} failed:\n{err[-2000:]}")
    lines = out.strip().splitlines()
    seconds = float(lines[-1]) if lines and lines[-1].replace(".", "", 1).isdigit() else wall
    row = {"contender": label, "images": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 2),
           "peak_rss_mib": round(usage.ru_maxrss / 1024), "cpus": os.cpu_count()}
    with open(log, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(f"{label}: {row['images_per_s']:.1f} images/s ({seconds:.1f} s for {n})", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(CALTECH))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="ABC", help="which contenders to run, e.g. AC")
    parser.add_argument("--extract-args", default="", help="extra arguments for sppfeat extract (C)")
    parser.add_argument("--child", choices=["A", "B"], help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        paths = Path(args.list).read_text().splitlines()
        print(f"{(run_a if args.child == 'A' else run_b)(paths, args.device):.3f}")
        return
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    log = out / "throughput.jsonl"
    paths = pick_images(Path(args.images), args.n)
    n = len(paths)
    print(f"{n} images from {args.images}, device {args.device}, {os.cpu_count()} CPUs", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(map(str, paths)))
        folder = linked_folder(paths, Path(tmp) / "images")  # the same files for C
        me = [sys.executable, __file__, "--list", str(listing), "--device", args.device]
        for label in args.only:
            if label in "AB":
                results[label] = measure(label, me + ["--child", label], n, log)
            else:
                command = [sys.executable, "-m", "sppfeat", "extract", str(folder), str(Path(tmp) / "c.h5"),
                           "--quiet", "--device", args.device, *args.extract_args.split()]
                results[label] = measure("C", command, n, log)
    for base in "AB":
        if "C" in results and base in results:
            ratio = results["C"]["images_per_s"] / results[base]["images_per_s"]
            print(f"C/{base} = {ratio:.2f}")
            with open(log, "a") as fh:
                fh.write(json.dumps({"ratio": f"C/{base}", "value": round(ratio, 3)}) + "\n")


if __name__ == "__main__":
    main()
