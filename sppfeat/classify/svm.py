"""Linear SVMs for n ≪ d: the dual is solved on the n×n Gram matrix, all classes at once.

The problem is LinearSVC's default (liblinear): squared hinge loss, L2 penalty, the bias learned as
the weight of a constant feature 1 (so it is penalised too):

    min_w,b  ½(‖w‖² + b²) + C Σ_i max(0, 1 - y_i (w·x_i + b))²        (one problem per class)

solved by dual coordinate descent (Hsieh et al. 2008) over the kernel K' = X Xᵀ + 1. The Gram
matrix is computed once and shared by every class, every C and every cross-validation fold, which
is what makes C selection by cross-validation cheap when d = 64,000 and n = 3,060.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .metrics import mean_average_precision_11pt

DEFAULT_C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
C_LIMITS = (1e-4, 1e4)  # how far cross-validation extends the grid when the best C is on its edge
FIT_TOL = 1e-2  # stopping rule of the final fit: projected-gradient range of an epoch
CV_TOL = 1e-1  # the same, looser, for the many fits of C selection (they only rank the values of C)


def normalize_features(x: np.ndarray | torch.Tensor, power: float = 1.0) -> np.ndarray | torch.Tensor:
    """Signed power normalisation x -> sign(x)|x|^power, then L2 normalisation of each row.

    x: n×d float array or tensor; returns float32 n×d of the same kind (x is not modified).
    power = 1 is plain L2 normalisation (the paper's); 0.5 is the signed square root. Above 1, each
    row is first divided by its largest |x| (no change after the L2 step), so |x|^power ≤ 1 cannot
    overflow float32 however large the power (6^50 would); at or below 1 no power can overflow.
    """
    is_array = not isinstance(x, torch.Tensor)
    t = torch.from_numpy(np.asarray(x, dtype=np.float32)) if is_array else x
    out = t.to(torch.float32, copy=True)
    if power != 1.0 and out.numel() > 0:
        signed = not bool(out.amin() >= 0)  # ReLU features are not: no sign to restore
        if signed:
            out.abs_()
        if power > 1:
            out.div_(out.amax(dim=1, keepdim=True).clamp_min_(torch.finfo(torch.float32).tiny))
        if power == 0.5 and out.device.type == "cpu" and not out.requires_grad:
            np.sqrt(out.numpy(), out=out.numpy())  # torch's CPU sqrt is ~8x slower on zeros
        else:
            out.pow_(power)
        if signed:
            out.copysign_(t)
    out.div_(torch.linalg.vector_norm(out, dim=1, keepdim=True).clamp_min_(1e-12))
    return out.numpy() if is_array else out


def gram_matrix(x: np.ndarray) -> np.ndarray:
    """K' = X Xᵀ + 1 (n×n float64); the product is computed by torch in float32."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return (xt @ xt.T).double().numpy() + 1.0


def _targets_matrix(y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest ±1 targets K×n and the mask of examples used per class (K×n bool)."""
    if y.ndim == 1:
        signs = np.where(y[None, :] == np.arange(n_classes)[:, None], 1.0, -1.0)
        return signs, np.ones_like(signs, dtype=bool)
    signs = np.where(y.T > 0, 1.0, -1.0)
    return signs, y.T != 0  # multi-label: 0 (difficult) is left out of training


def dual_coordinate_descent(gram: np.ndarray, signs: np.ndarray, mask: np.ndarray, C: float,
                            tol: float = FIT_TOL, max_epochs: int = 1000, seed: int = 0,
                            alpha: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Solve the L2-loss SVM dual for K classes at once.

    gram: n×n (K' with the bias column); signs: K×n ±1; mask: K×n bool (False = not in the
    problem of that class); alpha: K×n warm start. Returns (alpha K×n, epochs run). Stops when
    the projected-gradient range of an epoch falls below `tol` for every class.
    """
    n_classes, n = signs.shape
    diag = 0.5 / C
    alpha = np.zeros((n_classes, n)) if alpha is None else np.where(mask, alpha, 0.0)
    f = (alpha * signs) @ gram  # K×n: current w·x_i (+b) of every class on every example
    q_diag = np.diag(gram) + diag
    rng = np.random.default_rng(seed)
    active = np.ones(n, dtype=bool)
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        pg_max = np.full(n_classes, -np.inf)
        pg_min = np.full(n_classes, np.inf)
        order = rng.permutation(np.flatnonzero(active))
        for i in order:
            y_i = signs[:, i]
            a_i = alpha[:, i]
            grad = y_i * f[:, i] - 1.0 + diag * a_i
            pg = np.where(a_i > 0, grad, np.minimum(grad, 0.0))
            pg = np.where(mask[:, i], pg, 0.0)
            np.maximum(pg_max, pg, out=pg_max)
            np.minimum(pg_min, pg, out=pg_min)
            moving = np.flatnonzero(np.abs(pg) > 1e-12)
            if moving.size == 0:
                # inactive for every class and pushed out of the margin: skip it until the end
                if np.all(a_i == 0) and np.all(grad[mask[:, i]] > 1.0):
                    active[i] = False
                continue
            new = np.maximum(a_i[moving] - grad[moving] / q_diag[i], 0.0)
            delta = new - a_i[moving]
            alpha[moving, i] = new
            f[moving] += (delta * y_i[moving])[:, None] * gram[i][None, :]
        if np.all(pg_max - pg_min < tol):
            if active.all():
                break
            active[:] = True  # final check over every example, as liblinear does after shrinking
    return alpha, epoch


class LinearSVM:
    """One-vs-rest (single-label) or independent per-class (multi-label) linear SVMs.

    Parameters: C (penalty), tol, max_epochs, seed.
    Fitted: coef_ K×d float32, intercept_ K, n_epochs_.
    ``fit(x, y)``: x n×d (already normalised), y n class indices in [0, K) or n×K targets in
    {1, -1, 0} (0 = left out). ``decision_function(x)``: n×K scores.
    """

    def __init__(self, C: float = 1.0, tol: float = FIT_TOL, max_epochs: int = 1000, seed: int = 0):
        self.C = C
        self.tol = tol
        self.max_epochs = max_epochs
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int | None = None, gram: np.ndarray | None = None):
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"x must be n×d and y of length n, got {x.shape} and {y.shape}")
        if n_classes is None:
            n_classes = y.shape[1] if y.ndim == 2 else int(y.max()) + 1
        gram = gram_matrix(x) if gram is None else gram
        alpha = self.fit_dual(gram, y, n_classes)
        self.coef_, self.intercept_ = self.primal(x, alpha, y, n_classes)
        return self

    def fit_dual(self, gram: np.ndarray, y: np.ndarray, n_classes: int, alpha=None) -> np.ndarray:
        signs, mask = _targets_matrix(np.asarray(y), n_classes)
        alpha, self.n_epochs_ = dual_coordinate_descent(gram, signs, mask, self.C, self.tol,
                                                        self.max_epochs, self.seed, alpha)
        return alpha

    @staticmethod
    def primal(x: np.ndarray, alpha: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """w = Σ α_i y_i x_i (K×d float32) and b = Σ α_i y_i (K)."""
        signs, _ = _targets_matrix(np.asarray(y), n_classes)
        beta = (alpha * signs).astype(np.float32)
        coef = (torch.from_numpy(beta) @ torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
        return coef, beta.sum(axis=1).astype(np.float64)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return decision_function(x, self.coef_, self.intercept_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Single-label: the class index with the highest score, n int."""
        return self.decision_function(x).argmax(axis=1)


def decision_function(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Scores of linear SVMs: x n×D (normalised), coef K×D, intercept K -> n×K float64."""
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    coef = torch.from_numpy(np.ascontiguousarray(coef, dtype=np.float32))
    return (x @ coef.T).double().numpy() + intercept


def kfold_indices(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Stratified folds: the examples of each class (or of each first positive class) dealt in turn."""
    key = y if y.ndim == 1 else np.where((y > 0).any(axis=1), (y > 0).argmax(axis=1), -1)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(key), dtype=np.int64)
    for value in np.unique(key):
        members = rng.permutation(np.flatnonzero(key == value))
        assignment[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    return [np.flatnonzero(assignment == k) for k in range(folds)]


def score(decision: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (single-label) or 11-point mAP (multi-label), as a fraction."""
    if y.ndim == 1:
        return float((decision.argmax(axis=1) == y).mean())
    return mean_average_precision_11pt(decision, y)


def ladder_step(c: float, up: bool) -> float:
    """The next value of the 1-3-10 ladder (…, 0.3, 1, 3, 10, …) above or below `c`."""
    k = math.floor(math.log10(c))
    ladder = [float(f"{m * 10.0 ** j:.12g}") for j in range(k - 1, k + 2) for m in (1, 3)]
    return min(v for v in ladder if v > c * 1.001) if up else max(v for v in ladder if v < c / 1.001)


def cross_validate_c(gram: np.ndarray, y: np.ndarray, n_classes: int, grid=DEFAULT_C_GRID, folds: int = 3,
                     seed: int = 0, tol: float = CV_TOL, limits=C_LIMITS) -> tuple[float, dict[float, float]]:
    """Choose C by stratified k-fold CV on the training Gram matrix (n×n); returns (best C, {C: score}).

    Ties go to the smaller C. When the best C is the largest value tried, or the smallest one and
    better than the next (not a tie), the grid grows by one ladder step that way (see
    :func:`ladder_step`) until the best is inside it or reaches `limits`.
    """
    scores = cv_scores(gram, y, n_classes, grid, folds, seed, tol)
    while True:
        tried = sorted(scores)
        best = max(tried, key=lambda c: scores[c])
        if best == tried[-1] and best < limits[1]:
            scores.update(cv_scores(gram, y, n_classes, [ladder_step(best, up=True)], folds, seed, tol))
        elif best == tried[0] and best > limits[0] and (len(tried) == 1 or scores[best] > scores[tried[1]]):
            scores.update(cv_scores(gram, y, n_classes, [ladder_step(best, up=False)], folds, seed, tol))
        else:
            return best, dict(sorted(scores.items()))


def cv_scores(gram: np.ndarray, y: np.ndarray, n_classes: int, cs, folds: int, seed: int,
              tol: float) -> dict[float, float]:
    """Mean held-out score of each C in `cs` over stratified `folds`; within a fold C runs from small
    to large, each warm-started from the previous C's solution."""
    split = kfold_indices(y, folds, seed)
    scores = {c: 0.0 for c in cs}
    for k, held_out in enumerate(split):
        train = np.concatenate([split[j] for j in range(folds) if j != k])
        sub_gram = gram[np.ix_(train, train)]
        cross = gram[np.ix_(held_out, train)]
        alpha = None
        signs, _ = _targets_matrix(y[train], n_classes)
        for c in sorted(cs):
            svm = LinearSVM(C=c, tol=tol, seed=seed)
            alpha = svm.fit_dual(sub_gram, y[train], n_classes, alpha)
            decision = cross @ (alpha * signs).T  # the gram already holds the +1 of the bias
            scores[c] += score(decision, y[held_out]) / folds
    return scores
