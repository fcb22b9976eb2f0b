"""What the alert engine reads for one stream at an issue time, and what it says.

A **stream** is one thing that can be notified about: the threshold ladder of a river's
primary gauge (topic ``level``), the 氾濫開始 level of another crisis gauge of the river (topic
``level``, that gauge), or the river's data problems (topic ``data``, for the duty officer).
Its key is ``river:gauge:topic``. A **flood event** of a stream runs from its first raise to
its all-clear; its key is ``stream key:raise time`` (``20230630T1800Z``). Within an event a
level is notified at most once (``Notice.new_notification``); later messages about it are
updates, reminders, lowerings or the all-clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from forecast.catalogue import AlertLevel

Topic = Literal["level", "data"]
Basis = Literal["observed", "forecast", "probability"]
Kind = Literal["raise", "escalate", "lower", "clear", "remind", "acknowledge"]
"""``raise``: a stream without an open event reaches a level (the event opens);
``escalate``: a higher level within the event; ``lower``: de-escalation after the hold time;
``clear``: the all-clear (the event closes); ``remind``: an unacknowledged level persists past
the re-notify interval; ``acknowledge``: a named user acknowledged the current level."""


def stream_key(river_id: str, gauge: str, topic: Topic) -> str:
    """``river:gauge:topic``."""
    return f"{river_id}:{gauge}:{topic}"


@dataclass(frozen=True)
class LeadForecast:
    """One lead of a river's forecast (metres at the gauge)."""

    horizon_h: int
    valid_at: datetime
    q10: float
    q50: float
    q90: float


@dataclass(frozen=True)
class StreamInput:
    """What a level stream reads at issue time ``at``.

    ``observed_m``: the highest usable reading (QC not BAD/MISSING) in (T − 30 min, T], at
    ``observed_at``; None when there is none (stale gauge: the data stream says so).
    ``forecast``: the leads of this issue time's forecast (empty: no forecast, e.g. the river
    failed or a crisis gauge that is not forecast)."""

    at: datetime
    observed_m: float | None = None
    observed_at: datetime | None = None
    forecast: tuple[LeadForecast, ...] = ()
    low_confidence: tuple[str, ...] = ()
    cycle_id: int | None = None
    forecast_run_id: int | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class Notice:
    """One message of the engine: a state change of a stream (see ``Kind``).

    For a level stream: ``level`` is the level the message is about (the new level; for
    ``lower`` the level reached, None when lowered below every level is ``clear``),
    ``from_level`` the level before. ``basis`` says why: the observed level reached it, the
    P50 forecast crosses it within 1–6 h (``crossing_at``/``lead_h``: the first lead at or
    above, time interpolated between leads), or the probability of exceeding it within
    ``within_h`` hours is at least the level's setting (``probability``). ``crest_m`` /
    ``crest_at``: the forecast crest (highest P50 of the leads). For the data stream:
    ``problems`` lists what is wrong (``level`` None).
    """

    kind: Kind
    topic: Topic
    river_id: str
    gauge: str
    at: datetime
    event_key: str
    level: AlertLevel | None = None
    from_level: AlertLevel | None = None
    new_notification: bool = False
    basis: Basis | None = None
    threshold_m: float | None = None
    observed_m: float | None = None
    observed_at: datetime | None = None
    crossing_at: datetime | None = None
    lead_h: float | None = None
    crest_m: float | None = None
    crest_at: datetime | None = None
    probability: float | None = None
    within_h: int | None = None
    low_confidence: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    cycle_id: int | None = None
    forecast_run_id: int | None = None
    model_version: str | None = None
    acknowledged_by: str | None = None
    note: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def stream(self) -> str:
        return stream_key(self.river_id, self.gauge, self.topic)
