"""Caltech 101 accuracy of float16-stored rows against float32 on the same splits, C = 10 (the value
cross-validation picks for these features on every seed tried).

    python benchmarks/float16_accuracy.py CALTECH_FEATURES.h5 [SEEDS]
"""

import sys
import time

import numpy as np

from sppfeat import load_features
from sppfeat.classify.split import per_class_split
from sppfeat.classify.svm import LinearSVM, normalize_features
data = load_features(sys.argv[1])
x32 = data.features
for seed in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
    train, test = per_class_split(data.labels, 30, 50, seed, data.class_names)
    accs = []
    for name, x in (("float32", x32), ("float16", x32.astype(np.float16).astype(np.float32))):
        t = time.perf_counter()
        svm = LinearSVM(C=10.0, seed=seed).fit(normalize_features(x[train], 0.5), data.labels[train], len(data.class_names))
        acc = (svm.predict(normalize_features(x[test], 0.5)) == data.labels[test]).mean()
        accs.append(acc)
        print(f"seed {seed} {name}: accuracy {100 * acc:.2f} % ({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"seed {seed} difference float16 - float32: {100 * (accs[1] - accs[0]):+.2f} points", flush=True)
