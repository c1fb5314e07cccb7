"""Object detection on the shared VOC 2007 sample (issue 21): accuracy and speed of sppfeat's
detectors, reproducibly.

    python benchmarks/detection.py proposals          # selective search on the 1,700 images (resumable)
    python benchmarks/detection.py maps               # conv maps at the detection scale, cached on disk
    python benchmarks/detection.py accuracy [--train-n N] [--levels 2,1] [--cv 3] ...
    python benchmarks/detection.py speed [--n 10]     # seconds per stage; SPP-net's way vs R-CNN's way

Train on the 1,500 `train` images, test on the 200 `val` images (and/or 3-fold CV inside `train`);
11-point AP by the devkit's rules on the official boxes (difficult flags included). Results are
appended to bench-out/detection/results.jsonl as they are measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sppfeat.config import DETECTION_DEFAULTS  # noqa: E402
from sppfeat.data.boxes import read_boxes  # noqa: E402
from sppfeat.detection.maps import ImageMap, RegionVectors  # noqa: E402

VOC = Path(__file__).resolve().parents[2] / "shared/data/voc2007-sample/VOCdevkit/VOC2007"
OUT = Path("bench-out/detection")


def split_ids(name: str) -> list[str]:
    return (VOC / "ImageSets/Main" / f"{name}.txt").read_text().split()


def map_cache(scale: int) -> Path:
    return OUT / f"maps-{scale}.h5"


def compute_maps(scale: int) -> None:
    """Every image's conv map at `scale` into bench-out (resumable: images already there are kept)."""
    rv = RegionVectors(DETECTION_DEFAULTS.replace(scales=(scale,)), "cpu")
    ids = split_ids("train") + split_ids("val")
    start = time.monotonic()
    with h5py.File(map_cache(scale), "a") as f:
        todo = [i for i in ids if i not in f]
        for n, image_id in enumerate(todo):
            m = rv.image_map(str(VOC / "JPEGImages" / f"{image_id}.jpg"))
            d = f.create_dataset(image_id, data=m.fmap.numpy())
            d.attrs.update(input_size=m.input_size, original_size=m.original_size, stored_size=m.stored_size,
                           orientation=m.orientation)
            if n % 100 == 0:
                print(f"{n}/{len(todo)} maps, {(time.monotonic() - start) / max(n, 1):.2f} s each", flush=True)
    print(f"maps done: {len(todo)} in {time.monotonic() - start:.0f} s", flush=True)


def load_maps(scale: int, ids: list[str]) -> dict[str, ImageMap]:
    out = {}
    with h5py.File(map_cache(scale), "r") as f:
        for image_id in ids:
            d = f[image_id]
            out[image_id] = ImageMap(torch.from_numpy(d[()]), tuple(d.attrs["input_size"]),
                                     tuple(d.attrs["original_size"]), tuple(d.attrs["stored_size"]),
                                     int(d.attrs["orientation"]))
    return out


def record(result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "results.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("proposals", "maps", "accuracy", "speed"))
    parser.add_argument("--scale", type=int, default=480)
    args, rest = parser.parse_known_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.step == "proposals":
        from sppfeat.detection.proposals import proposals

        r = proposals(VOC / "JPEGImages", OUT / "proposals.h5", resume=True, quiet=True)
        record({"step": "proposals", "images": r.n_images, "boxes": r.n_boxes, "skipped": r.n_skipped,
                "seconds": round(r.seconds, 1)})
    elif args.step == "maps":
        compute_maps(args.scale)


if __name__ == "__main__":
    main()
