"""A linear SVM for far more examples than dimensions: the primal L2-regularised squared-hinge
loss (liblinear's default L2-loss SVM), minimised by L-BFGS with its gradient in closed form,
memory O(d) for the model beside the examples, which may come a block of rows at a time (RowBlocks:
e.g. 8-bit rows, QuantizedRows, never widened to float32 all at once; the dual solver of
classify/svm.py needs an n×n Gram matrix).

objective(w, b) = ½(‖w‖² + b²) + C · Σᵢ cᵢ · max(0, 1 − yᵢ(w·xᵢ + B·b))²

with yᵢ ∈ {−1, +1}, cᵢ = positive_weight for positives and 1 for negatives, and the bias learnt as
the weight b of a constant feature B (bias_scale, liblinear's -B); the intercept is B·b.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np
import torch

Block = tuple[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"]


class RowBlocks(Protocol):
    """n×d examples a block at a time: blocks() yields (rows m×d, scale m or None, offset m or None),
    meaning xᵢ = scaleᵢ · rowsᵢ + offsetᵢ (every value of the row), the same blocks in the same order on
    every call; a block may be overwritten by the next one."""

    def __len__(self) -> int: ...

    def blocks(self) -> Iterator[Block]: ...


class ArrayRows:
    """An n×d array as RowBlocks (one block, no copy)."""

    def __init__(self, x: np.ndarray):
        self.x = torch.from_numpy(np.ascontiguousarray(x))

    def __len__(self) -> int:
        return len(self.x)

    def blocks(self) -> Iterator[Block]:
        yield self.x, None, None


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes n×d uint8, low n, step n float32) of vectors n×d: v ≈ low + code · step with each row's
    own low and step (its range / 255; error at most step / 2, about 0.2 % of the row's range)."""
    vectors = np.asarray(vectors, np.float32)
    low = vectors.min(axis=1, keepdims=True)
    step = (vectors.max(axis=1, keepdims=True) - low) / 255
    step[step == 0] = 1
    return np.rint((vectors - low) / step).astype(np.uint8), low[:, 0], step[:, 0]


class QuantizedRows:
    """Rows as quantize() keeps them (codes n×d uint8, low n, step n) as RowBlocks: SIZE rows at a time
    widened to float32 (exact) in a small buffer, scale step, offset low: a quarter of a float32
    copy's memory, each pass about twice as slow (the widening costs as much as the product)."""

    SIZE = 64  # 4.6 MB of float32 at 17,920 values

    def __init__(self, codes: np.ndarray, low: np.ndarray, step: np.ndarray):
        self.codes = torch.from_numpy(codes)
        self.low = torch.from_numpy(np.asarray(low, np.float32))
        self.step = torch.from_numpy(np.asarray(step, np.float32))

    def __len__(self) -> int:
        return len(self.codes)

    def blocks(self) -> Iterator[Block]:
        wide = torch.empty(min(self.SIZE, len(self.codes)), self.codes.shape[1])
        for start in range(0, len(self.codes), self.SIZE):
            stop = min(start + self.SIZE, len(self.codes))
            yield wide[:stop - start].copy_(self.codes[start:stop]), self.step[start:stop], self.low[start:stop]


class StackedRows:
    """RowBlocks one after another (e.g. a class's positives, then its negatives)."""

    def __init__(self, *parts: RowBlocks):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def blocks(self) -> Iterator[Block]:
        for part in self.parts:
            yield from part.blocks()


def products(x: RowBlocks, w: torch.Tensor) -> torch.Tensor:
    """n values xᵢ·w of the rows x and a d vector w."""
    parts, total = [], w.sum()
    for rows, scale, offset in x.blocks():
        part = rows.to(w.dtype) @ w
        parts.append(part if scale is None else part.mul_(scale).add_(offset * total))
    return torch.cat(parts) if parts else w.new_zeros(0)


def transposed_products(x: RowBlocks, g: torch.Tensor) -> torch.Tensor:
    """d values Σᵢ gᵢ·xᵢ of the rows x and an n vector g."""
    out, at = None, 0
    for rows, scale, offset in x.blocks():
        part = g[at:at + len(rows)]
        at += len(rows)
        term = rows.to(g.dtype).T @ (part if scale is None else part * scale)
        if offset is not None:
            term += (part * offset).sum()
        out = term if out is None else out.add_(term)
    return out


class LinearSVM:
    """Binary linear SVM (scikit-learn style): fit(x, y n in {0, 1} or {−1, +1}) learns coef_
    (d float32) and intercept_ (float) from x n×d (an array, or RowBlocks); decision_function(x)
    -> n margins. tol: L-BFGS stops when every gradient entry is below tol times the largest at
    w = 0 (1e-6: the objective within ~0.05 % of liblinear's optimum on 20,000 window vectors; 1e-4
    stopped ~4x above it)."""

    def __init__(self, C: float = 1.0, positive_weight: float = 1.0, bias_scale: float = 10.0,
                 tol: float = 1e-6, max_iter: int = 1000):
        self.C, self.positive_weight, self.bias_scale = C, positive_weight, bias_scale
        self.tol, self.max_iter = tol, max_iter

    def _check(self, x: np.ndarray | RowBlocks, y: np.ndarray, dtype=np.float32) -> tuple[RowBlocks, torch.Tensor]:
        if not self.C > 0 or not self.positive_weight > 0:
            raise ValueError(f"C and positive_weight must be positive, got {self.C}, {self.positive_weight}")
        y = np.asarray(y)
        if not hasattr(x, "blocks"):
            x = np.asarray(x, dtype=dtype)
            if x.ndim != 2:
                raise ValueError(f"x must be n×d, got shape {x.shape}")
            x = ArrayRows(x)
        if y.shape != (len(x),):
            raise ValueError(f"y must be {len(x)} labels (one per row of x), got shape {y.shape}")
        signs = np.where(y > 0, 1.0, -1.0)
        if len(np.unique(signs)) < 2:
            raise ValueError("an SVM needs positive and negative examples")
        return x, torch.from_numpy(signs.astype(dtype))

    def _loss(self, x: RowBlocks, signs: torch.Tensor, w: torch.Tensor, gradient: bool = True):
        """(objective, its gradient d+1 or None) at w = (coef, b)."""
        weights = torch.where(signs > 0, self.positive_weight, 1.0).to(w.dtype)
        margins = (1 - signs * (products(x, w[:-1]) + self.bias_scale * w[-1])).clamp_(min=0)
        loss = 0.5 * (w @ w) + self.C * (weights * margins * margins).sum()  # in w's dtype, as L-BFGS's stops expect
        if not gradient:
            return float(loss), None
        g = -2 * self.C * weights * signs * margins
        return loss, torch.cat([w[:-1] + transposed_products(x, g), w[-1:] + self.bias_scale * g.sum()])

    def objective(self, x: np.ndarray | RowBlocks, y: np.ndarray) -> float:
        """The objective at the fitted (coef_, intercept_), in float64."""
        x, signs = self._check(x, y, np.float64)
        return self._loss(x, signs, torch.from_numpy(np.append(self.coef_, self.intercept_ / self.bias_scale)),
                          gradient=False)[0]

    def fit(self, x: np.ndarray | RowBlocks, y: np.ndarray,
            warm_start: tuple[np.ndarray, float] | None = None) -> "LinearSVM":
        """Minimise the objective from (0, 0), or from warm_start = (coef, intercept)."""
        x, signs = self._check(x, y)
        dim = next(iter(x.blocks()))[0].shape[1]
        w0 = np.zeros(dim + 1) if warm_start is None else np.append(warm_start[0], warm_start[1] / self.bias_scale)
        w = torch.tensor(w0, dtype=torch.float32, requires_grad=True)
        grad0 = self._loss(x, signs, torch.zeros(dim + 1))[1]
        optimiser = torch.optim.LBFGS([w], lr=1, max_iter=self.max_iter, history_size=20,
                                      tolerance_grad=self.tol * float(grad0.abs().max()), tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def closure():
            loss, w.grad = self._loss(x, signs, w.detach())
            return loss

        optimiser.step(closure)
        self.n_iter_ = optimiser.state[optimiser._params[0]].get("n_iter", 0)
        solution = w.detach().numpy().astype(np.float64)
        self.coef_ = solution[:-1].astype(np.float32)
        self.intercept_ = float(solution[-1] * self.bias_scale)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32) @ self.coef_ + np.float32(self.intercept_)
