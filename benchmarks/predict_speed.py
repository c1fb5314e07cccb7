"""Speed of `sppfeat predict` against `sppfeat extract` on the same images, same options otherwise.

The images (n spread evenly over the sorted Caltech 101 listing, as in throughput.py) are extracted
once (warm-up, and the features of the model), a model is trained on them, then the two commands
run alternately (E P, P E, E P, ...: drift in the machine's load hits both), each a whole process
from start to written file. Figures are appended to bench-out/predict_speed.jsonl.

    python benchmarks/predict_speed.py [--n 1000] [--runs 3] [--images FOLDER] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import CALTECH, ROOT, linked_folder, pick_images  # noqa: E402


def sppfeat(*args) -> tuple[float, float]:
    """Run `python -m sppfeat ARGS` to the end; its wall time and the CPU time (user + system) of
    it and its worker processes, in seconds. CPU time hardly depends on what else the machine runs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sppfeat", *map(str, args)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"sppfeat {args[0]} failed:\n{proc.stderr[-2000:]}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(CALTECH))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each command")
    parser.add_argument("--keep", help="folder to keep the features, model and predictions in")
    args = parser.parse_args()
    paths = pick_images(Path(args.images), args.n)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        folder = linked_folder(paths, Path(tmp) / "images")
        features, model = work / "features.h5", work / "model.h5"
        warm_up, _ = sppfeat("extract", folder, features, "-q", "--overwrite")
        print(f"{len(paths)} images; warm-up extract: {warm_up:.1f} s", flush=True)
        sppfeat("train-svm", features, model, "--protocol", "stratified", "--overwrite")
        commands = {"extract": ["extract", folder, work / "timed.h5", "-q", "--overwrite"],
                    "predict": ["predict", model, folder, "-o", work / "predictions.csv", "-q", "--overwrite"]}
        wall: dict[str, list[float]] = {"extract": [], "predict": []}
        cpu: dict[str, list[float]] = {"extract": [], "predict": []}
        for run in range(args.runs):
            for name in (("extract", "predict") if run % 2 == 0 else ("predict", "extract")):
                seconds, cpu_seconds = sppfeat(*commands[name])
                wall[name].append(round(seconds, 1))
                cpu[name].append(round(cpu_seconds, 1))
                print(f"run {run + 1} {name}: {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU", flush=True)
    median = {name: statistics.median(values) for name, values in wall.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    row = {"images": len(paths), "runs": args.runs, "wall_s": wall, "cpu_s": cpu, "median_wall_s": median,
           "median_cpu_s": median_cpu, "images_per_s": {name: round(len(paths) / s, 2) for name, s in median.items()},
           "predict_over_extract": {"wall": round(median["predict"] / median["extract"], 3),
                                    "cpu": round(median_cpu["predict"] / median_cpu["extract"], 3)}}
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    with open(out / "predict_speed.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
