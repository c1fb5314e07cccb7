"""Scaling out: one process vs torchrun with N ranks on the same images, same settings.

    python benchmarks/scaling.py --ranks 2                 # 1,000 Caltech 101 images
    python benchmarks/scaling.py --ranks 8 --n 20000        # a GPU node
Prints images/s of each run (whole command, start-up included), the speed-up, and whether the
merged file equals the single-process file row for row (paths, labels, skipped; minimum cosine of
the vectors). On a 2-core CPU machine the speed-up means nothing (the ranks share the cores):
there it checks correctness; measure throughput on a multi-GPU machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sppfeat.storage.feature_file import open_features

ROOT = Path(__file__).resolve().parents[1]
CALTECH = ROOT.parent / "shared" / "data" / "caltech101" / "101_ObjectCategories"


def link_subset(source: Path, folder: Path, n: int) -> None:
    """The first n images of `source` (sorted, class folders kept) as symbolic links under `folder`."""
    files = sorted(p for p in source.rglob("*") if p.is_file())[:n]
    for path in files:
        link = folder / path.relative_to(source)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(CALTECH))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench-out" / "scaling"))
    parser.add_argument("extract_args", nargs="*", help="more sppfeat extract options (after --)")
    args = parser.parse_args()
    out = Path(args.out)
    images = out / "images"
    link_subset(Path(args.images), images, args.n)
    extract = ["-m", "sppfeat", "extract", str(images)]
    single, merged = out / "single.h5", out / "ranks.h5"
    t1 = timed([sys.executable, *extract, str(single), "--overwrite", "-q", *args.extract_args])
    tn = timed([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.ranks),
                *extract, str(merged), "--overwrite", "-q", *args.extract_args])
    a, b = open_features(single), open_features(merged)
    same_rows = a.paths == b.paths and a.labels.tolist() == b.labels.tolist() and a.skipped == b.skipped
    x, y = a.read_features(), b.read_features()
    cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    n = len(a.paths)
    print(f"{n} images, {os.cpu_count()} cores")
    print(f"  1 process   {t1:7.1f} s  {n / t1:8.1f} images/s")
    print(f"  {args.ranks} ranks     {tn:7.1f} s  {n / tn:8.1f} images/s   speed-up {t1 / tn:.2f}")
    print(f"  merged file equals the single run: rows {'yes' if same_rows else 'NO'}, "
          f"minimum cosine {cos.min():.6f}")


if __name__ == "__main__":
    main()
