"""Reference forecasts every model must beat: persistence, AR(2) on level, SARIMAX with rain.

All three return the same long forecast frame as ``LeadModels.predict``: ``issued_at,
horizon_h, level, q10, q50, q90`` (m) and ``model_variant``. AR(2) and SARIMAX bands are
Gaussian (P10/P90 = point -/+ 1.2816 sigma_h, sigma_h from the fitted innovation variance and
the AR psi-weights; exogenous-rain uncertainty ignored).

SARIMAX is a regression with AR(2) errors, ``level_t = b0 + b1 rain6_t + b2 rain24_t + u_t``,
``u_t = phi1 u_{t-1} + phi2 u_{t-2} + e_t`` (rain6/rain24 = catchment rain summed over the 6/24
hours ending at t, missing hours as 0). Parameters come from statsmodels' ``SARIMAX`` MLE on the
training hours; forecasting from every issue time at once is done here with the same equations
(vectorised; a test checks it against statsmodels' own forecast). Future rain inside the exog
follows the backtest's mode through the ``rain_fc_{h}h`` feature columns (absent = no rain).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.errors import InsufficientDataError, ModelError
from forecast.features import FC_RAIN_FEATURES, LEADS
from forecast.frames import LEVEL, RAIN

Z90 = 1.2815515655446004
SARIMAX_WINDOWS = (6, 24)
MAX_FIT_HOURS = 24 * 365


def _frame(issued: pd.DatetimeIndex, point: np.ndarray, sd: np.ndarray | None,
           leads: Sequence[int], variant: str) -> pd.DataFrame:
    """point: (n_issue, n_lead) levels; sd: same shape or None (no band)."""
    n, m = point.shape
    lo = point - Z90 * sd if sd is not None else np.full_like(point, np.nan)
    hi = point + Z90 * sd if sd is not None else np.full_like(point, np.nan)
    out = pd.DataFrame({
        "issued_at": issued.repeat(m),
        "horizon_h": np.tile(np.asarray(leads, dtype="int64"), n),
        "level": point.ravel(), "q10": lo.ravel(), "q50": point.ravel(), "q90": hi.ravel(),
        "model_variant": variant,
    })
    return out


def persistence(X: pd.DataFrame, leads: Sequence[int] = LEADS) -> pd.DataFrame:
    """Level at T carried forward to every lead (no band). X: feature rows with ``level_m``."""
    lv = X["level_m"].to_numpy(dtype="float64")
    point = np.repeat(lv[:, None], len(leads), axis=1)
    return _frame(pd.DatetimeIndex(X.index), point, None, leads, "persistence")


def persistence_banded(X: pd.DataFrame, level: pd.Series, leads: Sequence[int] = LEADS
                       ) -> pd.DataFrame:
    """Persistence with an empirical band: the level at T carried forward, P10/P90 from the
    10th/90th percentiles of the ``h``-hour level changes in ``level`` (an hourly series, e.g.
    the look-back before T). The last resort of the cycle when no model can run; without
    enough history (fewer than 24 changes at a lead) the band is the point."""
    lv = X["level_m"].to_numpy(dtype="float64")
    point = np.repeat(lv[:, None], len(leads), axis=1)
    vals = level.to_numpy(dtype="float64")
    lo = np.zeros(len(leads))
    hi = np.zeros(len(leads))
    for j, h in enumerate(leads):
        if len(vals) > h:
            d = vals[h:] - vals[:-h]
            d = d[np.isfinite(d)]
            if len(d) >= 24:
                lo[j], hi[j] = np.quantile(d, [0.1, 0.9])
    out = _frame(pd.DatetimeIndex(X.index), point, None, leads, "persistence")
    out["q10"] = (point + np.minimum(lo, 0.0)).ravel()
    out["q90"] = (point + np.maximum(hi, 0.0)).ravel()
    return out


def _psi_sd(phi: tuple[float, float], sigma2: float, leads: Sequence[int]) -> np.ndarray:
    """h-step forecast standard deviation of an AR(2) process."""
    hmax = max(leads)
    psi = np.zeros(hmax)
    psi[0] = 1.0
    for j in range(1, hmax):
        psi[j] = phi[0] * psi[j - 1] + (phi[1] * psi[j - 2] if j >= 2 else 0.0)
    var = sigma2 * np.cumsum(psi**2)
    return np.asarray(np.sqrt(np.array([var[h - 1] for h in leads])), dtype="float64")


def _ar_recursion(u0: np.ndarray, u1: np.ndarray, phi: tuple[float, float], c: float,
                  leads: Sequence[int]) -> np.ndarray:
    """u0 = value at T, u1 = at T-1; returns (n, len(leads)) forecasts of c + phi.u."""
    hmax = max(leads)
    prev2, prev1 = u1, u0
    steps = []
    for _ in range(hmax):
        nxt = c + phi[0] * prev1 + phi[1] * prev2
        steps.append(nxt)
        prev2, prev1 = prev1, nxt
    arr = np.column_stack(steps)
    return arr[:, [h - 1 for h in leads]]


@dataclass
class AR2:
    """AR(2) on hourly level: ``y_t = c + a1 y_{t-1} + a2 y_{t-2} + e_t`` (OLS fit)."""

    c: float = 0.0
    a1: float = 0.0
    a2: float = 0.0
    sigma2: float = 0.0

    def fit(self, hourly: pd.DataFrame) -> AR2:
        """Fit on a river frame (hourly ``level_m``); only rows with all three lags present."""
        y = hourly[LEVEL].to_numpy(dtype="float64")
        A = np.column_stack([np.ones(len(y) - 2), y[1:-1], y[:-2]])
        b = y[2:]
        ok = ~np.isnan(A).any(axis=1) & ~np.isnan(b)
        if ok.sum() < 10:
            raise InsufficientDataError("AR(2): fewer than 10 complete hourly triples")
        coef, *_ = np.linalg.lstsq(A[ok], b[ok], rcond=None)
        self.c, self.a1, self.a2 = (float(v) for v in coef)
        resid = b[ok] - A[ok] @ coef
        self.sigma2 = float(np.mean(resid**2))
        return self

    def predict(self, hourly: pd.DataFrame, issue_times: pd.DatetimeIndex,
                leads: Sequence[int] = LEADS) -> pd.DataFrame:
        """Forecasts from each issue time using level at T and T-1 (T-1 missing -> T)."""
        y = hourly[LEVEL].astype("float64")
        y0 = y.reindex(issue_times).to_numpy()
        y1 = y.shift(1).reindex(issue_times).to_numpy()
        y1 = np.where(np.isnan(y1), y0, y1)
        point = _ar_recursion(y0, y1, (self.a1, self.a2), self.c, leads)
        sd = np.tile(_psi_sd((self.a1, self.a2), self.sigma2, leads), (len(y0), 1))
        return _frame(issue_times, point, sd, leads, "ar2")


def _exog(rain: np.ndarray) -> np.ndarray:
    r = np.nan_to_num(rain, nan=0.0)
    cs = np.concatenate([[0.0], np.cumsum(r)])
    cols = [np.ones(len(r))]
    for w in SARIMAX_WINDOWS:
        idx = np.arange(1, len(r) + 1)
        cols.append(cs[idx] - cs[np.maximum(idx - w, 0)])
    return np.column_stack(cols)


@dataclass
class SarimaxRain:
    """Regression on rain with AR(2) errors (statsmodels SARIMAX order (2,0,0))."""

    beta: np.ndarray | None = None
    phi: tuple[float, float] = (0.0, 0.0)
    sigma2: float = 0.0

    def fit(self, hourly: pd.DataFrame) -> SarimaxRain:
        """MLE on the last ``MAX_FIT_HOURS`` hours of the river frame (NaN levels allowed)."""
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        h = hourly.iloc[-MAX_FIT_HOURS:]
        y = h[LEVEL].to_numpy(dtype="float64")
        if np.isfinite(y).sum() < 48:
            raise InsufficientDataError("SARIMAX: fewer than 48 observed hours")
        exog = _exog(h[RAIN].to_numpy(dtype="float64"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = SARIMAX(y, exog=exog, order=(2, 0, 0), trend="n")
                res = mod.fit(disp=False, maxiter=200)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise ModelError(f"SARIMAX fit failed: {exc}") from exc
        p = np.asarray(res.params, dtype="float64")
        k = exog.shape[1]
        self.beta = p[:k]
        self.phi = (float(p[k]), float(p[k + 1]))
        self.sigma2 = float(p[k + 2])
        return self

    def predict(self, hourly: pd.DataFrame, X: pd.DataFrame,
                leads: Sequence[int] = LEADS) -> pd.DataFrame:
        """Forecasts from each issue time in X's index (whole hours in ``hourly``).

        Future rain for (T, T+h] comes from X's ``rain_fc_{h}h`` columns when present
        (cumulative mm; archive or perfect mode), else zero (mode none).
        """
        if self.beta is None:
            raise ModelError("SarimaxRain.predict before fit")
        issued = pd.DatetimeIndex(X.index)
        rain = hourly[RAIN].to_numpy(dtype="float64")
        level = hourly[LEVEL].to_numpy(dtype="float64")
        pos = hourly.index.get_indexer(issued)
        if (pos < 0).any():
            raise ModelError("SarimaxRain.predict: issue times outside the river frame")
        ex = _exog(rain)
        u = level - ex @ self.beta
        u0 = u[pos]
        u1 = np.where(pos >= 1, u[np.maximum(pos - 1, 0)], np.nan)
        u1 = np.where(np.isnan(u1), u0, u1)
        hmax = max(leads)
        past = np.nan_to_num(rain, nan=0.0)
        cs = np.concatenate([[0.0], np.cumsum(past)])
        if all(c in X.columns for c in FC_RAIN_FEATURES[:hmax]):
            cum = X[list(FC_RAIN_FEATURES[:hmax])].to_numpy(dtype="float64")
            fut = np.nan_to_num(np.diff(np.column_stack([np.zeros(len(X)), cum]), axis=1))
        else:
            fut = np.zeros((len(X), hmax))
        fcum = np.cumsum(fut, axis=1)
        u_fc = _ar_recursion(u0, u1, self.phi, 0.0, range(1, hmax + 1))
        point = np.empty((len(X), hmax))
        for h in range(1, hmax + 1):
            xrow = [np.ones(len(X))]
            for w in SARIMAX_WINDOWS:
                # window (T+h-w, T+h]: observed part up to T, future part T+1..T+h
                n_fut = min(h, w)
                fut_part = fcum[:, h - 1] - (fcum[:, h - 1 - n_fut] if h - n_fut > 0 else 0.0)
                n_past = w - n_fut
                hi = pos + 1
                lo = np.maximum(hi - n_past, 0)
                xrow.append(fut_part + (cs[hi] - cs[lo]))
            point[:, h - 1] = np.column_stack(xrow) @ self.beta + u_fc[:, h - 1]
        point = point[:, [h - 1 for h in leads]]
        sd = np.tile(_psi_sd(self.phi, self.sigma2, leads), (len(X), 1))
        return _frame(issued, point, sd, leads, "sarimax")
