"""Pascal VOC 2007 classification, the SPP-net protocol: linear SVMs trained on trainval, 11-point
mAP on test (SPP-net: 82.44 % with Overfeat-7 fc7 features on the full image).

    python benchmarks/voc2007.py VOCDEVKIT                      # trainval -> test
    python benchmarks/voc2007.py VOCDEVKIT --train train --test val --extract-args '{"scales": [288]}'
Prints mAP, the per-class AP and the wall time of each stage.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sppfeat import ExtractionConfig, evaluate, extract, train_svm

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devkit", help="a VOCdevkit (or VOCdevkit/VOC2007) folder")
    parser.add_argument("--train", default="trainval", help="image set to train on")
    parser.add_argument("--test", default="test", help="image set to evaluate on")
    parser.add_argument("--C", default="auto")
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--extract-args", default="{}", help='JSON of ExtractionConfig fields')
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    options = json.loads(args.extract_args)
    files = {}
    for split in (args.train, args.test):
        files[split] = out / f"voc2007_{split}.h5"
        config = ExtractionConfig(**{**options, "dataset": "voc2007", "split": split})
        result = extract(args.devkit, files[split], config, overwrite=True, quiet=True)
        print(f"extract {split}: {result.n_images} images, {result.n_skipped} skipped, {result.seconds:.0f} s "
              f"({result.images_per_second:.1f} images/s)", flush=True)
    model = out / "voc2007_svm.h5"
    trained = train_svm(files[args.train], model, C=args.C if args.C == "auto" else float(args.C),
                        protocol="all", overwrite=True)
    print(f"train-svm on {args.train}: C {trained.C:g}, {trained.n_train} images, {trained.seconds:.1f} s", flush=True)
    start = time.perf_counter()
    report = evaluate(model, files[args.test], out / "voc2007_report.json")
    print(f"eval on {args.test}: {report.n_test} images, {time.perf_counter() - start:.1f} s")
    print(f"\nVOC 2007 {args.train} -> {args.test}: mAP {100 * report.mAP:.2f} %")
    for name, ap in report.ap.items():
        print(f"  {name:<14}{100 * ap:6.2f}")


if __name__ == "__main__":
    main()
