"""Caltech 101, the SPP-net protocol: extract once, then 10 random splits of 30 train / <=50 test
images per class over all 102 classes, linear SVMs with C chosen by cross-validation.

    python benchmarks/caltech101.py                      # defaults, extracts to bench-out/
    python benchmarks/caltech101.py --features F.h5      # reuse an extraction
Prints mean ± std of accuracy and mean per-class accuracy, and the wall time of each stage.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sppfeat import ExtractionConfig, evaluate, extract, train_svm

ROOT = Path(__file__).resolve().parents[1]
CALTECH = ROOT.parent / "shared" / "data" / "caltech101" / "101_ObjectCategories"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(CALTECH))
    parser.add_argument("--features", help="existing feature file (skips extraction)")
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--seeds", type=int, default=10, help="splits 0 .. seeds-1")
    parser.add_argument("--seed-list", type=int, nargs="+", help="these splits instead (e.g. to run some in parallel)")
    parser.add_argument("--C", default="auto")
    parser.add_argument("--power", type=float, default=None, help="default: the train-svm default")
    parser.add_argument("--test-per-class", type=int, default=50, help="0 = all remaining images")
    parser.add_argument("--extract-args", default="{}",
                        help='JSON of ExtractionConfig fields, e.g. {"scales": [256]}')
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    features = Path(args.features) if args.features else out / "caltech101.h5"
    if not args.features:
        config = ExtractionConfig(**json.loads(args.extract_args))
        result = extract(args.images, features, config, overwrite=True)
        print(f"extract: {result.n_images} images, {result.dim} dims, {result.n_skipped} skipped, "
              f"{result.seconds:.0f} s ({result.images_per_second:.1f} images/s)", flush=True)
    options = {} if args.power is None else {"power": args.power}
    C = args.C if args.C == "auto" else float(args.C)
    accuracy, class_accuracy, train_s, eval_s, chosen = [], [], [], [], []
    seeds = args.seed_list or list(range(args.seeds))
    for seed in seeds:
        model = out / f"caltech101_svm_seed{seed}.h5"
        t0 = time.perf_counter()
        trained = train_svm(features, model, C=C, seed=seed, test_per_class=args.test_per_class,
                            protocol="per-class", overwrite=True, **options)
        t1 = time.perf_counter()
        report = evaluate(model, features)
        t2 = time.perf_counter()
        accuracy.append(report.accuracy)
        class_accuracy.append(report.mean_class_accuracy)
        train_s.append(t1 - t0)
        eval_s.append(t2 - t1)
        chosen.append(trained.C)
        print(f"seed {seed}: C {trained.C:g}, accuracy {100 * report.accuracy:.2f} %, mean per-class "
              f"{100 * report.mean_class_accuracy:.2f} % ({report.n_test} test), "
              f"train {t1 - t0:.1f} s, eval {t2 - t1:.1f} s", flush=True)
    acc, cls = 100 * np.array(accuracy), 100 * np.array(class_accuracy)
    print(f"\nCaltech 101 (102 classes, 30 train / <= {args.test_per_class or 'all'} test per class), "
          f"{len(seeds)} splits, {features.name}:")
    print(f"  accuracy               {acc.mean():.2f} ± {acc.std():.2f} %")
    print(f"  mean per-class acc.    {cls.mean():.2f} ± {cls.std():.2f} %")
    print(f"  train-svm              {np.mean(train_s):.1f} s per split (C chosen: {sorted(set(chosen))})")
    print(f"  eval                   {np.mean(eval_s):.1f} s per split")


if __name__ == "__main__":
    main()
