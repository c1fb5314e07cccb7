"""Train/test splits, reproducible from a seed."""

from __future__ import annotations

import numpy as np


def per_class_split(labels: np.ndarray, train_per_class: int = 30, test_per_class: int = 50,
                    seed: int = 0, class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The Caltech 101 protocol: per class, `train_per_class` random images for training and up to
    `test_per_class` of the rest for testing (0 = all the rest). Returns sorted row indices.

    Rows labelled -1 are ignored. A class with no image left for testing raises ValueError.
    """
    if train_per_class < 1 or test_per_class < 0:
        raise ValueError(f"train_per_class={train_per_class} must be >= 1 and test_per_class={test_per_class} >= 0")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(labels[labels >= 0]):
        members = rng.permutation(np.flatnonzero(labels == k))
        if len(members) <= train_per_class:
            name = class_names[k] if class_names else str(k)
            raise ValueError(f"class {name} has {len(members)} images, needs more than "
                             f"train_per_class={train_per_class}")
        train.append(members[:train_per_class])
        rest = members[train_per_class:]
        test.append(rest[:test_per_class] if test_per_class else rest)
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_split(labels: np.ndarray, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per class, round(test_fraction · n) random images (at least 1 when n ≥ 2) go to the test set."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(labels[labels >= 0]):
        members = rng.permutation(np.flatnonzero(labels == k))
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members)))) if len(members) > 1 else 0
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
