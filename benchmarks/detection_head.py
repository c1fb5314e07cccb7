"""The fine-tuned detection head on the shared VOC 2007 sample (issue 27): train it on cached conv
maps (`python benchmarks/detection.py proposals` and `maps` first), score it on the val images
and/or the held-out folds of 3-fold CV inside `train`, with and without its box regression and box
voting. Results are appended to bench-out/detection/results.jsonl.

    python benchmarks/detection_head.py [--head '{"epochs": 8}'] [--cv 3 --fold 0] [--no-val] [--tag T]
        [--hidden-svm '{"rounds": 2}']   # also the paper's SVMs on the head's last hidden layer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from detection import OUT, cv_folds, load_maps, record, sample, test_variants
from sppfeat.config import DETECTION_DEFAULTS
from detection_variants import HiddenVectors
from sppfeat.detection.finetune import fit_head
from sppfeat.detection.mining import fit_detector
from sppfeat.detection.maps import RegionVectors
from sppfeat.detection.model import DetectorModel, save_detector
from sppfeat.detection.settings import HeadSettings, TrainingSettings
from sppfeat.detection.training import prepare_head_image, prepare_image
from sppfeat.libc import return_large_blocks


def hidden_svms(head_model, train, maps, proposal_set, rv, settings: TrainingSettings):
    """The paper's scoring: SVMs with hard-negative mining on the head's last hidden layer."""
    hidden = HiddenVectors(rv, head_model.head)
    rng = np.random.default_rng(settings.seed)
    images = [prepare_image(hidden, train, i, maps[path[:-4]], proposal_set.of(path), settings, rng)[0]
              for i, path in enumerate(train.paths)]
    fitted = fit_detector(images, len(train.class_names), hidden, settings, quiet=True)
    return dataclasses.replace(head_model, coef=fitted.coef, intercept=fitted.intercept,
                               training={**head_model.training, "svm": dataclasses.asdict(settings),
                                         "mining": fitted.stats["mining"]})


def train_and_test(train, test, maps, proposal_set, rv, settings: HeadSettings, save, svm=None) -> dict:
    """Fit the head on the images of BoxSet `train`, score it on `test` (test_variants); svm:
    TrainingSettings of SVMs on its last hidden layer, scored too."""
    start = time.monotonic()
    images = [prepare_head_image(rv, train, i, maps[path[:-4]], proposal_set.of(path), settings)[0]
              for i, path in enumerate(train.paths)]
    head, stats = fit_head(images, len(train.class_names), rv, settings)
    trained = time.monotonic()
    model = DetectorModel(None, None, list(train.class_names), rv.config.to_record(), proposal_set.settings,
                          {"head": dataclasses.asdict(settings), **stats, "n_images": len(images)}, head=head)
    save_detector(save, model)
    out = {"train_images": len(train.paths), "test_images": len(test.paths), "epochs": stats["epochs"],
           "train_seconds": round(trained - start, 1)}
    out.update(test_variants(model, rv, test, maps, proposal_set))
    out["test_seconds"] = round(time.monotonic() - trained, 1)
    if svm is not None:
        with_svms = hidden_svms(model, train, maps, proposal_set, rv, svm)
        save_detector(save.with_name(save.stem + "-svm.h5"), with_svms)
        out["hidden_svm"] = test_variants(with_svms, rv, test, maps, proposal_set)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--head", default="{}", help="HeadSettings fields as JSON")
    p.add_argument("--cv", type=int, default=0, help="K-fold CV inside the training images (0 = none)")
    p.add_argument("--fold", type=int, action="append", help="with --cv: only these folds (repeatable)")
    p.add_argument("--no-val", action="store_true")
    p.add_argument("--train-n", type=int, default=0, help="first N train images (0 = all 1,500)")
    p.add_argument("--tag", default="")
    p.add_argument("--hidden-svm", help="also SVMs on the head's last hidden layer: TrainingSettings fields as JSON")
    a = p.parse_args()
    svm = TrainingSettings(**{"regression": False, **json.loads(a.hidden_svm)}) if a.hidden_svm else None
    return_large_blocks()
    settings = HeadSettings(**json.loads(a.head))
    train_ids, val_ids, subset, proposal_set = sample(a.train_n)
    maps = load_maps(DETECTION_DEFAULTS.scales[0], train_ids + ([] if a.no_val else val_ids))
    rv = RegionVectors(DETECTION_DEFAULTS, "cpu")
    base = {"step": "head", "tag": a.tag, "head": json.loads(a.head), "train_n": a.train_n,
            "threads": torch.get_num_threads()}
    if not a.no_val:
        record({**base, "test": "val", **train_and_test(subset(train_ids), subset(val_ids), maps, proposal_set, rv,
                                                          settings, OUT / f"head{a.tag}.h5", svm)})
    for k, (kept_ids, held_ids) in enumerate(cv_folds(train_ids, a.cv) if a.cv else []):
        if a.fold and k not in a.fold:
            continue
        record({**base, "test": f"cv{k}", **train_and_test(subset(kept_ids), subset(held_ids), maps, proposal_set,
                                                            rv, settings, OUT / f"head{a.tag}-cv{k}.h5", svm)})


if __name__ == "__main__":
    main()
