"""Memory over a long extraction: peak RSS after 5,000 and after 50,000 images must differ by < 10 %.

    python benchmarks/memory.py                  # 50,000 images, 1,000 distinct synthetic photos
    python benchmarks/memory.py --n 20000 --scale 224

The images are `--unique` synthetic JPEGs of random sizes (48..640 px a side, so hundreds of
distinct network input shapes), each listed many times through symbolic links. `sppfeat extract`
runs as a subprocess; a sampler reads, every 0.5 s, the peak resident memory (VmHWM) of it, the
resident memory (RSS) of it plus its worker processes, and the progress from its saved segments;
every 10 s also the proportional set size (PSS) of the tree, which counts pages the processes
share once. Figures go to OUT/memory.json as they are known.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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


def status_memory(pid: int) -> tuple[int, int]:
    """(RSS now, peak RSS so far) of one process from /proc/PID/status, bytes ((0, 0) if it is gone)."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return found.get("VmRSS", 0), found.get("VmHWM", 0)


def pss(pid: int) -> int:
    """Proportional set size, bytes (0 if gone): each page shared by k processes counts 1/k, so PSS
    adds up over a process tree where RSS counts shared pages in every process. Reading it walks the
    page tables under the process's memory lock (~25 ms here), so it is sampled rarely."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
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


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants."""
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        stack.extend(children(p))
    return found


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
    parser.add_argument("--pss-every", type=float, default=10.0, help="seconds between PSS samples")
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
    parts = Path(str(features) + ".parts")
    shutil.rmtree(parts, ignore_errors=True)  # an earlier stopped run's progress would read as done
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = {"early_main": 0, "early_total": 0, "early_pss": 0, "main": 0, "total": 0, "pss": 0}
    trace = []
    report = out / "memory.json"

    def sample() -> None:
        next_print, next_pss, total_pss = 0, 0.0, 0
        while proc.poll() is None:
            pids = tree_pids(proc.pid)
            main_rss, main_peak = status_memory(proc.pid)
            total_rss = main_rss + sum(status_memory(p)[0] for p in pids[1:])
            if time.monotonic() >= next_pss:
                total_pss = sum(map(pss, pids))
                next_pss = time.monotonic() + args.pss_every
            done = images_done(parts)
            peak["main"] = max(peak["main"], main_peak)
            peak["total"] = max(peak["total"], total_rss)
            peak["pss"] = max(peak["pss"], total_pss)
            if 0 <= done < args.early:
                peak["early_main"], peak["early_total"], peak["early_pss"] = peak["main"], peak["total"], peak["pss"]
            if done >= next_print:
                trace.append((done, main_rss >> 20, total_rss >> 20, total_pss >> 20))
                print(f"  {done:>6} images  RSS main {main_rss >> 20} MiB, with workers {total_rss >> 20} MiB;"
                      f"  PSS with workers {total_pss >> 20} MiB", flush=True)
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
    growth_pss = mib["pss"] / mib["early_pss"] - 1
    result = {"n_images": args.n, "unique": args.unique, "scale": args.scale, "seconds": seconds,
              "images_per_second": args.n / seconds, "peak_mib": mib, "growth_main": growth_main,
              "growth_total": growth_total, "growth_pss": growth_pss, "trace": trace}
    report.write_text(json.dumps(result, indent=1))
    print(f"\n{args.n} images in {seconds:.0f} s ({args.n / seconds:.1f} images/s), scale {args.scale}")
    print(f"peak RSS, main process:      {mib['early_main']:.0f} MiB after {args.early} images, "
          f"{mib['main']:.0f} MiB after {args.n}  ({100 * growth_main:+.1f} %)")
    print(f"peak RSS, with workers:      {mib['early_total']:.0f} MiB after {args.early} images, "
          f"{mib['total']:.0f} MiB after {args.n}  ({100 * growth_total:+.1f} %)")
    print(f"peak PSS, with workers:      {mib['early_pss']:.0f} MiB after {args.early} images, "
          f"{mib['pss']:.0f} MiB after {args.n}  ({100 * growth_pss:+.1f} %)")
    worst = max(growth_main, growth_total, growth_pss)
    print(f"target: growth < 10 %: {'met' if worst < 0.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
