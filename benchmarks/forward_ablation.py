"""What each CPU forward-pass choice is worth: EfficientNet-Lite0 + SPP on the demo photos at
shorter side 224, one image per forward pass, decoding excluded (images decoded beforehand).

    python benchmarks/forward_ablation.py [--reps 2]

Variants: batch norm unfused / folded; NCHW contiguous / channels-last input; 1 or 2 intra-op
threads; and two images in flight in two Python threads with one intra-op thread each (how
`sppfeat extract` shares the cores on the CPU; it runs them in worker processes, one image
per core). Prints images/s of each, measured in this one run.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from sppfeat.backbones import load_backbone
from sppfeat.data.decode import ResizePolicy, decode_image
from sppfeat.pyramid import spatial_pyramid_pool

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_images"


def inputs(channels_last: bool) -> list[torch.Tensor]:
    out = []
    for path in sorted(DEMO.rglob("*.jpg")):
        x = (torch.from_numpy(decode_image(str(path), ResizePolicy()).pixels).permute(2, 0, 1)[None].float() - 127) / 128
        out.append(x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format))
    return out


def rate(net, images, threads: int, parallel: int, reps: int) -> float:
    torch.set_num_threads(threads)

    def run(x):
        with torch.inference_mode():
            return spatial_pyramid_pool(net.forward_features(x), (6, 3, 2, 1))

    for x in images[:4]:
        run(x)
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(reps):
            list(pool.map(run, images))
    return reps * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    unfused = load_backbone("efficientnet_lite0").net
    fused = load_backbone("efficientnet_lite0").net.fuse()
    nchw, nhwc = inputs(False), inputs(True)
    rows = [
        ("unfused, NCHW, 1 thread", unfused, nchw, 1, 1),
        ("folded BN, NCHW, 1 thread", fused, nchw, 1, 1),
        ("folded BN, channels-last, 1 thread", fused, nhwc, 1, 1),
        ("unfused, NCHW, 2 threads (the plain loop)", unfused, nchw, 2, 1),
        ("folded BN, channels-last, 2 threads", fused, nhwc, 2, 1),
        ("folded BN, channels-last, 2 images at once x 1 thread", fused, nhwc, 1, 2),
    ]
    for label, net, images, threads, parallel in rows:
        print(f"{label:<56}{rate(net, images, threads, parallel, args.reps):7.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
