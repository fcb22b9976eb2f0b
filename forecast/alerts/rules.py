"""Which levels the inputs of a stream trigger and hold at an issue time (pure).

A level L (threshold ``h`` m) is

* **triggered** when the observed level is at or above ``h`` (basis ``observed``), or the P50
  forecast reaches ``h`` at some lead 1–6 h (``forecast``), or the probability of exceeding
  ``h`` within the level's ``probability_within_h`` hours is at least its ``probability``
  setting (``probability``); the first that applies, in that order, is the basis;
* **held** (not yet releasable) while it is triggered, or the observed level or the P50 at
  some lead is above ``h − dead band``, or the probability is at least half its setting
  (``PROBABILITY_HOLD``): a level is lowered only when all of them are below it
  (``forecast.alerts.lifecycle`` adds the minimum duration). The same dead band for the
  forecast as for the observation, and a probability band, keep a level whose forecast hovers
  near its threshold from being lowered and raised again within one event.

The probability of exceeding ``h`` at one lead comes from the P10/P50/P90 band as a split
normal through the three quantiles (exact at each; below P50 the spread of P10, above it the
spread of P90), and "within N hours" is the largest of the leads 1..N (a lower bound of the
probability that any of them exceeds; leads are strongly correlated, so it is close).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from forecast.alerts.notice import Basis, LeadForecast, StreamInput
from forecast.catalogue import AlertLevel, AlertRules, Gauge, River

_Z90 = 1.2815515655446004   # the standard normal's 90 % quantile
PROBABILITY_HOLD = 0.5
"""A level raised on probability is held while the probability is at least this share of its
setting (0.3 → held down to 0.15)."""


def river_ladder(river: River) -> list[tuple[AlertLevel, float]]:
    """The primary gauge's ladder, rising: the catalogue's thresholds and, where the primary
    gauge is a crisis gauge with 氾濫開始水位, ``FLOODING``."""
    out = [(AlertLevel.from_key(name), value) for name, value in river.thresholds.ladder()]
    overflow = river.gauge.overflow_level_m
    if overflow is not None and (not out or overflow > out[-1][1]):
        out.append((AlertLevel.FLOODING, overflow))
    return out


def overflow_gauges(river: River) -> list[Gauge]:
    """The river's other crisis gauges with 氾濫開始水位: each is its own stream with the one
    level ``FLOODING`` (observed only: they are not forecast)."""
    return [g for g in river.gauges
            if g.code != river.primary_gauge and g.overflow_level_m is not None]


def exceedance(lead: LeadForecast, threshold_m: float) -> float:
    """P(level > ``threshold_m``) at one lead, from its P10/P50/P90 (split normal)."""
    if threshold_m <= lead.q50:
        spread = max(lead.q50 - lead.q10, 0.0) / _Z90
        if spread == 0.0:
            return 1.0 if threshold_m <= lead.q50 else 0.0
        z = (threshold_m - lead.q50) / spread
    else:
        spread = max(lead.q90 - lead.q50, 0.0) / _Z90
        if spread == 0.0:
            return 0.0
        z = (threshold_m - lead.q50) / spread
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class Assessment:
    """What the inputs say about one level at the issue time (see the module docstring)."""

    level: AlertLevel
    threshold_m: float
    triggered: bool
    held: bool
    basis: Basis | None = None
    crossing_at: datetime | None = None
    lead_h: float | None = None
    probability: float | None = None
    within_h: int | None = None


def _crossing(leads: tuple[LeadForecast, ...], at: datetime, h: float,
              observed_m: float | None) -> tuple[datetime, float] | None:
    """The first time the P50 reaches ``h``: linear between the level at T (the observed, or
    the first lead's P50) and the leads; None when no lead reaches it."""
    prev_t, prev_v = at, observed_m
    for lead in leads:
        if lead.q50 >= h:
            if prev_v is None or prev_v >= h or lead.q50 == prev_v:
                t = lead.valid_at
            else:
                frac = (h - prev_v) / (lead.q50 - prev_v)
                t = prev_t + (lead.valid_at - prev_t) * frac
            return t, (t - at) / timedelta(hours=1)
        prev_t, prev_v = lead.valid_at, lead.q50
    return None


def assess(ladder: list[tuple[AlertLevel, float]], rules: AlertRules, inp: StreamInput
           ) -> list[Assessment]:
    """One ``Assessment`` per level of ``ladder`` (rising)."""
    leads = tuple(sorted(inp.forecast, key=lambda lf: lf.horizon_h))
    out: list[Assessment] = []
    for level, h in ladder:
        rule = rules.rule(level)
        observed = inp.observed_m is not None and inp.observed_m >= h
        crossing = _crossing(leads, inp.at, h, inp.observed_m) if leads else None
        prob: float | None = None
        if leads and rule.probability is not None:
            window = [lf for lf in leads if lf.horizon_h <= rule.probability_within_h]
            prob = max((exceedance(lf, h) for lf in window), default=0.0)
        by_prob = prob is not None and rule.probability is not None and prob >= rule.probability
        basis: Basis | None = ("observed" if observed else "forecast" if crossing is not None
                               else "probability" if by_prob else None)
        held = (basis is not None
                or (inp.observed_m is not None and inp.observed_m > h - rule.dead_band_m)
                or any(lf.q50 > h - rule.dead_band_m for lf in leads)
                or (prob is not None and rule.probability is not None
                    and prob >= rule.probability * PROBABILITY_HOLD))
        out.append(Assessment(
            level, h, triggered=basis is not None, held=held, basis=basis,
            crossing_at=None if crossing is None else crossing[0],
            lead_h=None if crossing is None else round(crossing[1], 2),
            probability=None if prob is None else round(prob, 3),
            within_h=rule.probability_within_h if prob is not None else None))
    return out


def crest(inp: StreamInput) -> LeadForecast | None:
    """The lead with the highest P50 (the forecast crest), None without a forecast."""
    return max(inp.forecast, key=lambda lf: lf.q50, default=None)
