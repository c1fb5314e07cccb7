"""Box-regression settings tried on a trained detector (issue 21): its SVMs kept, its regression
refitted on the same training images with each variant ({} for its own settings), mAP on the
held-out images (without regression, with it, with box voting too).

    python benchmarks/detection_regression.py --model bench-out/detection/detectorTAG-cv0.h5 --cv 3 --fold 0 \\
        --variants '[{"ridge": 0.3}, {"regression_per_object": 32}]'

The model must come from `benchmarks/detection.py accuracy` with the same split (its fold's
training images); the variants are TrainingSettings fields over the model's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from detection import cv_folds, load_maps, record, sample, test_variants
from sppfeat.detection.maps import RegionVectors
from sppfeat.detection.regression import fit_regression
from sppfeat.detection.model import load_detector
from sppfeat.detection.settings import TrainingSettings
from sppfeat.detection.training import prepare_image
from sppfeat.libc import return_large_blocks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--variants", required=True, help="JSON list of TrainingSettings fields")
    a = p.parse_args()
    return_large_blocks()
    model = load_detector(a.model)
    fields = {f.name for f in dataclasses.fields(TrainingSettings)} - {"rounds"}  # mining is over (and models
    # trained before 2026-12-06 kept the rounds' record under this name)
    trained = TrainingSettings(**{k: v for k, v in model.training.items() if k in fields})
    train_ids, _, subset, proposal_set = sample()
    kept_ids, held_ids = cv_folds(train_ids, a.cv)[a.fold]
    train, test = subset(kept_ids), subset(held_ids)
    maps = load_maps(model.feature_settings.scales[0], kept_ids + held_ids, model.feature_settings.backbone)
    rv = RegionVectors(model.feature_settings, "cpu", model.context)
    for variant in json.loads(a.variants):
        settings = dataclasses.replace(trained, **variant)
        rng = np.random.default_rng(settings.seed)
        images = [prepare_image(rv, train, i, maps[path[:-4]], proposal_set.of(path), settings, rng)[0]
                  for i, path in enumerate(train.paths)]
        model.regression = fit_regression(images, len(train.class_names), rv, settings)
        record({"step": "regression", "model": a.model, "fold": a.fold, "variant": variant,
                **test_variants(model, rv, test, maps, proposal_set)})


if __name__ == "__main__":
    main()
