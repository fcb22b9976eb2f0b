"""Shared paths for the alert-engine tests: a four-level ladder and level paths built tick by
tick (``inp``) and run through the lifecycle (``run``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from forecast.alerts.lifecycle import Stream, StreamState, step
from forecast.alerts.notice import LeadForecast, StreamInput
from forecast.alerts.rules import assess
from forecast.catalogue import AlertLevel as L
from forecast.catalogue import AlertRules

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
LADDER = [(L.STANDBY, 2.0), (L.CAUTION, 3.0), (L.EVACUATION, 3.5), (L.DANGER, 4.0)]
RULES = AlertRules(dead_band_m=0.1, min_duration_min=60, all_clear_after_min=120,
                   renotify_after_min=60)
S = Stream("r1", "G1")


def leads(at: datetime, q50: list[float], spread: float = 0.0) -> tuple[LeadForecast, ...]:
    return tuple(LeadForecast(h, at + timedelta(hours=h), v - spread, v, v + spread)
                 for h, v in enumerate(q50, start=1))


def inp(k: int, obs: float | None, q50: list[float] | None = None,
        spread: float = 0.0) -> StreamInput:
    at = T0 + timedelta(minutes=30 * k)
    return StreamInput(at=at, observed_m=obs, observed_at=at if obs is not None else None,
                       forecast=leads(at, q50, spread) if q50 else (), cycle_id=k)


def run(path: list[StreamInput], rules: AlertRules = RULES, state: StreamState | None = None
        ) -> tuple[StreamState, list]:
    state = state or StreamState()
    out = []
    for i in path:
        state, notices = step(S, state, assess(LADDER, rules, i), rules, i)
        out += notices
    return state, out
