"""The notification lifecycle of a stream (pure): previous state + assessments + time → new
state + notices.

Level streams (``step``), at each issue time T:

1. the **target** is the highest triggered level (``rules.assess``);
2. above the current level → ``raise`` (no open event: the event opens) or ``escalate``;
   a level already notified in this event is not notified again (``new_notification``
   False: the message is an update of that notification);
   a level lowered in this event less than ``rearm_after`` ago is raised again only by an
   observed crossing (a forecast that swings between ticks does not make it flap);
3. otherwise, the **held** level is the highest level still held (observed within the dead
   band, or forecast/probability still at it). When it is below the current level, the
   release clock starts; after the current level's ``min_duration`` the level is lowered to
   the held one (``lower``), and when nothing is held, after ``all_clear_after`` (counted from
   the first tick with nothing held) the event closes (``clear``). A tick that holds the
   current level again stops the clock;
4. an unacknowledged current level is notified again (``remind``) every ``renotify_after``.

``acknowledge`` records a named user's acknowledgement of the current level (reminders stop
until the level changes upward). The data stream (``step_data``) raises when problems appear,
updates when they change, and clears after they have been gone for ``min_duration``.

Invariants (tests/alerts/test_lifecycle_properties.py): one ``raise`` per event; levels rise
only by ``raise``/``escalate`` and fall only by ``lower``/``clear``; no ``clear`` while any
level is held; at most one new notification per level and event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from forecast.alerts.notice import Basis, Kind, Notice, StreamInput, Topic
from forecast.alerts.rules import Assessment, crest
from forecast.catalogue import AlertLevel, AlertRules


@dataclass(frozen=True)
class StreamState:
    """A stream's state between issue times (stored as JSON: ``to_json``/``from_json``)."""

    event_key: str | None = None
    level: AlertLevel | None = None
    basis: Basis | None = None
    since: datetime | None = None            # when the current level was reached
    notified: frozenset[AlertLevel] = frozenset()
    release_since: datetime | None = None     # first tick at which the level was not held
    quiet_since: datetime | None = None       # first tick at which no level was held
    last_sent_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    peak: AlertLevel | None = None
    problems: tuple[str, ...] = ()            # data stream: what is wrong
    lowered: tuple[tuple[AlertLevel, datetime], ...] = ()   # when each level was lowered

    @property
    def in_event(self) -> bool:
        return self.event_key is not None

    def to_json(self) -> dict[str, Any]:
        def t(v: datetime | None) -> str | None:
            return None if v is None else v.isoformat()

        return {"event_key": self.event_key,
                "level": None if self.level is None else int(self.level),
                "basis": self.basis, "since": t(self.since),
                "notified": sorted(int(lv) for lv in self.notified),
                "release_since": t(self.release_since), "quiet_since": t(self.quiet_since),
                "last_sent_at": t(self.last_sent_at),
                "acknowledged_by": self.acknowledged_by,
                "acknowledged_at": t(self.acknowledged_at),
                "peak": None if self.peak is None else int(self.peak),
                "problems": list(self.problems),
                "lowered": [[int(lv), t(at)] for lv, at in self.lowered]}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> StreamState:
        if not d:
            return cls()

        def t(v: Any) -> datetime | None:
            return None if v is None else datetime.fromisoformat(str(v))

        def lv(v: Any) -> AlertLevel | None:
            return None if v is None else AlertLevel(int(v))

        return cls(event_key=d.get("event_key"), level=lv(d.get("level")),
                   basis=d.get("basis"), since=t(d.get("since")),
                   notified=frozenset(AlertLevel(int(x)) for x in d.get("notified", [])),
                   release_since=t(d.get("release_since")),
                   quiet_since=t(d.get("quiet_since")),
                   last_sent_at=t(d.get("last_sent_at")),
                   acknowledged_by=d.get("acknowledged_by"),
                   acknowledged_at=t(d.get("acknowledged_at")), peak=lv(d.get("peak")),
                   problems=tuple(d.get("problems", ())),
                   lowered=tuple((AlertLevel(int(a)), datetime.fromisoformat(str(b)))
                                 for a, b in d.get("lowered", [])))


def event_key(stream: str, at: datetime) -> str:
    """``stream:20230630T1800Z``."""
    return f"{stream}:{at.astimezone(UTC):%Y%m%dT%H%MZ}"


@dataclass(frozen=True)
class Stream:
    """Who a level stream is: river, gauge, topic."""

    river_id: str
    gauge: str
    topic: Topic = "level"

    @property
    def key(self) -> str:
        return f"{self.river_id}:{self.gauge}:{self.topic}"


def _notice(stream: Stream, kind: Kind, state: StreamState, inp: StreamInput,
            a: Assessment | None, *, level: AlertLevel | None, from_level: AlertLevel | None,
            new: bool = False) -> Notice:
    top = crest(inp)
    observed = a is not None and a.basis == "observed"
    return Notice(
        kind=kind, topic=stream.topic, river_id=stream.river_id, gauge=stream.gauge, at=inp.at,
        event_key=state.event_key or "", level=level, from_level=from_level,
        new_notification=new, basis=None if a is None else a.basis,
        threshold_m=None if a is None else a.threshold_m, observed_m=inp.observed_m,
        observed_at=inp.observed_at,
        crossing_at=(inp.observed_at if observed else None if a is None else a.crossing_at),
        lead_h=0.0 if observed else None if a is None else a.lead_h,
        crest_m=None if top is None else top.q50, crest_at=None if top is None else top.valid_at,
        probability=None if a is None else a.probability,
        within_h=None if a is None else a.within_h, low_confidence=inp.low_confidence,
        cycle_id=inp.cycle_id, forecast_run_id=inp.forecast_run_id,
        model_version=inp.model_version, acknowledged_by=state.acknowledged_by)


def step(stream: Stream, state: StreamState, assessments: list[Assessment],
         rules: AlertRules, inp: StreamInput) -> tuple[StreamState, list[Notice]]:
    """One issue time of a level stream (see the module docstring)."""
    at = inp.at
    by_level = {a.level: a for a in assessments}
    cur = state.level
    wanted = max((a.level for a in assessments if a.triggered), default=None)
    target = _rearmed_target(state, assessments, rules, at)
    if wanted is not None and (cur is None or wanted > cur) and (
            target is None or (cur is not None and target <= cur)):
        # only levels lowered in this event less than rearm_after ago, on a forecast: wait
        # where it is (held)
        state = replace(state, release_since=None, quiet_since=None)
        return _remind(stream, state, by_level.get(cur) if cur is not None else None,
                       rules, inp)
    if target is not None and (cur is None or target > cur):
        new = target not in state.notified
        opened = state if state.in_event else StreamState(event_key=event_key(stream.key, at))
        after = replace(opened, level=target, basis=by_level[target].basis, since=at,
                        notified=opened.notified | {target}, release_since=None,
                        quiet_since=None,
                        last_sent_at=at, acknowledged_by=None, acknowledged_at=None,
                        peak=max(target, opened.peak or target))
        kind: Kind = "escalate" if state.in_event else "raise"
        return after, [_notice(stream, kind, after, inp, by_level[target], level=target,
                               from_level=cur, new=new)]
    if not state.in_event:
        return state, []
    held = max((a.level for a in assessments
                if a.held and (cur is None or a.level <= cur)), default=None)
    quiet = None if held is not None else (state.quiet_since or at)
    if held is not None and (held == cur or cur is None):   # still held: the clocks stop
        state = replace(state, release_since=None, quiet_since=None,
                        basis=by_level[held].basis or state.basis)
        return _remind(stream, state, by_level.get(held), rules, inp)
    since = state.release_since or at
    waiting = replace(state, release_since=since, quiet_since=quiet)
    if quiet is not None and at - quiet >= rules.all_clear_after:
        notice = _notice(stream, "clear", waiting, inp, None, level=None, from_level=cur)
        return StreamState(), [notice]
    if cur is not None and at - since >= rules.rule(cur).min_duration:
        # lowered to the held level, or below every level (None) while the all-clear waits
        # (its clock runs from the first tick with nothing held)
        after = replace(waiting, level=held, since=at,
                        basis=(by_level[held].basis or "observed") if held is not None
                        else None,
                        release_since=None if held is not None else since,
                        lowered=_mark_lowered(waiting.lowered, held, cur, at))
        return after, [_notice(stream, "lower", after, inp,
                               by_level.get(held) if held is not None else None,
                               level=held, from_level=cur)]
    return _remind(stream, waiting, by_level.get(cur) if cur is not None else None, rules, inp)


def _rearmed_target(state: StreamState, assessments: list[Assessment], rules: AlertRules,
                    at: datetime) -> AlertLevel | None:
    """The highest triggered level that may be raised now: an observed crossing always, a
    forecast or probability only for a level not lowered in this event in the last
    ``rearm_after``."""
    recent = {lv for lv, when in state.lowered if at - when < rules.rearm_after}
    return max((a.level for a in assessments if a.triggered
                and (a.basis == "observed" or a.level not in recent)), default=None)


def _mark_lowered(lowered: tuple[tuple[AlertLevel, datetime], ...], to: AlertLevel | None,
                  cur: AlertLevel, at: datetime) -> tuple[tuple[AlertLevel, datetime], ...]:
    """``lowered`` with every level above ``to`` up to ``cur`` lowered at ``at``."""
    gone = {lv for lv in AlertLevel if (to is None or lv > to) and lv <= cur}
    return tuple(sorted([(lv, w) for lv, w in lowered if lv not in gone]
                        + [(lv, at) for lv in gone]))


def _remind(stream: Stream, state: StreamState, a: Assessment | None, rules: AlertRules,
            inp: StreamInput) -> tuple[StreamState, list[Notice]]:
    """Re-notify an unacknowledged current level every ``renotify_after``."""
    if state.level is None:
        return state, []
    every = rules.rule(state.level).renotify_after
    last = state.last_sent_at or state.since or inp.at
    if state.acknowledged_by is not None or every is None or inp.at - last < every:
        return state, []
    after = replace(state, last_sent_at=inp.at)
    return after, [_notice(stream, "remind", after, inp, a, level=state.level,
                           from_level=state.level)]


def acknowledge(stream: Stream, state: StreamState, *, user: str, at: datetime,
                note: str | None = None) -> tuple[StreamState, Notice]:
    """A named user acknowledges the current level; ``ValueError`` when there is nothing to
    acknowledge (no open event) or it is already acknowledged."""
    if not state.in_event or (state.level is None and not state.problems):
        raise ValueError("nothing to acknowledge: the stream has no active notification")
    if state.acknowledged_by is not None:
        raise ValueError(f"already acknowledged by {state.acknowledged_by} at "
                         f"{state.acknowledged_at:%Y-%m-%d %H:%M}Z")
    after = replace(state, acknowledged_by=user, acknowledged_at=at)
    return after, Notice(kind="acknowledge", topic=stream.topic, river_id=stream.river_id,
                         gauge=stream.gauge, at=at, event_key=state.event_key or "",
                         level=state.level, from_level=state.level, acknowledged_by=user,
                         note=note, problems=state.problems)


def step_data(stream: Stream, state: StreamState, problems: list[str], at: datetime,
              hold: timedelta) -> tuple[StreamState, list[Notice]]:
    """The data-problem stream: raise when ``problems`` appear, ``escalate`` (an update)
    when new ones join, ``clear`` after none for ``hold``."""
    def notice(kind: Kind, st: StreamState, probs: tuple[str, ...]) -> Notice:
        return Notice(kind=kind, topic="data", river_id=stream.river_id, gauge=stream.gauge,
                      at=at, event_key=st.event_key or "", problems=probs,
                      new_notification=kind == "raise", acknowledged_by=st.acknowledged_by)

    probs = tuple(problems)
    if probs:
        if not state.in_event:
            after = StreamState(event_key=event_key(stream.key, at), since=at,
                                last_sent_at=at, problems=probs)
            return after, [notice("raise", after, probs)]
        fresh = [p for p in probs if p not in state.problems]
        after = replace(state, problems=probs, release_since=None)
        if fresh:
            after = replace(after, last_sent_at=at)
            return after, [notice("escalate", after, probs)]
        return after, []
    if not state.in_event:
        return state, []
    since = state.release_since or at
    if at - since >= hold:
        return StreamState(), [notice("clear", state, state.problems)]
    return replace(state, release_since=since), []
