"""Multi-scale extraction decodes each file once, at the largest scale, and resizes it for the others;
this compares it with decoding the file once per scale (each at its own reduced JPEG DCT scale).

    python benchmarks/decode_once.py --n 300 --scales 224,128 224,160 224,288

For each scale set, on N Caltech 101 images (every 30th file): the cosine between the combined
vectors of the two ways (minimum, 1st percentile, median), the decodings per image, and the decode
time per image of each way (5 alternating pairs of passes, one process, one thread; the medians, and
the median of the pairs' ratios as the saving). Decoding once decodes again only for a scale whose
JPEG DCT reduction differs from the largest scale's (see sppfeat.data.decode.decode_pil).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from sppfeat import ExtractionConfig
from PIL import Image

from sppfeat.data.decode import decode_image, decode_scales, draft_factor
from sppfeat.features.descriptor import build_descriptor, combine_scales

ROOT = Path(__file__).resolve().parents[1]
CALTECH = ROOT.parent / "shared" / "data" / "caltech101" / "101_ObjectCategories"


def sample(images: Path, n: int) -> list[str]:
    files = sorted(str(p) for p in images.rglob("*.jpg"))
    return files[::30][:n]


def seconds_per_image(paths: list[str], decode) -> float:
    start = time.perf_counter()
    for path in paths:
        decode(path)
    return (time.perf_counter() - start) / len(paths)


def decodings(path: str, policies) -> int:
    """How many times decode_scales decodes `path` for `policies` (distinct JPEG DCT reductions)."""
    with Image.open(path) as im:
        if im.format != "JPEG":
            return 1
        sizes = [policy.target_size(im.height, im.width)[:2] for policy in policies]
        return len({draft_factor(im.size, (w, h)) for h, w in sizes})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(CALTECH))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--scales", nargs="+", default=["224,128", "224,160", "224,288"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = sample(Path(args.images), args.n)
    print(f"{len(paths)} images of {args.images}\n")
    print("| scales | min cosine | 1st pct. | median | decodings per image: per scale | once | "
          "ms per image: per scale | once | saved |")
    print("|---|---|---|---|---|---|---|---|---|")
    for text in args.scales:
        scales = tuple(int(s) for s in text.split(","))
        config = ExtractionConfig(scales=scales).resolved("folder", None, "cpu")
        policies = config.resize_policies()
        model, _, _ = build_descriptor(config, torch.device("cpu"))
        cosines = []
        with torch.inference_mode():
            for path in paths:
                once = [image.pixels for image in decode_scales(path, policies)]
                each = [decode_image(path, policy).pixels for policy in policies]
                a, b = (combine_scales([model(torch.from_numpy(p)[None])[0].numpy() for p in pixels], "max")
                        for pixels in (once, each))
                cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        pairs = [(seconds_per_image(paths, lambda p: [decode_image(p, policy) for policy in policies]),
                  seconds_per_image(paths, lambda p: decode_scales(p, policies))) for _ in range(5)]
        each_s, once_s = np.median(pairs, axis=0)
        saved = np.median([1 - once / each for each, once in pairs])
        c = np.array(cosines)
        count = np.mean([decodings(p, policies) for p in paths])
        print(f"| {text} | {c.min():.5f} | {np.percentile(c, 1):.5f} | {np.median(c):.5f} | {len(scales)} | {count:.2f} "
              f"| {1000 * each_s:.2f} | {1000 * once_s:.2f} | {100 * saved:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
