"""Simulated "JMA-like" catchment rain forecasts (product ``simulated_forecast``).

SIMULATED DATA. Every hour ``T`` a forecast is issued for leads ``k = 1..6`` h, each value the
catchment rain over the hour ending ``T + k``:

    value = (K_k * r)(T + k) * exp(sigma_k e_k - sigma_k^2 / 2),   sigma_k = 0.3 + 0.12 k

where ``r`` is the true hourly catchment rain, ``K_k`` a triangular smoothing kernel of half-width
``ceil(k / 2)`` hours (timing and placement errors grow with lead, so forecasts smear rain into
dry hours and miss peaks), and ``e_k`` standard normal errors correlated across leads of one
issue (AR(1), rho 0.7). Values are rounded to 0.1 mm. Real nowcasts are worse in ways this does
not copy: whole storms missed or invented, systematic under-forecast of convective peaks.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from forecast import frames
from forecast.simulate.rain import ar1

FloatArray = NDArray[np.float64]

PRODUCT: Final = "simulated_forecast"
LEADS_H: Final = (1, 2, 3, 4, 5, 6)


def _utc(ns: NDArray[np.int64]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC")


def _smooth(series: FloatArray, half_width: int) -> FloatArray:
    """Triangular smoothing along axis 0 (mass-preserving away from the ends)."""
    if half_width == 0:
        return series
    w = np.concatenate([np.arange(1, half_width + 2), np.arange(half_width, 0, -1)]).astype(float)
    w /= w.sum()
    padded = np.pad(series, ((half_width, half_width), (0, 0)), mode="edge")
    out = np.zeros_like(series)
    for j, wj in enumerate(w):
        out += wj * padded[j: j + len(series)]
    return out


def rain_forecasts(rain_h: FloatArray, hours_ns: NDArray[np.int64], river_ids: list[str],
                   issue_mask: NDArray[np.bool_], rng: np.random.Generator) -> pd.DataFrame:
    """Rain-vintage frame (``forecast.frames.RAIN_VINTAGE_COLUMNS``) of simulated forecasts.

    ``rain_h`` is true hourly catchment rain (mm), shape ``(H, R)``, at hour ends ``hours_ns``
    (int64 ns UTC); forecasts are issued at the hours where ``issue_mask`` is true and must have
    six more hours of truth after them. Columns: product, catchment_id (river id), issued_at,
    valid_at (end of the forecast hour, UTC), value (mm over that hour).
    """
    issue = np.flatnonzero(issue_mask)
    n_i, n_r = len(issue), rain_h.shape[1]
    eps = ar1(rng.standard_normal((len(LEADS_H), n_i * n_r)), 0.7).reshape(-1, n_i, n_r)
    values = np.empty((len(LEADS_H), n_i, n_r))
    for j, k in enumerate(LEADS_H):
        smooth = _smooth(rain_h, (k + 1) // 2)[issue + k]            # (n_i, R)
        sigma = 0.3 + 0.12 * k
        values[j] = np.round(smooth * np.exp(sigma * eps[j] - 0.5 * sigma**2), 1)
    # Lay rows out already sorted by (catchment, issued_at, valid_at): no 6M-row sort.
    hour_ns = 3_600_000_000_000
    leads = np.asarray(LEADS_H, dtype=np.int64)
    issued = np.tile(np.repeat(hours_ns[issue], len(leads)), n_r)
    valid = issued + np.tile(leads * hour_ns, n_i * n_r)
    df = pd.DataFrame({
        "product": PRODUCT,
        "catchment_id": np.repeat(np.asarray(river_ids, dtype=object), n_i * len(leads)),
        "issued_at": _utc(issued),
        "valid_at": _utc(valid),
        "value": values.transpose(2, 1, 0).ravel(),
    }, copy=False)
    return frames.rain_vintages(df)
