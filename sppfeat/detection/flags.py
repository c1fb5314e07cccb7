"""A W×K boolean matrix kept in bits (a training image's per-window, per-class flags: 2,000
windows × 20 classes take 5 KB instead of 40 KB, which a few thousand images would multiply)."""

from __future__ import annotations

import numpy as np


class Flags:
    """W×K booleans, one bit each. np.asarray(flags) gives them all as a W×K bool array."""

    def __init__(self, values: np.ndarray):
        values = np.asarray(values, dtype=bool)
        if values.ndim != 2:
            raise ValueError(f"flags must be W×K, got shape {values.shape}")
        self.shape = values.shape
        self.bits = np.packbits(values, axis=1)

    @classmethod
    def zeros(cls, rows: int, columns: int) -> "Flags":
        return cls(np.zeros((rows, columns), bool))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self.rows(slice(None))
        return values if dtype is None else values.astype(dtype)

    def rows(self, index) -> np.ndarray:
        """The flags of the rows `index` (indices, mask or slice), len×K bool."""
        return np.unpackbits(self.bits[index], axis=1, count=self.shape[1]).view(bool)

    def set(self, index, values: np.ndarray) -> None:
        """rows[index] |= values (len×K bool); `index`: distinct row indices."""
        self.bits[index] |= np.packbits(np.asarray(values, bool), axis=1)
