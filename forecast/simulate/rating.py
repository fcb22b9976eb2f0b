"""Rating curves and their calibration against the catalogue's threshold ladder.

SIMULATED DATA. Stage follows discharge through ``Q = a (h - h0)^b`` (h in metres at the gauge,
Q in m³/s). The curve is chosen so that each river's catalogue thresholds are crossed about as
often as they are in practice:

    standby 水防団待機   ~4 times a year      caution 氾濫注意   ~once a year
    evacuation 避難判断 ~once in 2.5 years   danger 氾濫危険    ~once in 6 years

To find the discharges with those crossing rates, each river's tank model is run over
``CAL_YEARS`` independent synthetic years with a fixed calibration seed (so a river's rating
does not depend on the simulation window, the user's seed, or the other rivers in the
catalogue). Peaks over a high base flow give the empirical crossing rate; rarer levels use an
exponential tail fitted to the largest peaks.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
from numpy.typing import NDArray

from forecast.catalogue import River
from forecast.simulate import rain, runoff

FloatArray = NDArray[np.float64]

TARGET_RATE_PER_YEAR: Final[dict[str, float]] = {
    "standby_m": 4.0, "caution_m": 1.0, "evacuation_m": 0.4, "danger_m": 1.0 / 6.0,
}
START_LEVEL_RATE: Final = 8.0       # crisis gauges wake up a few more times than standby
CAL_YEARS: Final = 12
CAL_SEED: Final = 20_240_601
_SPINUP_DAYS: Final = 60
_B_RANGE: Final = (1.3, 3.5)
_CAL_T0: Final = int(np.datetime64("2001-11-02T00:00", "ns").astype(np.int64))
_DEPTH_RANGE_M: Final = (0.3, 8.0)   # plausible flow depth at the lowest anchor


@dataclass(frozen=True)
class RatingCurve:
    """``Q = a (h - h0)^b``: ``a`` (m³/s per m^b), ``b`` (-), ``h0`` (m, zero-flow stage)."""

    a: float
    b: float
    h0: float

    def stage(self, q_m3s: FloatArray) -> FloatArray:
        """Stage (m) for discharge (m³/s); negative discharge is treated as zero."""
        return self.h0 + (np.maximum(q_m3s, 0.0) / self.a) ** (1.0 / self.b)

    def discharge(self, h_m: FloatArray) -> FloatArray:
        """Discharge (m³/s) for stage (m); zero below ``h0``."""
        return self.a * np.maximum(h_m - self.h0, 0.0) ** self.b


def fit_rating(anchors: Sequence[tuple[float, float]], *, b: float | None = None,
               h0: float | None = None, a: float | None = None) -> RatingCurve:
    """Rating through (stage m, discharge m³/s) anchors, honouring any given parameter.

    Weighted least squares in log space (``log Q = log a + b log(h - h0)``) over a grid of
    zero-flow stages ``h0`` 0.3-8 m below the lowest anchor, with ``b`` kept within 1.3-3.5;
    the lowest and highest anchors weigh double (standby and danger matter most). A single
    anchor gets ``b = 2`` and ``h0`` 1.5 m below it.
    """
    pts = sorted(anchors)
    if a is not None and b is not None and h0 is not None:
        return RatingCurve(a, b, h0)
    hs = np.array([h for h, _ in pts])
    ys = np.log(np.array([q for _, q in pts]))
    wts = np.ones(len(pts))
    wts[0] = wts[-1] = 2.0
    wts /= wts.sum()
    z = np.array([h0]) if h0 is not None else hs[0] - np.geomspace(*_DEPTH_RANGE_M, 400)
    x = np.log(hs[None, :] - z[:, None])                        # (grid, anchors)
    if b is not None:
        bb = np.full(len(z), float(b))
    elif len(pts) < 2:
        bb = np.full(len(z), 2.0)
    else:
        xm = x @ wts
        ym = float(ys @ wts)
        sxx = ((x - xm[:, None]) ** 2) @ wts
        sxy = ((x - xm[:, None]) * (ys - ym)[None, :]) @ wts
        bb = np.clip(sxy / np.maximum(sxx, 1e-12), *_B_RANGE)
    log_a = (ys[None, :] - bb[:, None] * x) @ wts if a is None else np.full(len(z), np.log(a))
    err = ((ys[None, :] - log_a[:, None] - bb[:, None] * x) ** 2) @ wts
    if len(pts) < 2 and h0 is None:
        err = np.abs(hs[0] - z - 1.5)           # one anchor: prefer 1.5 m of flow depth
    k = int(np.argmin(err))
    return RatingCurve(float(np.exp(log_a[k])), float(bb[k]), float(z[k]))


@lru_cache(maxsize=1)
def _calibration_regional() -> tuple[rain.Regional, int, int]:
    """Regional 10-minute storm process for ``CAL_YEARS`` independent synthetic years, end to end.

    Every synthetic year runs 60 days of spin-up (from early November) and then 365 days; the
    years are concatenated into one long series. Returns it with the number of hours per year
    and of spin-up hours. Cached: it depends only on the fixed calibration seed.
    """
    n_hours = (_SPINUP_DAYS + 365) * 24
    times = _CAL_T0 + (np.arange(n_hours * 6, dtype=np.int64) + 1) * rain.STEP_MIN * 60_000_000_000
    seeds = np.random.SeedSequence(CAL_SEED).spawn(CAL_YEARS)
    years = [rain.regional_process(times, np.random.default_rng(s)) for s in seeds]
    joined = rain.Regional(rate_mm=np.concatenate([y.rate_mm for y in years]),
                           convective=np.concatenate([y.convective for y in years]),
                           n_events={})
    return joined, n_hours, _SPINUP_DAYS * 24


def _calibration_pet(n_hours: int) -> FloatArray:
    hours = _CAL_T0 + (np.arange(n_hours, dtype=np.int64) + 1) * 3_600_000_000_000
    return runoff.potential_et_mm_h(hours)


def calibration_flows(rivers: Sequence[River],
                      params: Sequence[Mapping[str, float]]) -> FloatArray:
    """Hourly discharge (m³/s) over the calibration years, shape ``(CAL_YEARS, T, R)``.

    Each river's catchment rain comes from the same gauge generator as the simulation
    (``rain.gauge_rain`` over its own rain gauges), with a river-specific fixed seed.
    """
    regional, n_hours, spin = _calibration_regional()
    cols = []
    for river, p in zip(rivers, params, strict=True):
        lat = np.array([g.lat for g in river.rain_gauges])
        lon = np.array([g.lon for g in river.rain_gauges])
        w = np.array([g.weight for g in river.rain_gauges])
        rng = np.random.default_rng([CAL_SEED, zlib.crc32(river.id.encode())])
        catch = rain.gauge_rain(regional, lat, lon, rng) @ w * p["rain_factor"]
        cols.append(rain.hourly(catch).reshape(CAL_YEARS, n_hours).T)     # (T, Y)
    rain_h = np.concatenate(cols, axis=1)          # (T, R * Y), river-major
    stacked = {k: np.repeat([p[k] for p in params], CAL_YEARS)
               for k in (*runoff.TANK_KEYS, "route_k_h")}
    run = runoff.run_tanks(rain_h, _calibration_pet(n_hours), stacked)
    area = np.repeat([r.catchment.area_km2 for r in rivers], CAL_YEARS)
    q = runoff.discharge_m3s(run.routed, area)[spin:]
    return q.reshape(len(q), len(rivers), CAL_YEARS).transpose(2, 0, 1)


_PEAK_CACHE: dict[str, FloatArray] = {}
_PEAK_CACHE_SIZE: Final = 512


def calibration_peaks(rivers: Sequence[River],
                      params: Sequence[Mapping[str, float]]) -> list[FloatArray]:
    """Event peaks (m³/s, descending) of each river's calibration run, memoised per river.

    The calibration depends only on the river's own entry and parameters, so repeated
    simulations of the same catalogue (tests, demos) skip it.
    """
    keys = [river.model_dump_json() + repr(sorted(p.items()))
            for river, p in zip(rivers, params, strict=True)]
    todo = [i for i, k in enumerate(keys) if k not in _PEAK_CACHE]
    if todo:
        flows = calibration_flows([rivers[i] for i in todo], [params[i] for i in todo])
        if len(_PEAK_CACHE) + len(todo) > _PEAK_CACHE_SIZE:
            _PEAK_CACHE.clear()
        for j, i in enumerate(todo):
            _PEAK_CACHE[keys[i]] = event_peaks(flows[:, :, j])
    return [_PEAK_CACHE[k] for k in keys]


def event_peaks(q_years: FloatArray) -> FloatArray:
    """Peaks of the runs above the 95th percentile, descending; input ``(years, T)``."""
    base = float(np.quantile(q_years, 0.95))
    x = np.concatenate([q_years, np.full((len(q_years), 1), -np.inf)], axis=1).ravel()
    above = np.concatenate([[False], x > base, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    if len(edges) == 0:
        return np.array([float(x.max())])
    peaks = np.maximum.reduceat(x, edges)[::2]
    return np.sort(peaks)[::-1]


def discharge_at_rate(peaks_desc: FloatArray, years: int, rate_per_year: float) -> float:
    """Discharge crossed ``rate_per_year`` times a year, from event peaks (descending).

    Empirical at rates of two a year and more; rarer levels follow an exponential tail fitted
    to the peaks above the two-a-year level.
    """
    n = len(peaks_desc)
    k_ref = int(min(n, max(3, round(2.0 * years))))
    q_ref = float(peaks_desc[k_ref - 1])
    rate_ref = k_ref / years
    if rate_per_year >= rate_ref:
        k = int(min(n, max(1, round(rate_per_year * years))))
        return float(peaks_desc[k - 1])
    scale = float(np.mean(peaks_desc[: k_ref - 1] - q_ref)) if k_ref > 1 else q_ref * 0.3
    return q_ref + max(scale, 1e-6) * float(np.log(rate_ref / rate_per_year))


def rating_for_river(river: River, params: Mapping[str, float],
                     peaks_desc: FloatArray) -> RatingCurve:
    """Rating curve for the primary gauge: catalogue thresholds at their target rates."""
    anchors = [(h, discharge_at_rate(peaks_desc, CAL_YEARS, TARGET_RATE_PER_YEAR[name]))
               for name, h in river.thresholds.ladder()]
    return fit_rating(anchors, b=params.get("rating_b"), h0=params.get("rating_h0"),
                      a=params.get("rating_a"))


def rating_for_secondary(start_m: float | None, overflow_m: float | None, fraction: float,
                         primary: RatingCurve, peaks_desc: FloatArray) -> RatingCurve:
    """Rating for a secondary gauge seeing ``fraction`` of the primary's discharge.

    Crisis gauges: the start level is reached ``START_LEVEL_RATE`` times a year and the overflow
    level (default start + 1.5 m) at the danger rate. Telemetry gauges: same channel shape as
    the primary, zero-flow stage 0.3 m.
    """
    if start_m is None:
        return RatingCurve(primary.a, primary.b, 0.3)
    top = overflow_m if overflow_m is not None else start_m + 1.5
    anchors = [
        (start_m, fraction * discharge_at_rate(peaks_desc, CAL_YEARS, START_LEVEL_RATE)),
        (top, fraction * discharge_at_rate(peaks_desc, CAL_YEARS,
                                           TARGET_RATE_PER_YEAR["danger_m"])),
    ]
    return fit_rating(anchors)
