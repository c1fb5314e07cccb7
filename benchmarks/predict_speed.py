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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import CALTECH, ROOT, linked_folder, pick_images  # noqa: E402


def sppfeat(*args) -> float:
    """Run `python -m sppfeat ARGS` to the end; its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sppfeat", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"sppfeat {args[0]} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


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
        print(f"{len(paths)} images; warm-up extract: {sppfeat('extract', folder, features, '-q', '--overwrite'):.1f} s",
              flush=True)
        sppfeat("train-svm", features, model, "--protocol", "stratified", "--overwrite")
        commands = {"extract": ["extract", folder, work / "timed.h5", "-q", "--overwrite"],
                    "predict": ["predict", model, folder, "-o", work / "predictions.csv", "-q", "--overwrite"]}
        seconds: dict[str, list[float]] = {"extract": [], "predict": []}
        for run in range(args.runs):
            for name in (("extract", "predict") if run % 2 == 0 else ("predict", "extract")):
                seconds[name].append(sppfeat(*commands[name]))
                print(f"run {run + 1} {name}: {seconds[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    row = {"images": len(paths), "runs": args.runs, "seconds": seconds, "median_s": medians,
           "images_per_s": {name: round(len(paths) / s, 2) for name, s in medians.items()},
           "predict_over_extract_time": round(medians["predict"] / medians["extract"], 3)}
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    with open(out / "predict_speed.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
