"""Seasonal stochastic rainfall: a regional storm process plus a correlated gauge field.

SIMULATED DATA. The process is a cheap caricature of Mie Prefecture's rain climate:

* storms arrive as a Poisson process whose rate depends on the day of the year, with four
  storm types (ordinary fronts/lows all year, 梅雨 Baiu fronts early June – mid July, summer
  afternoon convection Jul–Sep, rare multi-day typhoons Aug–Oct); winter is the dry season;
* each storm has a lognormal duration and a gamma-distributed mean intensity (mm/h) spread
  over its duration by a skewed bell profile, roughened by a lognormal AR(1) "burst" factor
  shared by the whole region (intra-storm variability at 10-minute resolution);
* each rain gauge multiplies the regional rate by ``exp(sigma z - sigma^2/2)``, where ``z`` is a
  Gaussian field that is correlated in time (AR(1)) and in space with correlation
  ``exp(-d / L)`` in the great-circle distance ``d`` between gauges (Cholesky factor of that
  matrix). Convective storms use a short ``L`` and a larger ``sigma``, so neighbouring gauges
  agree less during thunderstorms than during fronts and typhoons;
* inside Mie the south-east (尾鷲/熊野 coast) gets more rain than the Ise Bay plain
  (``mie_rain_factor``), as the real climate does.

All functions are pure: they take the time grid and a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

FloatArray = NDArray[np.float64]

STEP_MIN: Final = 10
"""The rain generator works at 10-minute resolution; values are mm per 10 minutes."""

_EARTH_RADIUS_KM: Final = 6371.0
_DRIZZLE_MM_H: Final = 0.2     # gauge rates below this are set to zero: intermittency in storms
_CAP_MM_10MIN: Final = 25.0    # soft ceiling (~150 mm/h): multiplicative tails must not exceed
#                                Japan's record intensities (153 mm/h hourly).


@dataclass(frozen=True)
class StormType:
    """One storm type: seasonal arrival rate and event statistics.

    ``rate`` is a function of day-of-year given by twelve monthly rates (events per day, taken at
    mid-month and interpolated), multiplied by ``window`` (first, last day of year) when set.
    """

    name: str
    monthly_rate_per_day: tuple[float, ...]
    duration_median_h: float
    duration_sigma: float           # lognormal sigma of the duration
    intensity_mean_mm_h: float      # mean of the event-mean intensity (gamma distribution)
    intensity_shape: float          # gamma shape: small = heavy tail
    convective: bool = False
    window: tuple[int, int] | None = None


STORM_TYPES: Final[tuple[StormType, ...]] = (
    # Fronts and extratropical lows: all year, fewest in mid-winter (Pacific-side dry season).
    StormType("frontal", (0.10, 0.12, 0.18, 0.20, 0.20, 0.16, 0.12, 0.10, 0.14, 0.16, 0.13, 0.09),
              duration_median_h=7.0, duration_sigma=0.6,
              intensity_mean_mm_h=2.3, intensity_shape=1.5),
    # 梅雨: a stationary front over central Japan, long and often heavy events.
    StormType("baiu", (0, 0, 0, 0, 0, 0.30, 0.30, 0, 0, 0, 0, 0),
              duration_median_h=11.0, duration_sigma=0.6,
              intensity_mean_mm_h=3.2, intensity_shape=1.0, window=(156, 201)),
    # Afternoon thunderstorms: short, intense, local.
    StormType("convective", (0, 0, 0, 0, 0.02, 0.05, 0.12, 0.14, 0.07, 0.01, 0, 0),
              duration_median_h=1.5, duration_sigma=0.5,
              intensity_mean_mm_h=10.0, intensity_shape=1.2, convective=True),
    # Typhoons (and autumn fronts fed by them): rare, multi-day, the big floods.
    StormType("typhoon", (0, 0, 0, 0, 0, 0.002, 0.010, 0.020, 0.024, 0.012, 0.001, 0),
              duration_median_h=30.0, duration_sigma=0.4,
              intensity_mean_mm_h=5.5, intensity_shape=1.6),
)


@dataclass(frozen=True)
class Regional:
    """Regional storm process on the 10-minute grid.

    ``rate_mm`` is the regional mean rain (mm per 10 min) before gauge-level variation;
    ``convective`` is the share of that rain from convective storms (0..1), which selects the
    spatial correlation length of the gauge field; ``n_events`` counts storms by type.
    """

    rate_mm: FloatArray
    convective: FloatArray
    n_events: dict[str, int]


def day_of_year(times_ns: NDArray[np.int64]) -> FloatArray:
    """Fractional day of year (0 = 1 January 00:00 UTC, 365-day years) of int64 ns times."""
    days = times_ns.astype(np.float64) / 86_400e9
    # 1970-01-01 is day 0 of a year; leap-year drift over decades is irrelevant here.
    return np.mod(days, 365.2425)


def seasonal_rate(storm: StormType, doy: FloatArray) -> FloatArray:
    """Arrival rate (events per day) of ``storm`` at fractional day of year ``doy``."""
    mid = (np.arange(12) + 0.5) * 365.2425 / 12.0
    rates = np.asarray(storm.monthly_rate_per_day, dtype=np.float64)
    # Periodic interpolation: wrap December/January.
    xp = np.concatenate([[mid[-1] - 365.2425], mid, [mid[0] + 365.2425]])
    fp = np.concatenate([[rates[-1]], rates, [rates[0]]])
    out = np.interp(doy, xp, fp)
    if storm.window is not None:
        lo, hi = storm.window
        out = np.where((doy >= lo) & (doy <= hi), out, 0.0)
    return np.asarray(out, dtype=np.float64)


def _profile(n: int, peak: float) -> FloatArray:
    """Skewed bell (beta-like) shape over ``n`` steps with its mode at ``peak`` (0..1), mean 1."""
    x = (np.arange(n) + 0.5) / n
    concentration = 4.0
    a = 1.0 + concentration * peak
    b = 1.0 + concentration * (1.0 - peak)
    shape = x ** (a - 1.0) * (1.0 - x) ** (b - 1.0)
    total = shape.sum()
    return shape * (n / total) if total > 0 else np.ones(n)


def regional_process(times_ns: NDArray[np.int64], rng: np.random.Generator) -> Regional:
    """Simulate storms over the 10-minute grid ``times_ns`` (int64 ns UTC, evenly spaced).

    Returns the regional rain rate in mm per 10 minutes (shape ``(T,)``) and the convective share.
    """
    n = len(times_ns)
    doy = day_of_year(times_ns)
    steps_per_day = 24 * 60 // STEP_MIN
    total = np.zeros(n)
    conv = np.zeros(n)
    counts: dict[str, int] = {}
    # Thunderstorms start in the afternoon (14-17 JST = 05-08 UTC): restrict their onsets.
    minute_of_day = (times_ns // 60_000_000_000) % 1440
    for storm in STORM_TYPES:
        rate = seasonal_rate(storm, doy) / steps_per_day          # events per step
        if storm.convective:
            rate = np.where((minute_of_day >= 300) & (minute_of_day < 480), rate * 8.0, 0.0)
        starts = np.flatnonzero(rng.random(n) < rate)
        counts[storm.name] = len(starts)
        if len(starts) == 0:
            continue
        dur_h = storm.duration_median_h * np.exp(storm.duration_sigma * rng.standard_normal(
            len(starts)))
        lengths = np.maximum(1, np.round(dur_h * 60 / STEP_MIN)).astype(np.int64)
        mean_mm_h = rng.gamma(storm.intensity_shape, storm.intensity_mean_mm_h
                              / storm.intensity_shape, len(starts))
        peaks = rng.beta(2.0, 2.0, len(starts))
        # One short loop per event (hundreds per year), vectorised inside: not a per-step loop.
        for s, m, i, p in zip(starts, lengths, mean_mm_h, peaks, strict=True):
            e = min(n, s + m)
            shape = _profile(int(m), float(p))[: e - s]
            add = shape * (i * STEP_MIN / 60.0)
            total[s:e] += add
            if storm.convective:
                conv[s:e] += add
    share = np.divide(conv, total, out=np.zeros(n), where=total > 0)
    # Intra-storm bursts: lognormal AR(1) factor, ~1 h memory, mean 1.
    burst = ar1(rng.standard_normal(n), rho=0.85)
    sigma_b = 0.5
    total *= np.exp(sigma_b * burst - 0.5 * sigma_b**2)
    return Regional(rate_mm=total, convective=share, n_events=counts)


def ar1(innovations: FloatArray, rho: float) -> FloatArray:
    """Unit-variance AR(1) filter along axis 0: ``z_t = rho z_{t-1} + sqrt(1-rho^2) e_t``.

    The first value is the first innovation, so the series is stationary from the start.
    """
    scale = np.sqrt(1.0 - rho * rho)
    first = innovations[:1]
    rest = innovations[1:] * scale
    zi_shape = (1, *innovations.shape[1:])
    zi = rho * first.reshape(zi_shape)
    filtered, _ = lfilter([1.0], [1.0, -rho], rest, axis=0, zi=zi)
    return np.concatenate([first, np.asarray(filtered, dtype=np.float64)], axis=0)


def distance_km(lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Great-circle distances (km) between all pairs of points; shape ``(G, G)``."""
    la = np.radians(lat)[:, None]
    lb = np.radians(lat)[None, :]
    dlon = np.radians(lon)[:, None] - np.radians(lon)[None, :]
    h = np.sin((la - lb) / 2) ** 2 + np.cos(la) * np.cos(lb) * np.sin(dlon / 2) ** 2
    return np.asarray(2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))),
                      dtype=np.float64)


def correlation_factor(lat: FloatArray, lon: FloatArray, length_km: float) -> FloatArray:
    """Lower Cholesky factor of the correlation matrix ``exp(-d / length_km)``."""
    corr = np.exp(-distance_km(lat, lon) / length_km)
    # Co-located gauges make the matrix singular; a tiny nugget keeps Cholesky defined.
    corr += np.eye(len(lat)) * 1e-6
    return np.linalg.cholesky(corr)


def mie_rain_factor(lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Climatological rain multiplier: 1 on the Ise Bay plain, up to ~2.2 on the 尾鷲 coast.

    Applied only inside a box around Mie (33.7–35.3N, 135.8–137.0E); 1 elsewhere.
    """
    inside = (lat >= 33.7) & (lat <= 35.3) & (lon >= 135.8) & (lon <= 137.0)
    south = np.clip((34.65 - lat) / 0.55, 0.0, 1.0)
    return np.where(inside, 1.0 + 1.2 * south, 1.0)


# Field parameters: (correlation length km, AR(1) rho per 10 min, share of variance).
LARGE_SLOW: Final = (60.0, 0.995)
LARGE_FAST: Final = (40.0, 0.95)
CONVECTIVE: Final = (8.0, 0.9)
SIGMA_STRATIFORM: Final = 0.55
SIGMA_CONVECTIVE: Final = 1.0


def gauge_rain(regional: Regional, lat: FloatArray, lon: FloatArray,
               rng: np.random.Generator) -> FloatArray:
    """True rain (mm per 10 min) at each gauge, shape ``(T, G)``.

    ``rain = regional * factor(lat, lon) * exp(sigma z - sigma^2 / 2)`` where ``z`` mixes a
    slow and a fast large-scale field with a short-range convective field according to the
    convective share of the regional rain; each field has spatial correlation ``exp(-d/L)``.
    """
    n = len(regional.rate_mm)
    g = len(lat)
    wet = np.flatnonzero(regional.rate_mm > 0)
    out = np.zeros((n, g))
    if len(wet) == 0 or g == 0:
        return out
    fields = []
    for length, rho in (LARGE_SLOW, LARGE_FAST, CONVECTIVE):
        chol = correlation_factor(lat, lon, length)
        eps = rng.standard_normal((len(wet), g)) @ chol.T
        # The field evolves only through wet steps: dry spells do not decorrelate storms'
        # spatial pattern, which is harmless and saves most of the work.
        fields.append(ar1(eps, rho))
    w = regional.convective[wet][:, None]
    z_large = np.sqrt(0.5) * (fields[0] + fields[1])
    z = np.sqrt(1.0 - w) * z_large + np.sqrt(w) * fields[2]
    sigma = SIGMA_STRATIFORM + (SIGMA_CONVECTIVE - SIGMA_STRATIFORM) * w
    factor = mie_rain_factor(lat, lon)[None, :]
    rain = regional.rate_mm[wet][:, None] * factor * np.exp(sigma * z - 0.5 * sigma**2)
    rain = _CAP_MM_10MIN * np.tanh(rain / _CAP_MM_10MIN)
    rain[rain < _DRIZZLE_MM_H * STEP_MIN / 60.0] = 0.0
    out[wet] = rain
    return out


def effective_sigma(lat: FloatArray, lon: FloatArray, weights: FloatArray) -> float:
    """Log-sd of a weighted gauge mean under the stratiform field (for calibration runs)."""
    length = LARGE_FAST[0]
    corr = np.exp(-distance_km(lat, lon) / length)
    var = float(weights @ corr @ weights)
    return SIGMA_STRATIFORM * float(np.sqrt(max(var, 0.0)))


def hourly(ten_minute: FloatArray) -> FloatArray:
    """Sum a 10-minute series (axis 0, length a multiple of 6) into hourly totals."""
    t = ten_minute.shape[0] // 6
    out = ten_minute[: t * 6].reshape((t, 6, *ten_minute.shape[1:])).sum(axis=1)
    return np.asarray(out, dtype=np.float64)
