"""Notification aggregate: each stream's state, the notifications (one per stream, flood event
and level), every lifecycle message with its CAP rendering, and the Slack threads.

The engine (``forecast.alerts``) decides; the pipeline (``forecast.pipeline.notify``) stores
its result here, in one transaction with the outbox rows that deliver it (``storage.outbox``).

A notification's ``state``: ``active`` (the stream's current level), ``acknowledged`` (the
same, acknowledged by a named user), ``superseded`` (a higher level of the same event is
current), ``lowered`` (the stream went below it; the event is still open), ``cleared`` (the
event closed with the all-clear). Level 0 is a data problem (topic ``data``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast.storage.bulk import dialect_insert
from forecast.storage.tables import alert_messages, alert_streams, notifications, slack_threads

ACTIVE = ("active", "acknowledged")


def read_streams(conn: Connection, river_id: str | None = None, *, lock: bool = False
                 ) -> dict[str, dict[str, Any]]:
    """Stream key → its row (``state`` is the engine's JSON). ``lock``: hold the rows for
    this transaction (PostgreSQL ``FOR UPDATE``; SQLite has one writer anyway), so two
    processes never update one river's streams at once."""
    q = sa.select(alert_streams)
    if river_id is not None:
        q = q.where(alert_streams.c.river_id == river_id)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return {r.stream_key: dict(r._mapping) for r in conn.execute(q)}


def put_stream(conn: Connection, *, stream_key: str, river_id: str, gauge: str, topic: str,
               state: dict[str, Any], updated_at: datetime) -> None:
    """Write a stream's state."""
    ins = dialect_insert(conn, alert_streams).values(
        stream_key=stream_key, river_id=river_id, gauge=gauge, topic=topic, state=state,
        updated_at=updated_at)
    conn.execute(ins.on_conflict_do_update(
        index_elements=["stream_key"],
        set_={"state": ins.excluded.state, "updated_at": ins.excluded.updated_at}))


def find_notification(conn: Connection, event_key: str, level: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(notifications).where(
        notifications.c.event_key == event_key, notifications.c.level == level)).first()
    return None if row is None else dict(row._mapping)


def add_notification(conn: Connection, *, event_key: str, stream_key: str, river_id: str,
                     gauge: str, topic: str, level: int, basis: str | None, raised_at: datetime,
                     cycle_id: int | None, forecast_run_id: int | None,
                     details: dict[str, Any]) -> int:
    """A new notification (``state`` active); returns its id."""
    return int(conn.execute(notifications.insert().values(
        event_key=event_key, stream_key=stream_key, river_id=river_id, gauge=gauge,
        topic=topic, level=level, state="active", basis=basis, raised_at=raised_at,
        updated_at=raised_at, cycle_id=cycle_id, forecast_run_id=forecast_run_id,
        details=details).returning(notifications.c.id)).scalar_one())


def set_notification_states(conn: Connection, event_key: str, *, at: datetime,
                            current: int | None, cleared: bool = False) -> None:
    """After a state change of the event's stream: the row of level ``current`` is active,
    rows below it superseded, rows above it lowered; all cleared when ``cleared``."""
    base = notifications.update().where(notifications.c.event_key == event_key)
    if cleared:
        conn.execute(base.values(state="cleared", cleared_at=at, updated_at=at))
        return
    lv = notifications.c.level
    if current is None:
        conn.execute(base.values(state="lowered", updated_at=at))
        return
    conn.execute(base.where(lv < current).values(state="superseded", updated_at=at))
    conn.execute(base.where(lv > current).values(state="lowered", updated_at=at))
    conn.execute(base.where(lv == current, notifications.c.state.notin_(ACTIVE))
                 .values(state="active", acknowledged_by=None, acknowledged_at=None,
                         updated_at=at))


def acknowledge_notification(conn: Connection, notification_id: int, *, by: str,
                             at: datetime) -> None:
    conn.execute(notifications.update().where(notifications.c.id == notification_id).values(
        state="acknowledged", acknowledged_by=by, acknowledged_at=at, updated_at=at))


def get_notification(conn: Connection, notification_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(notifications).where(
        notifications.c.id == notification_id)).first()
    return None if row is None else dict(row._mapping)


def read_notifications(conn: Connection, *, active: bool | None = None,
                       river_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first; ``active`` True: only active or acknowledged ones, False: only others."""
    q = sa.select(notifications)
    if active is True:
        q = q.where(notifications.c.state.in_(ACTIVE))
    elif active is False:
        q = q.where(notifications.c.state.notin_(ACTIVE))
    if river_id is not None:
        q = q.where(notifications.c.river_id == river_id)
    rows = conn.execute(q.order_by(notifications.c.raised_at.desc(), notifications.c.id.desc())
                        .limit(limit))
    return [dict(r._mapping) for r in rows]


def add_message(conn: Connection, *, event_key: str, stream_key: str, river_id: str,
                notification_id: int | None, kind: str, topic: str, level: int | None,
                from_level: int | None, occurred_at: datetime, created_at: datetime,
                cycle_id: int | None) -> int:
    """A lifecycle message (its payload is set once its id is known: ``set_message``)."""
    return int(conn.execute(alert_messages.insert().values(
        event_key=event_key, stream_key=stream_key, river_id=river_id,
        notification_id=notification_id, kind=kind, topic=topic, level=level,
        from_level=from_level, occurred_at=occurred_at, created_at=created_at,
        cycle_id=cycle_id, payload={}).returning(alert_messages.c.id)).scalar_one())


def set_message(conn: Connection, message_id: int, *, payload: dict[str, Any],
                cap_identifier: str | None, cap_xml: str | None) -> None:
    conn.execute(alert_messages.update().where(alert_messages.c.id == message_id).values(
        payload=payload, cap_identifier=cap_identifier, cap_xml=cap_xml))


def event_messages(conn: Connection, event_key: str) -> list[dict[str, Any]]:
    """The messages of one event, oldest first."""
    q = (sa.select(alert_messages).where(alert_messages.c.event_key == event_key)
         .order_by(alert_messages.c.id))
    return [dict(r._mapping) for r in conn.execute(q)]


def messages_of_events(conn: Connection, event_keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The messages of these events (one query), oldest first per event."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in event_keys}
    if not event_keys:
        return out
    q = (sa.select(alert_messages).where(alert_messages.c.event_key.in_(set(event_keys)))
         .order_by(alert_messages.c.id))
    for r in conn.execute(q):
        out[r.event_key].append(dict(r._mapping))
    return out


def read_messages(conn: Connection, *, river_id: str | None = None, limit: int = 500
                  ) -> list[dict[str, Any]]:
    """Newest messages first."""
    q = sa.select(alert_messages)
    if river_id is not None:
        q = q.where(alert_messages.c.river_id == river_id)
    return [dict(r._mapping) for r in conn.execute(q.order_by(alert_messages.c.id.desc())
                                                   .limit(limit))]


def current_cap(conn: Connection, *, closed_since: datetime) -> list[dict[str, Any]]:
    """The newest CAP message of each event that is open, or that closed (Cancel) at or after
    ``closed_since``; newest first."""
    m = alert_messages
    newest = (sa.select(sa.func.max(m.c.id).label("id")).where(m.c.cap_xml.is_not(None))
              .group_by(m.c.event_key).subquery())
    q = (sa.select(m).join(newest, m.c.id == newest.c.id)
         .where(sa.or_(m.c.kind != "clear", m.c.occurred_at >= closed_since))
         .order_by(m.c.id.desc()))
    return [dict(r._mapping) for r in conn.execute(q)]


def get_cap(conn: Connection, identifier: str) -> str | None:
    """The CAP XML of one message, by its CAP identifier."""
    got = conn.execute(sa.select(alert_messages.c.cap_xml).where(
        alert_messages.c.cap_identifier == identifier)).scalar()
    return None if got is None else str(got)


def all_cap(conn: Connection) -> list[tuple[str, str]]:
    """Every CAP message as (identifier, XML), oldest first."""
    q = (sa.select(alert_messages.c.cap_identifier, alert_messages.c.cap_xml)
         .where(alert_messages.c.cap_xml.is_not(None)).order_by(alert_messages.c.id))
    return [(str(a), str(b)) for a, b in conn.execute(q)]


def slack_thread(conn: Connection, event_key: str, target: str) -> str | None:
    """The ``ts`` of the event's first Slack message in ``target``."""
    got = conn.execute(sa.select(slack_threads.c.ts).where(
        slack_threads.c.event_key == event_key, slack_threads.c.target == target)).scalar()
    return None if got is None else str(got)


def put_slack_thread(conn: Connection, event_key: str, target: str, ts: str) -> None:
    """Remember the first message of an event (a later one never replaces it)."""
    ins = dialect_insert(conn, slack_threads).values(event_key=event_key, target=target, ts=ts)
    conn.execute(ins.on_conflict_do_nothing(index_elements=["event_key", "target"]))
