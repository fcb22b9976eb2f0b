"""Conformal P10/P50/P90 bands around a point forecast of the level change (m; with the log
target transform of ``lgbm`` every change, residual and sigma here is in log units, and the
floor ``SIGMA_FLOOR_M`` is then a relative 0.2 %).

Quantile boosters (four per lead and variant) were slow and under-covered floods; the band
is now built from the point forecast's own errors (split-conformal, normalised scores):

* A **spread model** sigma(x) >= 0 predicts the size of the error from inputs known at the
  issue time: a constant, |recent level changes| and |upstream changes| for both sides, plus
  past and forecast rain for the *upper* side only. Coefficients are non-negative
  (``linear.fit_nonneg_ridge`` on |residual| of the training rows).
* **Calibration**: on a time-ordered calibration tail (rows the trees were not fitted on),
  the scores r / sigma give the multipliers k10 <= 0 <= k90 such that P10 = point + k10 *
  sigma_lo and P90 = point + k90 * sigma_up cover ``coverage`` of the tail, separately for
  high-water rows (current level >= the river's high-water level) and the rest; a regime
  with fewer than ``MIN_CAL_ROWS`` tail rows borrows the pooled multipliers.
  P50 = point + the regime's median residual, clipped into the band.
* **Non-crossing** by construction (k10 <= 0 <= k90, sigma >= a floor). **Monotone in rain**:
  sigma_lo does not read rain and sigma_up grows with it, so more rain never lowers any of
  P10/P50/P90 when the point forecast does not go down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from forecast.features import FC_RAIN_FEATURES, UP_PREFIX
from forecast.modelling.linear import LinearFit, StackedLinear, fit_nonneg_ridge

MIN_CAL_ROWS: Final = 20
SIGMA_FLOOR_M: Final = 0.002  # no band narrower than gauge resolution
_SPREAD_ABS: Final = ("d_level_1h", "d_level_3h")
_SPREAD_RAIN: Final = ("rain_3h",)


def spread_inputs(features: Sequence[str], lead: int, upper: bool) -> list[str]:
    """Inputs of sigma (``abs:`` = absolute value): level and upstream 1 h / 3 h changes; the
    upper side adds past 3 h rain and forecast rain over the lead."""
    out = [f"abs:{c}" for c in _SPREAD_ABS if c in features]
    out += [f"abs:{c}" for c in features if c.startswith("d_" + UP_PREFIX) and c.endswith("_1h")]
    if upper:
        out += [c for c in (*_SPREAD_RAIN, FC_RAIN_FEATURES[lead - 1]) if c in features]
    return out


def spread_matrix(arr: np.ndarray, col: Mapping[str, int], inputs: Sequence[str]) -> np.ndarray:
    """Rows x inputs matrix of the spread inputs from a feature array (NaN kept)."""
    cols = [np.abs(arr[:, col[c[4:]]]) if c.startswith("abs:") else arr[:, col[c]]
            for c in inputs]
    return np.column_stack(cols) if cols else np.empty((len(arr), 0))


def _conformal(scores: np.ndarray, q: float) -> float:
    """Finite-sample conformal quantile of ``scores`` at level q: the ceil((n+1)q)-th smallest
    for an upper quantile, the floor((n+1)q)-th for a lower one (clamped to the sample)."""
    s = np.sort(scores)
    n = len(s)
    k = int(np.ceil((n + 1) * q)) if q >= 0.5 else int(np.floor((n + 1) * q))
    return float(s[min(max(k, 1), n) - 1])


@dataclass(frozen=True)
class Band:
    """Spread models and per-regime multipliers (index 0 normal, 1 high water)."""

    lo: LinearFit
    up: LinearFit
    k_lo: tuple[float, float]
    k_up: tuple[float, float]
    shift: tuple[float, float]

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {"lo": self.lo.to_dict(), "up": self.up.to_dict(), "k_lo": list(self.k_lo),
                "k_up": list(self.k_up), "shift": list(self.shift)}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Band:
        """Inverse of ``to_dict``."""
        pair = {k: tuple(float(v) for v in d[k]) for k in ("k_lo", "k_up", "shift")}  # type: ignore[attr-defined]
        return cls(LinearFit.from_dict(d["lo"]), LinearFit.from_dict(d["up"]),  # type: ignore[arg-type]
                   pair["k_lo"], pair["k_up"], pair["shift"])  # type: ignore[arg-type]


def fit_band(
    arr: np.ndarray,
    col: Mapping[str, int],
    features: Sequence[str],
    lead: int,
    resid: np.ndarray,
    fit_rows: np.ndarray,
    cal_rows: np.ndarray,
    high: np.ndarray,
    coverage: float,
) -> Band:
    """Fit the spread models on ``fit_rows`` and calibrate the multipliers on ``cal_rows``.

    ``arr``: feature array (rows x ``features``, ``col`` maps names to columns); ``resid``:
    observed minus point change (m) per row; ``high``: the high-water regime per row.
    """
    def spread(upper: bool) -> LinearFit:
        inputs = spread_inputs(features, lead, upper)
        S = np.column_stack([np.ones(len(arr)), spread_matrix(arr, col, inputs)])
        return fit_nonneg_ridge(S[fit_rows], np.abs(resid[fit_rows]),
                                columns=["one", *inputs], nonneg=np.ones(S.shape[1], bool),
                                ridge=1e-3, intercept=False)

    def with_one(f: LinearFit) -> LinearFit:
        # fold the constant column into the intercept so predict() needs only the inputs
        return LinearFit(f.columns[1:], f.coef[1:], f.intercept + float(f.coef[0]), f.fill[1:])

    lo, up = with_one(spread(False)), with_one(spread(True))
    s_lo = np.maximum(lo.predict(spread_matrix(arr, col, lo.columns)), SIGMA_FLOOR_M)
    s_up = np.maximum(up.predict(spread_matrix(arr, col, up.columns)), SIGMA_FLOOR_M)
    a = (1.0 - coverage) / 2.0
    cal = cal_rows if cal_rows.sum() >= MIN_CAL_ROWS else fit_rows

    def regime(rows: np.ndarray) -> tuple[float, float, float]:
        r = resid[rows]
        return (min(0.0, _conformal(r / s_lo[rows], a)),
                max(0.0, _conformal(r / s_up[rows], 1.0 - a)), float(np.median(r)))

    pooled = regime(cal)
    parts = [regime(cal & m) if (cal & m).sum() >= MIN_CAL_ROWS else pooled
             for m in (~high, high)]
    return Band(lo, up, (parts[0][0], parts[1][0]), (parts[0][1], parts[1][1]),
                (parts[0][2], parts[1][2]))


@dataclass(frozen=True)
class StackedBand:
    """The bands of several leads applied at once (rows x leads arrays)."""

    lo: StackedLinear
    up: StackedLinear
    k_lo: np.ndarray   # 2 x leads (normal, high water)
    k_up: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, bands: Sequence[Band]) -> StackedBand:
        """Stack the bands of the leads, in order."""
        def arr(name: str) -> np.ndarray:
            return np.array([getattr(b, name) for b in bands], dtype="float64").T
        return cls(StackedLinear.of([b.lo for b in bands]), StackedLinear.of([b.up for b in bands]),
                   arr("k_lo"), arr("k_up"), arr("shift"))

    def apply(self, point: np.ndarray, arr: np.ndarray, col: Mapping[str, int],
              high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q10, q50, q90) changes (m), rows x leads, for point changes (rows x leads)."""
        s_lo = np.maximum(self.lo.predict(spread_matrix(arr, col, self.lo.columns)),
                          SIGMA_FLOOR_M)
        s_up = np.maximum(self.up.predict(spread_matrix(arr, col, self.up.columns)),
                          SIGMA_FLOOR_M)
        h = high.astype("int64")
        q10 = point + self.k_lo[h] * s_lo
        q90 = point + self.k_up[h] * s_up
        return q10, np.clip(point + self.shift[h], q10, q90), q90
