"""Alert aggregate: each river's current notification state and the history of its changes.

The alert engine (pure, ``forecast.alerts``, to come) decides; the pipeline stores its result
here in the same transaction as the forecast it was raised on and the outbox rows that deliver
it (``storage.outbox``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast.storage.bulk import dialect_insert
from forecast.storage.tables import alert_events, alert_state

_STATE = ("level_name", "basis", "since", "updated_at", "acknowledged_by", "acknowledged_at")


def get_state(conn: Connection, river_id: str) -> dict[str, Any] | None:
    """The river's current alert state, or None when it never had one."""
    row = conn.execute(sa.select(alert_state).where(alert_state.c.river_id == river_id)).first()
    return dict(row._mapping) if row is not None else None


def put_state(conn: Connection, river_id: str, *, level_name: str | None, basis: str | None,
              since: datetime | None, updated_at: datetime,
              acknowledged_by: str | None = None,
              acknowledged_at: datetime | None = None) -> None:
    """Write the river's alert state (``level_name`` None: below every threshold)."""
    values = dict(river_id=river_id, level_name=level_name, basis=basis, since=since,
                  updated_at=updated_at, acknowledged_by=acknowledged_by,
                  acknowledged_at=acknowledged_at)
    ins = dialect_insert(conn, alert_state).values(**values)
    conn.execute(ins.on_conflict_do_update(index_elements=["river_id"],
                                           set_={c: ins.excluded[c] for c in _STATE}))


def add_event(conn: Connection, *, river_id: str, occurred_at: datetime, kind: str,
              from_level: str | None, to_level: str | None, basis: str, message: str,
              created_at: datetime, cycle_id: int | None = None) -> int:
    """Append a state change (raise | escalate | lower | clear | acknowledge); returns its id."""
    return int(conn.execute(alert_events.insert().values(
        river_id=river_id, occurred_at=occurred_at, kind=kind, from_level=from_level,
        to_level=to_level, basis=basis, cycle_id=cycle_id, message=message,
        created_at=created_at).returning(alert_events.c.id)).scalar_one())


def read_events(conn: Connection, river_id: str | None = None, limit: int = 100
                ) -> list[dict[str, Any]]:
    """Newest alert events first (optionally of one river)."""
    q = sa.select(alert_events)
    if river_id is not None:
        q = q.where(alert_events.c.river_id == river_id)
    return [dict(r._mapping) for r in conn.execute(q.order_by(alert_events.c.id.desc())
                                                   .limit(limit))]
