"""Pascal VOC 2007 classification, the SPP-net protocol: linear SVMs trained on trainval, 11-point
mAP on test (SPP-net: 82.44 % with Overfeat-7 fc7 features on the full image).

    python benchmarks/voc2007.py VOCDEVKIT                      # trainval -> test
    python benchmarks/voc2007.py VOCDEVKIT --train train --test val --extract-args '{"scales": [288]}'
    python benchmarks/voc2007.py VOCDEVKIT --train train --test val --cv 5   # also 5-fold CV inside train
Prints mAP, the per-class AP and the wall time of each stage. With --cv K, also the mean 11-point mAP
of K-fold cross-validation inside the training set (each fold's C chosen by 3-fold CV on the other
folds only), a steadier figure than a small test set gives.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sppfeat import ExtractionConfig, evaluate, extract, load_features, train_svm
from sppfeat.classify.svm import LinearSVM, cross_validate_c, gram_matrix, kfold_indices, normalize_features, score
from sppfeat.classify.protocol import DEFAULT_POWER

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devkit", help="a VOCdevkit (or VOCdevkit/VOC2007) folder")
    parser.add_argument("--train", default="trainval", help="image set to train on")
    parser.add_argument("--test", default="test", help="image set to evaluate on")
    parser.add_argument("--C", default="auto")
    parser.add_argument("--cv", type=int, default=0, help="folds of cross-validation inside the training set")
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
    if args.cv:
        fold_maps = cross_validated_map(files[args.train], args.cv)
        print(f"{args.cv}-fold CV inside {args.train}: mAP {100 * np.mean(fold_maps):.2f} % "
              f"(folds: {', '.join(f'{100 * m:.2f}' for m in fold_maps)})", flush=True)
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


def cross_validated_map(features_path: Path, folds: int, seed: int = 0) -> list[float]:
    """11-point mAP of each held-out fold, the SVMs trained on the other folds with C chosen by
    3-fold CV on those folds alone (as train-svm chooses it)."""
    rows = load_features(features_path)
    x = normalize_features(rows.features, DEFAULT_POWER)
    y = rows.targets.astype(np.int8)
    gram = gram_matrix(x)
    maps = []
    for k, held_out in enumerate(split := kfold_indices(y, folds, seed)):
        train = np.concatenate([split[j] for j in range(folds) if j != k])
        C, _ = cross_validate_c(gram[np.ix_(train, train)], y[train], y.shape[1], seed=seed)
        svm = LinearSVM(C=C, seed=seed).fit(x[train], y[train], y.shape[1], gram=gram[np.ix_(train, train)])
        maps.append(score(svm.decision_function(x[held_out]), y[held_out]))
    return maps


if __name__ == "__main__":
    main()
