"""Clocks: the one way any layer learns the time.

Entry points build a ``SystemClock`` once and pass it down (inside ``pipeline.Context``); tests
and replays pass a ``FixedClock`` they move by hand. Pure modules never read a clock: they take
the time as an argument.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time (tz-aware UTC)."""

    def now(self) -> datetime:
        """The current time, tz-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved (tests, replays, reproducible demos)."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at!r}: pass a timezone-aware time")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to ``at`` (tz-aware)."""
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at!r}: pass a timezone-aware time")
        self._at = at.astimezone(UTC)

    def advance(self, by: timedelta) -> None:
        """Move the clock forward by ``by``."""
        self._at += by


class ScaledClock:
    """A clock that runs ``speed`` times faster than the wall clock from ``origin``: at wall
    time ``wall_origin + d`` it reads ``origin + speed * d`` (the live demo's
    ``--speed 60`` = one simulated hour per wall minute). ``wall`` is the wall clock read
    (``SystemClock`` unless given: tests pass a ``FixedClock``)."""

    def __init__(self, origin: datetime, speed: float, *, wall: Clock | None = None) -> None:
        if origin.tzinfo is None:
            raise ValueError(f"naive datetime {origin!r}: pass a timezone-aware time")
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._wall = wall or SystemClock()
        self._origin = origin.astimezone(UTC)
        self._wall_origin = self._wall.now()
        self.speed = float(speed)

    def now(self) -> datetime:
        return self._origin + (self._wall.now() - self._wall_origin) * self.speed

    def wall_seconds(self, simulated: timedelta) -> float:
        """Wall seconds that ``simulated`` time takes on this clock."""
        return simulated.total_seconds() / self.speed
