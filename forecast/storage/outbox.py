"""Outbox aggregate: messages to deliver, written in the transaction of the state change that
causes them, delivered after commit, at least once.

A message has a ``dedup_key`` (unique: enqueuing it again is a no-op, so a re-run never sends
twice what was already queued; receivers dedupe on it too), a ``channel`` (slack, webhook,
cap, …) and a JSON ``payload``. ``claim`` hands due messages to one deliverer (PostgreSQL:
``FOR UPDATE SKIP LOCKED``, so two deliverers never take the same row; SQLite has one writer).
A failed attempt is retried at the time the deliverer chose; past its limit a message is dead
(a dead letter) until ``requeue``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast.storage.bulk import dialect_insert
from forecast.storage.tables import outbox


def enqueue(conn: Connection, *, channel: str, dedup_key: str, payload: dict[str, Any],
            now: datetime, message_id: int | None = None) -> int | None:
    """Queue a message for delivery now; returns its id, or None when ``dedup_key`` is
    already queued (or delivered). ``message_id``: the lifecycle message it delivers."""
    ins = dialect_insert(conn, outbox).values(
        channel=channel, dedup_key=dedup_key, payload=payload, status="pending", attempts=0,
        created_at=now, next_attempt_at=now, message_id=message_id)
    got = conn.execute(ins.on_conflict_do_nothing(index_elements=["dedup_key"])
                       .returning(outbox.c.id)).scalar()
    return None if got is None else int(got)


def claim(conn: Connection, *, now: datetime, limit: int = 50,
          lease: timedelta | None = None) -> list[dict[str, Any]]:
    """Pending messages due at ``now``, oldest first, locked for this transaction.

    ``lease``: the claimed rows are not due again before ``now + lease`` (the deliverer sends
    after this transaction commits; one that dies before marking them is replaced once the
    lease runs out: at-least-once)."""
    q = (sa.select(outbox).where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
         .order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = [dict(r._mapping) for r in conn.execute(q)]
    if lease is not None and rows:
        conn.execute(outbox.update().where(outbox.c.id.in_([r["id"] for r in rows]))
                     .values(next_attempt_at=now + lease))
    return rows


def mark_sent(conn: Connection, message_id: int, *, at: datetime) -> None:
    """The message was delivered."""
    conn.execute(outbox.update().where(outbox.c.id == message_id).values(
        status="sent", sent_at=at, attempts=outbox.c.attempts + 1, last_error=None))


def mark_failed(conn: Connection, message_id: int, *, at: datetime, error: str,
                retry_at: datetime | None) -> None:
    """An attempt failed: retry at ``retry_at``, or dead-letter it (``retry_at`` None)."""
    conn.execute(outbox.update().where(outbox.c.id == message_id).values(
        status="pending" if retry_at is not None else "dead",
        next_attempt_at=retry_at if retry_at is not None else outbox.c.next_attempt_at,
        attempts=outbox.c.attempts + 1, last_error=error, failed_at=at))


def dead_letters(conn: Connection) -> list[dict[str, Any]]:
    """Messages that exhausted their attempts, oldest first."""
    q = sa.select(outbox).where(outbox.c.status == "dead").order_by(outbox.c.id)
    return [dict(r._mapping) for r in conn.execute(q)]


def requeue(conn: Connection, message_id: int, *, now: datetime) -> bool:
    """Give a dead letter a fresh set of attempts; False when it is not a dead letter."""
    n = conn.execute(outbox.update().where(outbox.c.id == message_id,
                                           outbox.c.status == "dead").values(
        status="pending", attempts=0, next_attempt_at=now)).rowcount
    return bool(n)


def status_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(channel, status) → number of messages."""
    q = sa.select(outbox.c.channel, outbox.c.status, sa.func.count()).group_by(
        outbox.c.channel, outbox.c.status)
    return {(str(c), str(s)): int(n) for c, s, n in conn.execute(q)}


def read_outbox(conn: Connection, *, status: str | None = None, limit: int = 200
                ) -> list[dict[str, Any]]:
    """Newest messages first (optionally of one status)."""
    q = sa.select(outbox)
    if status is not None:
        q = q.where(outbox.c.status == status)
    return [dict(r._mapping) for r in conn.execute(q.order_by(outbox.c.id.desc()).limit(limit))]
