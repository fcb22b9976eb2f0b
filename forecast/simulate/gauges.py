"""What gauges report: noise, faults, crisis-gauge silence, tipping buckets and late data.

SIMULATED DATA. Given the true 10-minute stage (or rain) at one gauge, produce the readings the
telemetry system would deliver, each with its observation time (a grid index) and a delivery
delay (so ``received_at = time + delay >= time``):

* level gauges: AR(1) surface fluctuation (sd 1 cm) plus white sensor noise (3 mm), reported to
  the centimetre; occasional spikes (±0.3-2 m, one reading), stuck sensors (the last value
  repeated for 1-72 h) and gaps (no readings for 1 h to 5 days);
* crisis gauges (危機管理型水位計): every 10 minutes while the measured stage is at or above
  ``start_level_m``; below it one heartbeat reading a day at a gauge-specific minute;
* rain gauges: 0.5 mm tipping bucket (the remainder carries over, so totals are kept), gaps;
* delivery: normally a few minutes; during link outages the readings arrive together after the
  outage ends, hours late (more often for crisis gauges, which send over mobile networks).

The fault rates are per gauge-year and are documented in docs/simulation.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from forecast.simulate.rain import ar1

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

STEPS_PER_DAY: Final = 144
STEPS_PER_YEAR: Final = STEPS_PER_DAY * 365
TIP_MM: Final = 0.5


@dataclass(frozen=True)
class FaultRates:
    """Events per gauge-year, and typical durations (hours) where they apply."""

    spikes: float = 6.0
    stuck: float = 1.5
    gaps: float = 3.0
    late: float = 8.0
    gap_median_h: float = 8.0
    stuck_median_h: float = 6.0
    late_median_h: float = 3.0


TELEMETRY_RATES: Final = FaultRates()
CRISIS_RATES: Final = FaultRates(spikes=3.0, stuck=0.5, gaps=4.0, late=20.0)
RAIN_RATES: Final = FaultRates(spikes=0.0, stuck=0.0, gaps=2.0, late=4.0)


@dataclass(frozen=True)
class Readings:
    """Readings of one gauge: grid positions, values, and delivery delays in seconds."""

    index: IntArray
    value: FloatArray
    delay_s: IntArray


def _episodes(n: int, per_year: float, median_h: float, max_h: float,
              rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random [start, end) step intervals: Poisson count, lognormal durations (sigma 1)."""
    k = int(rng.poisson(per_year * n / STEPS_PER_YEAR))
    starts = rng.integers(0, max(n, 1), k)
    hours = np.clip(median_h * np.exp(rng.standard_normal(k)), 1.0, max_h)
    ends = np.minimum(n, starts + np.round(hours * 6).astype(np.int64))
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def _delays(n: int, rates: FaultRates, base_s: tuple[int, int],
            rng: np.random.Generator) -> IntArray:
    """Delivery delays (s): a few minutes normally, a batch after each outage otherwise."""
    delay = rng.integers(base_s[0], base_s[1], n).astype(np.int64)
    for s, e in _episodes(n, rates.late, rates.late_median_h, 48.0, rng):
        # Everything observed during the outage is delivered together shortly after it ends.
        flush = rng.integers(60, 1800)
        delay[s:e] = (e - np.arange(s, e)) * 600 + flush
    return delay


def level_readings(true_m: FloatArray, rng: np.random.Generator, *, crisis: bool = False,
                   start_level_m: float | None = None) -> Readings:
    """Readings (m) of one level gauge from its true 10-minute stage ``true_m`` (shape ``(T,)``).

    ``crisis`` selects the crisis-gauge reporting rule around ``start_level_m``.
    """
    n = len(true_m)
    rates = CRISIS_RATES if crisis else TELEMETRY_RATES
    measured = true_m + 0.01 * ar1(rng.standard_normal(n), 0.9) + 0.003 * rng.standard_normal(n)
    for s, e in _episodes(n, rates.stuck, rates.stuck_median_h, 72.0, rng):
        if s > 0:
            measured[s:e] = measured[s - 1]
    n_spikes = int(rng.poisson(rates.spikes * n / STEPS_PER_YEAR))
    at = rng.integers(0, max(n, 1), n_spikes)
    measured[at] += rng.choice([-1.0, 1.0], n_spikes) * rng.uniform(0.3, 2.0, n_spikes)
    measured = np.round(measured, 2)
    keep = np.ones(n, dtype=bool)
    for s, e in _episodes(n, rates.gaps, rates.gap_median_h, 120.0, rng):
        keep[s:e] = False
    if crisis and start_level_m is not None:
        heartbeat = int(rng.integers(0, STEPS_PER_DAY))
        daily = (np.arange(n) % STEPS_PER_DAY) == heartbeat
        keep &= (measured >= start_level_m) | daily
    base = (120, 900) if crisis else (60, 240)
    delay = _delays(n, rates, base, rng)
    idx = np.flatnonzero(keep).astype(np.int64)
    return Readings(index=idx, value=measured[idx], delay_s=delay[idx])


def tipping_bucket(true_mm: FloatArray, tip_mm: float = TIP_MM) -> FloatArray:
    """Quantise rain (mm per step) to whole tips; the remainder carries to the next step."""
    tips = np.floor(np.cumsum(true_mm) / tip_mm + 1e-9)
    return np.diff(tips, prepend=0.0) * tip_mm


def rain_readings(true_mm: FloatArray, rng: np.random.Generator) -> Readings:
    """Readings (mm per 10 min, 0.5 mm tips) of one rain gauge from its true rain ``(T,)``."""
    n = len(true_mm)
    value = tipping_bucket(true_mm)
    keep = np.ones(n, dtype=bool)
    for s, e in _episodes(n, RAIN_RATES.gaps, RAIN_RATES.gap_median_h, 120.0, rng):
        keep[s:e] = False
    delay = _delays(n, RAIN_RATES, (60, 180), rng)
    idx = np.flatnonzero(keep).astype(np.int64)
    return Readings(index=idx, value=value[idx], delay_s=delay[idx])
