"""Cycle aggregate: forecast cycle runs (one per issue time and revision), each river's
outcome, and the issue-time lock.

The lock lets one process run a given issue time. PostgreSQL: a session advisory lock held on
a dedicated connection for the run (released when that connection closes, so a killed process
never leaves it behind). SQLite: a ``cycle_locks`` row with an expiry; a row past its expiry
belongs to a process that died and is taken over.
"""

from __future__ import annotations

import logging
import os
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from forecast.errors import CycleError
from forecast.storage.engine import connection, transaction
from forecast.storage.tables import (
    cycle_locks,
    cycle_river_outcomes,
    cycle_runs,
    cycle_source_outcomes,
)

log = logging.getLogger(__name__)

LOCK_TTL = timedelta(minutes=30)
"""A SQLite lock row older than this is taken over (its process is presumed dead)."""


def start_cycle(conn: Connection, *, issued_at: datetime, started_at: datetime, trigger: str,
                owner: str = "", kind: str = "cycle") -> tuple[int, int]:
    """Record the start of a run of ``issued_at``; returns (cycle id, revision).

    ``kind``: ``tick`` (collect + forecast + notify) or ``cycle`` (forecast only)."""
    cr = cycle_runs
    revision = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(cr.c.revision), 0))
                                .where(cr.c.issued_at == issued_at)).scalar_one()) + 1
    cycle_id = int(conn.execute(cr.insert().values(
        issued_at=issued_at, revision=revision, started_at=started_at, trigger=trigger,
        status="running", owner=owner, kind=kind).returning(cr.c.id)).scalar_one())
    return cycle_id, revision


def record_outcome(conn: Connection, cycle_id: int, *, river_id: str, status: str,
                   model_version: str | None = None, message: str | None = None) -> None:
    """One river's outcome in a cycle (ok | degraded | failed | skipped)."""
    conn.execute(cycle_river_outcomes.insert().values(
        cycle_id=cycle_id, river_id=river_id, status=status, model_version=model_version,
        message=message))


def finish_cycle(conn: Connection, cycle_id: int, *, finished_at: datetime, status: str,
                 message: str | None = None, stages: dict[str, float] | None = None) -> None:
    """Close a cycle run (``stages``: seconds per stage of a tick)."""
    conn.execute(cycle_runs.update().where(cycle_runs.c.id == cycle_id).values(
        finished_at=finished_at, status=status, message=message, stages=stages))


def abandon_running(conn: Connection, issued_at: datetime, *, finished_at: datetime) -> int:
    """Close the runs of ``issued_at`` still marked running as ``interrupted`` (call it holding
    the issue-time lock: a run still "running" then belongs to a process that stopped, e.g.
    killed or its database connection lost). Returns how many were closed."""
    cr = cycle_runs
    res = conn.execute(cr.update().where(cr.c.issued_at == issued_at, cr.c.status == "running")
                       .values(status="interrupted", finished_at=finished_at,
                               message="interrupted: the process running it stopped before "
                                       "it finished"))
    return int(res.rowcount or 0)


def record_source_outcome(conn: Connection, cycle_id: int, *, source: str, status: str,
                          payloads: int = 0, rows: int = 0, failures: int = 0,
                          seconds: float | None = None, message: str | None = None) -> None:
    """One source's outcome in a tick (ok | partial | failed | timed_out)."""
    conn.execute(cycle_source_outcomes.insert().values(
        cycle_id=cycle_id, source=source, status=status, payloads=payloads, rows=rows,
        failures=failures, seconds=seconds, message=message))


def read_source_outcomes(conn: Connection, cycle_id: int) -> list[dict[str, Any]]:
    """The source outcomes of one tick."""
    o = cycle_source_outcomes
    rows = conn.execute(sa.select(o.c.source, o.c.status, o.c.payloads, o.c.rows, o.c.failures,
                                  o.c.seconds, o.c.message)
                        .where(o.c.cycle_id == cycle_id).order_by(o.c.source))
    return [dict(r._mapping) for r in rows]


def completed_ticks(conn: Connection, *, issued_from: datetime, issued_to: datetime
                    ) -> set[datetime]:
    """Issue times in [from, to] with a finished tick (ok or partial)."""
    cr = cycle_runs
    rows = conn.execute(sa.select(cr.c.issued_at).distinct().where(
        cr.c.kind == "tick", cr.c.status.in_(("ok", "partial")),
        cr.c.issued_at >= issued_from, cr.c.issued_at <= issued_to))
    return {r[0] for r in rows}   # UTCDateTime: aware UTC


def read_cycles(conn: Connection, *, issued_at: datetime | None = None, limit: int = 50,
                kind: str | None = None, before_id: int | None = None) -> pd.DataFrame:
    """Cycle runs, newest first (optionally of one issue time, or one kind; ``before_id``:
    only runs with a smaller id, the cursor of the next page)."""
    cr = cycle_runs
    q = sa.select(cr)
    if before_id is not None:
        q = q.where(cr.c.id < before_id)
    if issued_at is not None:
        q = q.where(cr.c.issued_at == issued_at)
    if kind is not None:
        q = q.where(cr.c.kind == kind)
    rows = conn.execute(q.order_by(cr.c.id.desc()).limit(limit)).all()
    df = pd.DataFrame(rows, columns=[c.name for c in cr.columns])
    for c in ("issued_at", "started_at", "finished_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df


def read_outcomes(conn: Connection, cycle_id: int) -> list[dict[str, Any]]:
    """The river outcomes of one cycle run."""
    o = cycle_river_outcomes
    rows = conn.execute(sa.select(o.c.river_id, o.c.status, o.c.model_version, o.c.message)
                        .where(o.c.cycle_id == cycle_id).order_by(o.c.river_id))
    return [dict(r._mapping) for r in rows]


def _dead_here(owner: str) -> bool:
    """Whether ``owner`` (host:pid) is a process of this host that no longer runs (killed):
    its SQLite lock row can be taken at once instead of after ``LOCK_TTL``."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:   # runs, under another user
        return False
    return False


def _lock_key(issued_at: datetime) -> int:
    """A stable signed 64-bit advisory-lock key for an issue time."""
    crc = zlib.crc32(b"forecast-cycle")
    return (crc << 32 | int(issued_at.timestamp()) & 0xFFFFFFFF) - (1 << 63)


@contextmanager
def issue_lock(engine: Engine, issued_at: datetime, *, owner: str, now: datetime
               ) -> Iterator[None]:
    """Hold the lock of ``issued_at`` for the block; ``CycleError`` if another process has it."""
    if engine.dialect.name == "postgresql":
        with connection(engine, "taking the issue-time lock") as conn:
            key = _lock_key(issued_at)
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one()
            conn.commit()
            if not got:
                raise CycleError(f"issue time {issued_at:%Y-%m-%d %H:%M}Z is being run by "
                                 "another process; try again when it has finished")
            try:
                yield
            finally:
                try:
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                    conn.commit()
                except sa.exc.DBAPIError:   # connection lost (server restart): lock is gone
                    log.warning("issue-time lock of %s: connection lost; the server has "
                                "released the lock", issued_at)
        return
    cl = cycle_locks
    with transaction(engine, "taking the issue-time lock") as conn:
        conn.execute(cl.delete().where(cl.c.issued_at == issued_at, cl.c.expires_at < now))
        holder = conn.execute(sa.select(cl.c.owner).where(cl.c.issued_at == issued_at)).scalar()
        if holder is not None and _dead_here(holder):
            conn.execute(cl.delete().where(cl.c.issued_at == issued_at, cl.c.owner == holder))
        try:
            with conn.begin_nested():
                conn.execute(cl.insert().values(issued_at=issued_at, owner=owner,
                                                acquired_at=now, expires_at=now + LOCK_TTL))
        except IntegrityError:
            holder = conn.execute(sa.select(cl.c.owner).where(cl.c.issued_at == issued_at)
                                  ).scalar()
            raise CycleError(f"issue time {issued_at:%Y-%m-%d %H:%M}Z is being run by "
                             f"another process ({holder}); try again when it has finished"
                             ) from None
    try:
        yield
    finally:
        with transaction(engine, "releasing the issue-time lock") as conn:
            conn.execute(cl.delete().where(cl.c.issued_at == issued_at, cl.c.owner == owner))


def tick_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Number of tick runs per (status, trigger)."""
    cr = cycle_runs
    rows = conn.execute(sa.select(cr.c.status, cr.c.trigger, sa.func.count())
                        .where(cr.c.kind == "tick").group_by(cr.c.status, cr.c.trigger))
    return {(r[0], r[1]): int(r[2]) for r in rows}


def source_failure_totals(conn: Connection) -> dict[str, tuple[int, int]]:
    """Per source: (ticks it was not ok in, failures summed) over all ticks."""
    o = cycle_source_outcomes
    rows = conn.execute(sa.select(
        o.c.source, sa.func.sum(sa.case((o.c.status != "ok", 1), else_=0)),
        sa.func.sum(o.c.failures)).group_by(o.c.source))
    return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}
