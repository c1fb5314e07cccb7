"""Describing one image per call from Python: the function ``describe(path)``, which loads the
weights (hashing them) and builds the network on every call, against a ``Describer`` built once
and called as ``describer.describe(path)``.

    python benchmarks/describer.py --calls 10 --device cpu

Both ways describe the same demo photos (default settings unless --scale is given), in alternating
pairs of calls (function, then Describer) so that both see the same machine load; the building of
the Describer is timed once, apart. Prints calls per second of each way from the median seconds
per call, and the median of the pairs' ratios (function time / Describer time) as the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from sppfeat import Describer, ExtractionConfig, describe

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo_images"


def timed(call) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10, help="calls of each way (alternating pairs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", type=int, help="shorter side in pixels (default: the general 224)")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error(f"--calls must be >= 1, got {args.calls}")
    config = ExtractionConfig(scales=None if args.scale is None else (args.scale,))
    photos = sorted(DEMO.rglob("*.jpg"))
    build_seconds, describer = timed(lambda: Describer(config, device=args.device))
    describer.describe(photos[0])  # first-call costs (allocator, kernels) out of the pairs
    function_times, object_times = [], []
    for k in range(args.calls):
        photo = photos[k % len(photos)]
        seconds, by_function = timed(lambda: describe(photo, config, device=args.device))
        function_times.append(seconds)
        seconds, by_object = timed(lambda: describer.describe(photo))
        object_times.append(seconds)
        if not np.allclose(by_function, by_object, rtol=1e-5, atol=1e-6):
            raise SystemExit(f"the two ways give different vectors for {photo}")
    ratio = statistics.median(f / o for f, o in zip(function_times, object_times))
    print(f"{describer!r}, {args.calls} calls each, one image per call; Describer built in {build_seconds:.2f} s")
    for name, times in (("describe(path)", function_times), ("Describer.describe(path)", object_times)):
        median = statistics.median(times)
        print(f"  {name:26s} {1 / median:8.2f} calls/s  (median {median * 1000:7.1f} ms per call)")
    print(f"  speed-up (median of pair ratios): {ratio:.1f}x")


if __name__ == "__main__":
    main()
