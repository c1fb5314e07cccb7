"""Memory over a long extraction: peak RSS after 5,000 and after 50,000 images must differ by < 10 %.

    python benchmarks/memory.py                  # 50,000 images, 1,000 distinct synthetic photos
    python benchmarks/memory.py --n 20000 --scale 224

The images are `--unique` synthetic JPEGs of random sizes (48..640 px a side, so hundreds of
distinct network input shapes), each listed many times through symbolic links. `sppfeat extract`
runs as a subprocess; a sampler reads the resident memory of it and its decode workers every
0.5 s and the progress from its saved segments. Figures go to OUT/memory.json as they are known.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SEGMENT = re.compile(r"^seg-(\d+)-(\d+)\.npz$")


def make_images(folder: Path, n: int, unique: int, seed: int = 0) -> None:
    """`unique` random-size JPEGs under folder/.pool, linked as n files in 10 class folders."""
    pool = folder / ".pool"  # hidden: not listed itself
    pool.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(unique):
        path = pool / f"{k:05d}.jpg"
        if path.exists():
            continue
        h, w = rng.integers(48, 641, size=2)
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * rng.uniform(0.2, 2)) % 256, (yy * rng.uniform(0.2, 2)) % 256,
                         ((xx + yy) * rng.uniform(0.1, 1)) % 256], axis=-1)
        noise = rng.normal(0, 20, size=(h, w, 3))
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    for i in range(n):
        link = folder / f"class_{i % 10}" / f"img_{i:06d}.jpg"
        if not link.exists():
            link.parent.mkdir(exist_ok=True)
            os.symlink(pool / f"{i % unique:05d}.jpg", link)


def rss(pid: int) -> int:
    """Resident memory of one process, bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def tree_rss(pid: int) -> tuple[int, int]:
    """(main process RSS, RSS of it plus all its descendants), bytes."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss(p)
        stack.extend(children(p))
    return rss(pid), total


def images_done(parts: Path) -> int:
    try:
        ends = [int(m.group(2)) for m in map(SEGMENT.match, os.listdir(parts)) if m]
    except OSError:
        return -1
    return max(ends, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--unique", type=int, default=1_000)
    parser.add_argument("--early", type=int, default=5_000, help="the first checkpoint (images)")
    parser.add_argument("--scale", default="96", help="extract --scale (small keeps the run short)")
    parser.add_argument("--out", default=str(ROOT / "bench-out" / "memory"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = out / "images"
    t0 = time.perf_counter()
    make_images(images, args.n, args.unique)
    print(f"images: {args.n} files ({args.unique} distinct) in {time.perf_counter() - t0:.0f} s", flush=True)

    features = out / "features.h5"
    cmd = [sys.executable, "-m", "sppfeat", "extract", str(images), str(features), "--overwrite", "-q",
           "--scale", args.scale]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    parts = Path(str(features) + ".parts")
    peak = {"early_main": 0, "early_total": 0, "main": 0, "total": 0}
    trace = []
    report = out / "memory.json"

    def sample() -> None:
        next_print = 0
        while proc.poll() is None:
            main_rss, total_rss = tree_rss(proc.pid)
            done = images_done(parts)
            peak["main"] = max(peak["main"], main_rss)
            peak["total"] = max(peak["total"], total_rss)
            if 0 <= done < args.early:
                peak["early_main"], peak["early_total"] = peak["main"], peak["total"]
            if done >= next_print:
                trace.append((done, main_rss >> 20, total_rss >> 20))
                print(f"  {done:>6} images  main {main_rss >> 20} MiB  with workers {total_rss >> 20} MiB", flush=True)
                report.write_text(json.dumps({"trace": trace, "peak_bytes": peak}, indent=1))
                next_print = done + max(1, args.n // 20)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    proc.wait()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"extract failed with exit code {proc.returncode}")
    mib = {k: v / 2**20 for k, v in peak.items()}
    growth_main = mib["main"] / mib["early_main"] - 1
    growth_total = mib["total"] / mib["early_total"] - 1
    result = {"n_images": args.n, "unique": args.unique, "scale": args.scale, "seconds": seconds,
              "images_per_second": args.n / seconds, "peak_mib": mib, "growth_main": growth_main,
              "growth_total": growth_total, "trace": trace}
    report.write_text(json.dumps(result, indent=1))
    print(f"\n{args.n} images in {seconds:.0f} s ({args.n / seconds:.1f} images/s), scale {args.scale}")
    print(f"peak RSS, main process:      {mib['early_main']:.0f} MiB after {args.early} images, "
          f"{mib['main']:.0f} MiB after {args.n}  ({100 * growth_main:+.1f} %)")
    print(f"peak RSS, with decode workers: {mib['early_total']:.0f} MiB after {args.early} images, "
          f"{mib['total']:.0f} MiB after {args.n}  ({100 * growth_total:+.1f} %)")
    print(f"target: growth < 10 %: {'met' if max(growth_main, growth_total) < 0.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
