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
  (``mie_rain_factor``), as the real climate does;
* a ``ForcedStorm`` (the demo's typhoon) can be placed by hand on top of the random storms; it
  draws from its own generator, so everything before it starts is unchanged.

All functions are pure: they take the time grid and a ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

from forecast.errors import SimulationError

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


_STORM_NAMES: Final = {s.name: s for s in STORM_TYPES}
FORCED_TYPHOON_MM_H: Final = 18.0
"""Regional event-mean intensity (mm/h) of a forced typhoon: the 98th percentile of the random
typhoons' gamma(shape 1.6, mean 5.5 mm/h), i.e. about a 1-in-25-years typhoon at ~2 a year.
Over the type's median 30 h that is ~540 mm regionally before the climate factor (up to 2.2 on
the 尾鷲 coast) and the gauge field (docs/simulation.md, "Forced storms"). Chosen so the demo
floods several rivers whatever the season: at 14 mm/h demos started in April, August or
October saw only 1-3 of the 38 rivers reach 氾濫注意."""
_MAX_FORCED_MM_H: Final = 25.0   # ~ the 2011 Talas (紀伊半島大水害) 72-h mean at 上北山
_MAX_FORCED_H: Final = 120.0


@dataclass(frozen=True)
class ForcedStorm:
    """A storm placed by hand on top of the random storm process (the demo's typhoon).

    ``start``: when its rain begins (timezone-aware); ``kind``: a ``STORM_TYPES`` name (its
    convective flag; default duration = its median); ``mean_mm_h``: the fixed regional
    event-mean intensity (mm/h, before the climate factor, the gauge field and the ~150 mm/h
    cap); ``duration_h``: hours (None: the type's median); ``peak``: where in the storm its
    bell-shaped profile peaks (0..1). No random draw of its own: the burst factor and the gauge
    field roughen it like any storm.
    """

    start: datetime
    kind: str = "typhoon"
    mean_mm_h: float = FORCED_TYPHOON_MM_H
    duration_h: float | None = None
    peak: float = 0.6

    def __post_init__(self) -> None:
        if self.kind not in _STORM_NAMES:
            raise SimulationError(f"forced storm kind {self.kind!r} is not one of "
                                  f"{sorted(_STORM_NAMES)}")
        if not 0.0 < self.mean_mm_h <= _MAX_FORCED_MM_H:
            raise SimulationError(f"forced storm mean_mm_h {self.mean_mm_h} must be in "
                                  f"(0, {_MAX_FORCED_MM_H}] mm/h (a regional multi-hour mean)")
        if not 1.0 <= self.hours <= _MAX_FORCED_H:
            raise SimulationError(f"forced storm duration_h {self.hours} must be 1-"
                                  f"{_MAX_FORCED_H:.0f} h")
        if not 0.0 <= self.peak <= 1.0:
            raise SimulationError(f"forced storm peak {self.peak} must be within 0..1")

    @property
    def hours(self) -> float:
        """The duration in hours (the type's median when ``duration_h`` is None)."""
        if self.duration_h is not None:
            return float(self.duration_h)
        return _STORM_NAMES[self.kind].duration_median_h

    @property
    def convective(self) -> bool:
        """Whether it rains as a convective storm (short-range gauge field)."""
        return _STORM_NAMES[self.kind].convective


@dataclass(frozen=True)
class Regional:
    """Regional storm process on the 10-minute grid.

    ``rate_mm`` is the regional mean rain (mm per 10 min) before gauge-level variation;
    ``convective`` is the share of that rain from convective storms (0..1), which selects the
    spatial correlation length of the gauge field; ``n_events`` counts storms by type.
    ``random_wet`` is None without forced storms; with them, the steps the random storms alone
    wet (the gauge field is drawn for those exactly as without forced storms).
    """

    rate_mm: FloatArray
    convective: FloatArray
    n_events: dict[str, int]
    random_wet: NDArray[np.bool_] | None = None


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


def _forced_rain(times_ns: NDArray[np.int64], forced: Sequence[tuple[int, ForcedStorm]],
                 n: int) -> tuple[FloatArray, FloatArray]:
    """Regional rain (mm per 10 min) of the forced storms, and its convective part.

    A storm starting at ``t`` rains from the step ending one step after ``t`` (the step
    covering ``(t, t + 10 min]``), for ``round(hours * 6)`` steps, clipped to the grid."""
    extra = np.zeros(n)
    conv = np.zeros(n)
    if n == 0:
        return extra, conv
    step = STEP_MIN * 60_000_000_000
    for start_ns, storm in forced:
        first = -(-(start_ns - int(times_ns[0])) // step) + 1
        m = max(1, round(storm.hours * 60 / STEP_MIN))
        lo, hi = max(first, 0), min(first + m, n)
        if lo >= hi:
            continue
        add = _profile(m, storm.peak)[lo - first: hi - first] * (
            storm.mean_mm_h * STEP_MIN / 60.0)
        extra[lo:hi] += add
        if storm.convective:
            conv[lo:hi] += add
    return extra, conv


def regional_process(times_ns: NDArray[np.int64], rng: np.random.Generator,
                     forced: Sequence[tuple[int, ForcedStorm]] = ()) -> Regional:
    """Simulate storms over the 10-minute grid ``times_ns`` (int64 ns UTC, evenly spaced).

    Returns the regional rain rate in mm per 10 minutes (shape ``(T,)``) and the convective share.
    ``forced``: (start as int64 ns UTC, storm) pairs added on top of the random storms; they use
    no random numbers, so the random storms (and ``rng``'s state afterwards) are the same with
    or without them.
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
    random_wet: NDArray[np.bool_] | None = None
    if forced:
        random_total = total.copy()
        extra, extra_conv = _forced_rain(times_ns, forced, n)
        total += extra       # adding 0.0 outside the storms leaves those steps bit-identical
        conv += extra_conv
    share = np.divide(conv, total, out=np.zeros(n), where=total > 0)
    # Intra-storm bursts: lognormal AR(1) factor, ~1 h memory, mean 1.
    burst = ar1(rng.standard_normal(n), rho=0.85)
    sigma_b = 0.5
    factor = np.exp(sigma_b * burst - 0.5 * sigma_b**2)
    total *= factor
    if forced:
        random_wet = random_total * factor > 0
    return Regional(rate_mm=total, convective=share, n_events=counts, random_wet=random_wet)


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


def _continue_ar1(field: FloatArray, is_new: NDArray[np.bool_], innovations: FloatArray,
                  rho: float) -> FloatArray:
    """Fill the rows ``is_new`` of ``field`` (T, G) by AR(1) steps from the row before each run
    of new rows (a stationary start if a run opens the series); ``innovations`` (one row per
    new row) are unit-variance. The other rows are kept as they are."""
    out = field.copy()
    new = np.flatnonzero(is_new)
    breaks = np.flatnonzero(np.diff(new) > 1) + 1
    scale = np.sqrt(1.0 - rho * rho)
    for run, eps in zip(np.split(new, breaks), np.split(innovations, breaks), strict=True):
        a = int(run[0])
        if a == 0:
            out[run] = ar1(eps, rho)
            continue
        zi = (rho * out[a - 1])[None, :]
        filtered, _ = lfilter([scale], [1.0, -rho], eps, axis=0, zi=zi)
        out[run] = filtered
    return out


def gauge_rain(regional: Regional, lat: FloatArray, lon: FloatArray,
               rng: np.random.Generator,
               rng_forced: np.random.Generator | None = None) -> FloatArray:
    """True rain (mm per 10 min) at each gauge, shape ``(T, G)``.

    ``rain = regional * factor(lat, lon) * exp(sigma z - sigma^2 / 2)`` where ``z`` mixes a
    slow and a fast large-scale field with a short-range convective field according to the
    convective share of the regional rain; each field has spatial correlation ``exp(-d/L)``.
    With forced storms (``regional.random_wet`` set), the field is drawn from ``rng`` for the
    steps the random storms wet, exactly as without them, and continued into the steps only
    the forced storms wet with draws from ``rng_forced``.
    """
    n = len(regional.rate_mm)
    g = len(lat)
    if regional.random_wet is None:
        wet = np.flatnonzero(regional.rate_mm > 0)
        is_new = np.zeros(len(wet), dtype=bool)
    else:
        if rng_forced is None:
            raise SimulationError("gauge_rain needs rng_forced when there are forced storms")
        union = regional.random_wet | (regional.rate_mm > 0)
        wet = np.flatnonzero(union)
        is_new = ~regional.random_wet[wet]
    out = np.zeros((n, g))
    if len(wet) == 0 or g == 0:
        return out
    n_random = len(wet) - int(is_new.sum())
    fields = []
    for length, rho in (LARGE_SLOW, LARGE_FAST, CONVECTIVE):
        chol = correlation_factor(lat, lon, length)
        eps = rng.standard_normal((n_random, g)) @ chol.T
        # The field evolves only through wet steps: dry spells do not decorrelate storms'
        # spatial pattern, which is harmless and saves most of the work.
        field = ar1(eps, rho) if n_random else np.zeros((0, g))
        if rng_forced is not None and is_new.any():
            full = np.zeros((len(wet), g))
            full[~is_new] = field
            new_eps = rng_forced.standard_normal((int(is_new.sum()), g)) @ chol.T
            field = _continue_ar1(full, is_new, new_eps, rho)
        fields.append(field)
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
