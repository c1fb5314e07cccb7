"""The cache of hard negatives: their window vectors in 8 bits per value (solver.quantize), shared
by the classes, and each class's rows and margins."""

from __future__ import annotations

import numpy as np

from .solver import quantize


class NegativeStore:
    """The cached negatives' vectors, shared by the classes, and each class's rows.

    A row is kept in 8 bits per value, v ≈ low + code · step with the row's own low and step (its
    range / 255; error at most step / 2, about 0.2 % of the row's range): half of float16's bytes,
    1.8 GB for 100,000 rows of 17,920 values. Rows live in blocks of BLOCK rows, so that neither
    growing nor compacting ever holds two copies of the store. Each class's members come with their
    margins under the latest SVMs (member_scores), by which trim() keeps the hardest."""

    BLOCK = 4096

    def __init__(self, dim: int, n_classes: int):
        self.dim, self.n = dim, 0
        self.codes: list[np.ndarray | None] = []  # BLOCK×D uint8 per block
        self.scales: list[np.ndarray | None] = []  # BLOCK×2 float32 (low, step) per block
        self.members = [np.zeros(0, np.int64) for _ in range(n_classes)]
        self.member_scores = [np.zeros(0, np.float32) for _ in range(n_classes)]  # margins under the latest SVMs
        self.owner: list[tuple[int, int]] = []  # (image, window) of each row

    def _new_block(self) -> tuple[np.ndarray, np.ndarray]:
        return np.empty((self.BLOCK, self.dim), np.uint8), np.empty((self.BLOCK, 2), np.float32)

    def _by_block(self, rows: np.ndarray):
        """(block, mask of rows in it, offsets of those rows in the block) for each block of `rows`."""
        block, offset = np.divmod(np.asarray(rows, np.int64), self.BLOCK)
        for b in np.unique(block):
            mask = block == b
            yield b, mask, offset[mask]

    def _copy(self, rows: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> None:
        """Write the codes and (low, step) of `rows` into the first len(rows) rows of codes and scales."""
        for b, mask, offset in self._by_block(rows):
            at = np.flatnonzero(mask)
            codes[at], scales[at] = self.codes[b][offset], self.scales[b][offset]

    def add(self, vectors: np.ndarray, image: int, windows: np.ndarray) -> np.ndarray:
        """Append vectors (n×D) of `windows` of `image`; returns their row indices."""
        rows = np.arange(self.n, self.n + len(vectors))
        if len(rows) == 0:
            return rows
        while len(self.codes) * self.BLOCK < self.n + len(vectors):
            codes, scales = self._new_block()
            self.codes.append(codes)
            self.scales.append(scales)
        codes, low, step = quantize(vectors)
        for b, mask, offset in self._by_block(rows):
            self.codes[b][offset] = codes[mask]
            self.scales[b][offset] = np.column_stack([low, step])[mask]
        self.owner.extend((image, int(w)) for w in windows)
        self.n += len(vectors)
        return rows

    CHUNK = 256  # rows widened at a time (18 MB of float32 at 17,920 values)

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """len(rows)×D float32 vectors of `rows` (or written into `out`), widened CHUNK rows at a
        time straight into `out` (no temporaries the size of the result)."""
        out = np.empty((len(rows), self.dim), np.float32) if out is None else out
        codes, scales = np.empty((self.CHUNK, self.dim), np.uint8), np.empty((self.CHUNK, 2), np.float32)
        for start in range(0, len(rows), self.CHUNK):
            part = rows[start:start + self.CHUNK]
            self._copy(part, codes, scales)
            target = out[start:start + len(part)]
            np.multiply(codes[:len(part)], scales[:len(part), 1:], out=target)
            target += scales[:len(part), :1]
        return out

    def scores(self, rows: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
        """len(rows) margins x·coef + intercept of `rows`, CHUNK rows at a time (no copy of them all)."""
        out = np.empty(len(rows), np.float32)
        chunk = np.empty((self.CHUNK, self.dim), np.float32)
        for start in range(0, len(rows), self.CHUNK):
            part = rows[start:start + self.CHUNK]
            out[start:start + len(part)] = self.take(part, chunk[:len(part)]) @ coef + np.float32(intercept)
        return out

    def keep(self, k: int, mask: np.ndarray) -> None:
        """Keep the members of class k (and their scores) where `mask`."""
        self.members[k], self.member_scores[k] = self.members[k][mask], self.member_scores[k][mask]

    def trim(self, rows: int, images: list) -> int:
        """Drop the easiest memberships, below one margin for every class, so that `rows` rows
        are held by some class (more only where margins tie), and compact; returns how many rows went."""
        hardest = np.full(self.n, -np.inf, np.float32)
        for members, scores in zip(self.members, self.member_scores):
            np.maximum.at(hardest, members, scores)
        held = hardest[np.isfinite(hardest)]
        if len(held) <= rows:
            return 0
        margin = np.partition(held, len(held) - rows)[len(held) - rows] if rows else np.inf
        for k, scores in enumerate(self.member_scores):
            self.keep(k, scores >= margin)
        before = self.n
        self.compact(images)
        return before - self.n

    def compact(self, images: list) -> None:
        """Drop the rows no class holds any more (old blocks freed as soon as they are copied) and
        renumber the images' store_row (mining.TrainingImage)."""
        used = np.unique(np.concatenate(self.members)) if any(len(m) for m in self.members) else np.zeros(0, int)
        new_index = np.full(self.n, -1, np.int64)
        new_index[used] = np.arange(len(used))
        for image in images:
            stored = image.store_row >= 0
            image.store_row[stored] = new_index[image.store_row[stored]]
        self.members = [new_index[m] for m in self.members]
        codes, scales = [], []
        for start in range(0, len(used), self.BLOCK):
            chunk = used[start:start + self.BLOCK]
            block_codes, block_scales = self._new_block()
            self._copy(chunk, block_codes, block_scales)
            codes.append(block_codes)
            scales.append(block_scales)
            for b in range(int(chunk[-1]) // self.BLOCK):  # used is sorted: these old blocks are done
                self.codes[b] = self.scales[b] = None
        self.codes, self.scales = codes, scales
        self.owner = [self.owner[i] for i in used]
        self.n = len(used)
