"""Quantile helpers for the LightGBM models: pinball loss and split-conformal calibration.

``pinball_objective`` / ``pinball_metric`` are a custom LightGBM objective and metric (used
because the built-in quantile objective refuses monotone constraints). ``conformal_adjust``
returns the CQR widening (m, negative = narrowing) that gives the target P10-P90 coverage on
high-water rows of a calibration set (all rows when fewer than ``MIN_CAL_ROWS`` are high water).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import lightgbm as lgb
import numpy as np

MIN_CAL_ROWS: Final = 20


def pinball_objective(alpha: float) -> Callable[[np.ndarray, lgb.Dataset],
                                                 tuple[np.ndarray, np.ndarray]]:
    """Pinball-loss gradient with unit hessian. LightGBM's built-in quantile objective refuses
    monotone constraints (it re-fits leaf values afterwards), so quantiles use this instead."""
    def fobj(preds: np.ndarray, data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        y = data.get_label()
        w = data.get_weight()
        grad = np.where(y < preds, 1.0 - alpha, -alpha)
        hess = np.ones_like(preds)
        if w is not None:
            grad, hess = grad * w, hess * w
        return grad, hess
    return fobj


def pinball_metric(alpha: float) -> Callable[[np.ndarray, lgb.Dataset],
                                             tuple[str, float, bool]]:
    """Weighted mean pinball loss, for early stopping (lower is better)."""
    def feval(preds: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        y = data.get_label()
        w = data.get_weight()
        d = y - preds
        loss = np.maximum(alpha * d, (alpha - 1.0) * d)
        wts = None if w is None else np.asarray(w, dtype="float64")
        return "pinball", float(np.average(loss, weights=wts)), False
    return feval


def conformal_adjust(qs: np.ndarray, y: np.ndarray, high: np.ndarray, coverage: float) -> float:
    """Split-conformal (CQR) band adjustment (m) on a calibration set."""
    use = high if high.sum() >= MIN_CAL_ROWS else np.ones(len(y), dtype=bool)
    if use.sum() < 5:
        return 0.0
    score = np.maximum(qs[use, 0] - y[use], y[use] - qs[use, 2])
    n = len(score)
    level = min(1.0, np.ceil((n + 1) * coverage) / n)
    return float(np.quantile(score, level, method="higher"))
