"""A small synthetic rain-runoff generator shared by the modelling tests (linear reservoir)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_hourly(hours: int = 2000, seed: int = 0, upstream: bool = True) -> pd.DataFrame:
    """River frame (hourly UTC index; level_m, rain_mm, optional up_dam) with storms."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2022-06-01", periods=hours, freq="h", tz="UTC", name="time")
    storm = rng.random(hours) < 0.02
    rain = np.zeros(hours)
    for i in np.flatnonzero(storm):
        dur = rng.integers(3, 12)
        rain[i:i + dur] += rng.gamma(2.0, 4.0, size=min(dur, hours - i))
    store = np.zeros(hours)
    up = np.zeros(hours)
    for t in range(1, hours):
        store[t] = 0.93 * store[t - 1] + 0.05 * rain[max(t - 2, 0)]
        up[t] = 0.9 * up[t - 1] + 2.0 * rain[max(t - 1, 0)]
    level = 1.0 + 0.8 * np.sqrt(store) + rng.normal(0, 0.005, hours)
    out = pd.DataFrame({"level_m": level, "rain_mm": rain}, index=idx)
    if upstream:
        out["up_dam"] = up
    return out
