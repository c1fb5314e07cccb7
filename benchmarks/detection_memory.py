"""Training memory against the number of images (issue 27): peak RSS of `sppfeat train-detector`
on the sample's 1,500 `train` images and on 3,000 (each image a second time under another name,
its annotation and proposals copied), same settings; the growth must stay within 15 %.

    python benchmarks/detection.py proposals                      # once: bench-out/detection/proposals.h5
    python benchmarks/detection_memory.py --copies 1   # 1,500 images
    python benchmarks/detection_memory.py --copies 2   # 3,000 images (may run beside the first)

Each run is one process (`/usr/bin/time -v`, its "Maximum resident set size"), one core by default;
the record also keeps the peak so far after each mining round and the box regression (from the
log) and the model's mining rounds (cache sizes, negatives trimmed to the cache).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from detection import OUT, VOC, record, split_ids
from sppfeat.detection.model import load_detector
from sppfeat.detection.proposal_file import ProposalSet, read_proposals, write_proposals


def name(image_id: str, copy: int) -> str:
    return image_id if copy == 0 else f"{image_id}_{copy}"


def prepare(folder: Path, copies: int) -> None:
    """folder/images (links to the train JPEGs), folder/Annotations, folder/proposals.h5: `copies` of each."""
    if (folder / "proposals.h5").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    source = read_proposals(OUT / "proposals.h5")
    paths, boxes = [], []
    for image_id in split_ids("train"):
        xml = (VOC / "Annotations" / f"{image_id}.xml").read_text()
        for copy in range(copies):
            new = name(image_id, copy)
            (folder / "images" / f"{new}.jpg").symlink_to(VOC / "JPEGImages" / f"{image_id}.jpg")
            (folder / "Annotations" / f"{new}.xml").write_text(
                re.sub(r"<filename>[^<]*</filename>", f"<filename>{new}.jpg</filename>", xml))
            paths.append(f"{new}.jpg")
            boxes.append(source.of(f"{image_id}.jpg"))
    first = np.concatenate([[0], np.cumsum([len(b) for b in boxes])])
    write_proposals(folder / "proposals.h5", ProposalSet(paths, np.concatenate(boxes), first,
                                                         np.zeros((len(paths), 2), np.int32), None, source.settings))


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cores", type=int, default=1)
    p.add_argument("--tag", default="", help="suffix of the run's folder (a second run beside one going on)")
    a = p.parse_args()
    folder = OUT / f"memory-{a.copies}{a.tag}"
    prepare(folder, a.copies)
    model = folder / "detector.h5"
    code = commit()  # at the start: a commit made while the run goes on is not the code that ran
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "sppfeat", "train-detector", str(folder / "images"),
               str(folder / "Annotations"), str(model), "--proposals", str(folder / "proposals.h5"), "--no-head",
               "--rounds", str(a.rounds), "--cores", str(a.cores), "--overwrite"]
    start = time.monotonic()
    with open(folder / "train.log", "w") as log:  # written as it runs: the peak after each round is there
        run = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=log)
    stderr = (folder / "train.log").read_text()
    if run.returncode:
        sys.exit(f"train-detector failed ({run.returncode}); see {folder / 'train.log'}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    training = load_detector(model).training
    stages = dict(re.findall(r"detector (round \d+|box regression):.*peak memory ([\d.]+ \w+)", stderr))
    record({"step": "train_memory", "commit": code, "copies": a.copies, "images": training["n_images"], "rounds": a.rounds,
            "cores": a.cores, "peak_rss_kb": peak, "peak_after": stages, "seconds": round(time.monotonic() - start, 1),
            "initial_per_image": training["initial_per_image"], "mining": training["mining"]})


if __name__ == "__main__":
    main()
