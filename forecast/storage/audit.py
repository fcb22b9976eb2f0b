"""Audit aggregate: who did what to which river, model or setting, and when. Written in the
same transaction as the action it records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast.storage.tables import audit_log


def audit(conn: Connection, *, at: datetime, actor: str, action: str, target: str,
          details: dict[str, Any] | None = None) -> None:
    """Append one audit row."""
    conn.execute(audit_log.insert().values(at=at, actor=actor, action=action, target=target,
                                           details=details or {}))


def read_audit(conn: Connection, limit: int = 100, action: str | None = None
               ) -> list[dict[str, Any]]:
    """Newest audit entries first (optionally one action, e.g. ``model.promote``)."""
    q = sa.select(audit_log)
    if action is not None:
        q = q.where(audit_log.c.action == action)
    rows = conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]
