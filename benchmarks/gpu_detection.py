"""The detection steps of benchmarks/gpu.py: train-detector (the fine-tuned head) and detect on VOC
2007 images of the shared sample, with their windows given, so that the GPU machine needs neither
the devkit nor selective search.

    pack: N `train` images, their XML and a windows file (path,x1,y1,x2,y2 from
          bench-out/detection/proposals.h5, `python benchmarks/detection.py proposals`)
          into DEST/voc/{images,Annotations,windows.csv}
    run:  train_detector  seconds of the whole training, of its conv maps and of each head epoch,
                          GPU memory peak
          detect          images/s of the whole call and seconds per stage per image
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOC = ROOT.parent / "shared" / "data" / "voc2007-sample" / "VOCdevkit" / "VOC2007"


def pack_voc(n: int, dest: Path) -> None:
    from sppfeat.detection.proposal_file import read_proposals

    found = read_proposals(ROOT / "bench-out" / "detection" / "proposals.h5")
    ids = (VOC / "ImageSets" / "Main" / "train.txt").read_text().split()[:n]
    for sub in ("images", "Annotations"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    with open(dest / "windows.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "x1", "y1", "x2", "y2"])
        for image_id in ids:
            shutil.copy(VOC / "JPEGImages" / f"{image_id}.jpg", dest / "images")
            shutil.copy(VOC / "Annotations" / f"{image_id}.xml", dest / "Annotations")
            writer.writerows([f"{image_id}.jpg", *(f"{v:.1f}" for v in w)] for w in found.of(f"{image_id}.jpg"))


def run_train_detector(voc: Path, model: Path, device, epochs: int) -> dict:
    """train_detector with the default head (`epochs` of them) on the packed images and windows."""
    import torch

    from sppfeat.detection.settings import HeadSettings
    from sppfeat.detection.training import train_detector

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = train_detector(voc / "images", voc / "Annotations", model, proposals=voc / "windows.csv",
                            head=HeadSettings(epochs=epochs), device=str(device), overwrite=True, quiet=True)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    epoch_seconds = [e["seconds"] for e in result.stats["epochs"]]
    return {"images": result.n_images, "seconds": result.seconds,
            "conv_maps_and_setup_s": result.seconds - sum(epoch_seconds),
            "head_epoch_s": sorted(epoch_seconds)[len(epoch_seconds) // 2], "epochs": len(epoch_seconds),
            "gpu_memory_peak_gib": peak}


def run_detect(voc: Path, model: Path, out: Path, device) -> dict:
    """detect with the trained model on the same images and windows."""
    from sppfeat.detection.inference import detect

    start = time.perf_counter()
    result = detect(model, voc / "images", out, proposals=voc / "windows.csv", device=str(device), overwrite=True,
                    quiet=True)
    wall = time.perf_counter() - start
    n = len(list((voc / "images").iterdir()))
    return {"images": n, "images_per_s": n / wall, "detections": len(result),
            **{f"{stage}_s_per_image": seconds / max(n, 1) for stage, seconds in result.stage_seconds.items()}}
