"""Every core in `sppfeat detect` (issue 28): whole-process images/s of the command (a subprocess, so
start-up counts) on a folder of N VOC 2007 `val` photos, before (`--cores 1`: everything in one
process) and after (the default: every usable core, selective search in worker processes while the
main process runs the network), in interleaved pairs; the medians and their ratio.

    python benchmarks/detect_cores.py                        # 100 photos, 3 pairs (target: >= 1.6x on 2 cores)
    python benchmarks/detect_cores.py --n 4 --pairs 1        # a check of the script itself

--model: a detector (default: bench-out/detect_cores/detector.h5, trained first if absent on the
first 20 `train` photos with `--rounds 0`, at the detection defaults). The photos are symbolic
links under bench-out/detect_cores/photos; the two ways' detection files must be equal, and the
script says whether they are. Run it on an otherwise idle machine: the ratio is the measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOC = ROOT.parent / "shared" / "data" / "voc2007-sample" / "VOCdevkit" / "VOC2007"
OUT = ROOT / "bench-out" / "detect_cores"


def split_ids(name: str) -> list[str]:
    return (VOC / "ImageSets" / "Main" / f"{name}.txt").read_text().split()


def linked(ids: list[str], folder: Path, annotations: bool = False) -> Path:
    """`folder` holding exactly the photos of `ids` (symbolic links), and their VOC XML in
    folder/../Annotations when asked."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for i in ids:
        os.symlink(VOC / "JPEGImages" / f"{i}.jpg", folder / f"{i}.jpg")
        if annotations:
            (folder.parent / "Annotations").mkdir(exist_ok=True)
            xml = folder.parent / "Annotations" / f"{i}.xml"
            if not xml.exists():
                os.symlink(VOC / "Annotations" / f"{i}.xml", xml)
    return folder


def sppfeat(*args) -> float:
    """Seconds of `python -m sppfeat ARGS`, start-up included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sppfeat", *map(str, args)], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="val photos to detect in")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved (one core, every core) pairs")
    parser.add_argument("--model", type=Path, help="a detector model [default: trained here on 20 photos]")
    args = parser.parse_args()
    model = args.model or OUT / "detector.h5"
    if not model.exists():
        train = linked(split_ids("train")[:20], OUT / "train" / "photos", annotations=True)
        seconds = sppfeat("train-detector", train, train.parent / "Annotations", model, "--rounds", 0, "-q")
        print(f"trained {model} on 20 photos in {seconds:.0f} s")
    photos = linked(split_ids("val")[:args.n], OUT / "photos")
    ways = {"one core (--cores 1)": ["--cores", 1], "every core (default)": []}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for pair in range(args.pairs):
        for k, way in enumerate(ways if pair % 2 == 0 else reversed(ways)):  # alternate which goes first
            out = OUT / f"dets-{list(ways).index(way)}.csv"
            seconds[way].append(sppfeat("detect", model, photos, "-o", out, "--overwrite", "-q", *ways[way]))
            print(f"pair {pair}: {way:<22} {seconds[way][-1]:7.1f} s", flush=True)
    same = (OUT / "dets-0.csv").read_text() == (OUT / "dets-1.csv").read_text()
    medians = {way: statistics.median(values) for way, values in seconds.items()}
    print(f"{args.n} photos, {os.cpu_count()} cores (usable: {len(os.sched_getaffinity(0))}), "
          f"{args.pairs} pairs, medians:")
    for way, median in medians.items():
        print(f"  {way:<22} {median:7.1f} s  {args.n / median:6.2f} images/s")
    one, every = medians.values()
    print(f"  speed-up {one / every:.2f}x; detections of both ways equal: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
