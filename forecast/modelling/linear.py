"""Sign-constrained ridge regression: the linear base under the LightGBM trees, and the
spread model of the P10/P90 bands.

Trees cannot extrapolate: a model trained on a month of small rises predicts at most the
largest change it has seen. A linear model of the level change on a physically motivated
subset of features (recent level changes, rain sums, API, forecast rain, upstream changes)
does extrapolate, so the boosters are started from it and learn only the residual.

``fit_nonneg_ridge`` solves weighted ridge regression on standardised columns with some
coefficients constrained to be >= 0 (rain: "more rain never lowers the forecast"). It works on
the p x p normal equations (Cholesky factor handed to ``scipy.optimize.nnls``), so the cost is
one pass over the rows whatever their number; free-sign coefficients are split into a
positive and a negative part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from forecast.features import FC_RAIN_FEATURES, LEVEL_CHANGE_H, UP_PREFIX

# past rain sums used by the linear base (longer sums add nothing the API does not carry)
LINEAR_RAIN: Final = ("rain_1h", "rain_3h", "rain_6h", "api")
LINEAR_LEVEL: Final = tuple(f"d_level_{k}h" for k in LEVEL_CHANGE_H)


def linear_columns(features: Sequence[str], lead: int) -> list[str]:
    """Columns of the linear base for ``lead`` (h) among ``features``: level changes, past rain
    sums and API, forecast rain up to the lead, and upstream changes (``d_up_*``)."""
    fc = set(FC_RAIN_FEATURES[:lead])
    keep = set(LINEAR_LEVEL) | set(LINEAR_RAIN) | fc
    return [f for f in features if f in keep or f.startswith("d_" + UP_PREFIX)]


def is_rain(column: str) -> bool:
    """Rain-like columns get non-negative coefficients (past, API or forecast rain)."""
    return column.startswith("rain_") or column == "api"


@dataclass(frozen=True)
class LinearFit:
    """``y ~ intercept + X[:, columns] @ coef``; NaN inputs are replaced by ``fill``."""

    columns: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    fill: np.ndarray

    def predict(self, A: np.ndarray) -> np.ndarray:
        """A: rows x ``columns`` (same order). Returns the prediction (units of y)."""
        A = np.where(np.isnan(A), self.fill, A)
        return np.asarray(A @ self.coef + self.intercept, dtype="float64")

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {"columns": list(self.columns), "coef": self.coef.tolist(),
                "intercept": self.intercept, "fill": self.fill.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> LinearFit:
        """Inverse of ``to_dict``."""
        return cls(tuple(str(c) for c in d["columns"]),  # type: ignore[attr-defined]
                   np.asarray(d["coef"], dtype="float64"), float(d["intercept"]),  # type: ignore[arg-type]
                   np.asarray(d["fill"], dtype="float64"))


def fit_nonneg_ridge(
    A: np.ndarray,
    y: np.ndarray,
    *,
    columns: Sequence[str],
    nonneg: np.ndarray,
    weights: np.ndarray | None = None,
    ridge: float = 0.1,
    intercept: bool = True,
) -> LinearFit:
    """Weighted ridge fit of ``y`` on the columns of ``A`` with ``coef[nonneg] >= 0``.

    Columns are standardised and the penalty is ``ridge * sum(w) * |b_std|^2``, so ``ridge``
    is scale-free (0.1 shrinks a coefficient whose column explains little noticeably). NaN
    inputs are filled with the column's mean (``fill``); rows with a NaN
    target must be removed by the caller. Without ``intercept`` the fit goes through 0.
    """
    n, p = A.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype="float64")
    present = ~np.isnan(A)
    cnt = present.sum(axis=0)
    # mean of the present values (0 for an all-NaN column)
    fill = np.where(cnt > 0, np.where(present, A, 0.0).sum(axis=0) / np.maximum(cnt, 1), 0.0)
    A = np.where(np.isnan(A), fill, A)
    sw = w.sum()
    mu = (w @ A) / sw if intercept else np.zeros(p)
    ym = float(w @ y / sw) if intercept else 0.0
    Z = A - mu
    sd = np.sqrt((w @ Z**2) / sw)
    sd = np.where(sd > 1e-12, sd, 1.0)
    Z /= sd
    G = (Z * w[:, None]).T @ Z + ridge * sw * np.eye(p)
    g = (Z * w[:, None]).T @ (y - ym)
    # min |Z b - y|^2_w + penalty  ==  min |L' b - L^-1 g|^2 with G = L L'
    L = np.linalg.cholesky(G)
    rhs = np.linalg.solve(L, g)
    M = L.T
    free = ~np.asarray(nonneg, dtype=bool)
    from scipy.optimize import nnls  # training only: forecasting processes skip SciPy

    c, _ = nnls(np.hstack([M, -M[:, free]]), rhs, maxiter=50 * max(p, 1))
    b = c[:p].copy()
    b[free] -= c[p:]
    coef = b / sd
    return LinearFit(tuple(columns), coef, ym - float(mu @ coef), fill)


@dataclass(frozen=True)
class StackedLinear:
    """Several ``LinearFit`` (e.g. one per lead) evaluated at once on a shared input matrix:
    ``predict(A)`` returns rows x fits. Columns absent from a fit have coefficient 0."""

    columns: tuple[str, ...]
    coef: np.ndarray      # columns x fits
    fill_coef: np.ndarray  # columns x fits: contribution of a NaN input (fill x coef)
    intercept: np.ndarray  # fits

    @classmethod
    def of(cls, fits: Sequence[LinearFit]) -> StackedLinear:
        """Stack fits over the union of their columns (first-seen order)."""
        cols = list(dict.fromkeys(c for f in fits for c in f.columns))
        pos = {c: i for i, c in enumerate(cols)}
        coef = np.zeros((len(cols), len(fits)))
        fill = np.zeros((len(cols), len(fits)))
        for j, f in enumerate(fits):
            rows = [pos[c] for c in f.columns]
            coef[rows, j] = f.coef
            fill[rows, j] = f.fill * f.coef
        return cls(tuple(cols), coef, fill, np.array([f.intercept for f in fits]))

    def predict(self, A: np.ndarray) -> np.ndarray:
        """A: rows x ``columns``. Same values as each fit's ``predict`` (NaN -> its fill)."""
        nan = np.isnan(A)
        return np.asarray(np.where(nan, 0.0, A) @ self.coef + nan @ self.fill_coef
                          + self.intercept, dtype="float64")
