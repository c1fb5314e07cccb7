"""How far the GPU default's vectors are from the exact float32 ones, per image, on the CPU:
bucketed shapes and bfloat16 autocast, each alone and together.

    python benchmarks/gpu_numerics.py --n 500

On N Caltech 101 images (spread over every class), prints the cosine between each variant's vector
and the exact float32 vector of the same image: minimum, 1st percentile, median.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sppfeat import ExtractionConfig, describe

sys.path.insert(0, str(Path(__file__).parent))
from throughput import CALTECH, pick_images  # noqa: E402

VARIANTS = {"bucketed, float32": dict(shapes="bucketed", compute="float32"),
            "exact, bfloat16": dict(shapes="exact", compute="bfloat16"),
            "bucketed, bfloat16 (GPU default)": dict(shapes="bucketed", compute="bfloat16")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(CALTECH))
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    paths = [str(p) for p in pick_images(Path(args.images), args.n)]
    exact = describe(paths, ExtractionConfig(shapes="exact", compute="float32"), device="cpu")
    print(f"{len(paths)} images of {args.images}; cosine to the exact float32 vector of each image\n")
    print("| variant | min | 1st pct. | median |\n|---|---|---|---|")
    for name, settings in VARIANTS.items():
        vectors = describe(paths, ExtractionConfig(**settings), device="cpu")
        cosine = (vectors * exact).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(exact, axis=1))
        print(f"| {name} | {cosine.min():.4f} | {np.percentile(cosine, 1):.4f} | {np.median(cosine):.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
