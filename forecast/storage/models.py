"""Model aggregate: registered versions and the champion record.

``champion_events`` is the one truth about champions: a promotion pushes a version onto the
river's champion stack, a rollback pops it; ``champion`` replays the stack. The registry
directory holds the artifacts only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast.storage.bulk import dialect_insert
from forecast.storage.tables import champion_events, model_versions


def register_model_version(conn: Connection, *, river_id: str, version: str, path: str,
                           manifest: dict[str, Any], created_at: datetime) -> None:
    """Record a trained version (idempotent: registering it again changes nothing)."""
    ins = dialect_insert(conn, model_versions).values(
        river_id=river_id, version=version, path=path, manifest=manifest,
        created_at=created_at)
    conn.execute(ins.on_conflict_do_nothing(index_elements=["river_id", "version"]))


def is_registered(conn: Connection, river_id: str, version: str) -> bool:
    """True when the version has a ``model_versions`` row."""
    mv = model_versions
    return conn.execute(sa.select(sa.func.count()).where(
        mv.c.river_id == river_id, mv.c.version == version)).scalar_one() > 0


def champion_history(conn: Connection, river_id: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of a river, oldest first."""
    ce = champion_events
    rows = conn.execute(sa.select(ce.c.version, ce.c.action, ce.c.at, ce.c.actor, ce.c.note)
                        .where(ce.c.river_id == river_id).order_by(ce.c.id))
    return [dict(r._mapping) for r in rows]


def champion_stack(history: list[dict[str, Any]]) -> list[str]:
    """The champion stack replayed from a history: promotions push, rollbacks pop."""
    stack: list[str] = []
    for h in history:
        if h["action"] == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(str(h["version"]))
    return stack


def champion(conn: Connection, river_id: str) -> str | None:
    """The river's champion version, or None when none was promoted."""
    stack = champion_stack(champion_history(conn, river_id))
    return stack[-1] if stack else None


def champions(conn: Connection) -> dict[str, str]:
    """Champion version of every river that has one."""
    ce = champion_events
    rows = conn.execute(sa.select(ce.c.river_id, ce.c.version, ce.c.action)
                        .order_by(ce.c.river_id, ce.c.id)).all()
    out: dict[str, str] = {}
    for rid in dict.fromkeys(r[0] for r in rows):
        stack = champion_stack([{"version": v, "action": a} for r, v, a in rows if r == rid])
        if stack:
            out[str(rid)] = stack[-1]
    return out


def add_champion_event(conn: Connection, *, river_id: str, version: str, action: str,
                       at: datetime, actor: str, note: str) -> None:
    """Append a promotion (``action="promote"``, ``version`` = the new champion) or a
    rollback (``version`` = the champion restored)."""
    if action not in ("promote", "rollback"):
        raise ValueError(f"unknown champion action {action!r}")
    conn.execute(champion_events.insert().values(river_id=river_id, version=version,
                                                 action=action, at=at, actor=actor, note=note))


def list_model_versions(conn: Connection, river_id: str | None = None) -> pd.DataFrame:
    """Registered versions, newest first, with ``champion`` (bool) from the champion record."""
    mv = model_versions
    q = sa.select(mv.c.river_id, mv.c.version, mv.c.created_at, mv.c.path)
    if river_id is not None:
        q = q.where(mv.c.river_id == river_id)
    rows = conn.execute(q.order_by(mv.c.river_id, mv.c.created_at.desc())).all()
    df = pd.DataFrame(rows, columns=["river_id", "version", "created_at", "path"])
    champ = champions(conn)
    df["champion"] = [champ.get(r) == v for r, v in zip(df["river_id"], df["version"],
                                                        strict=True)]
    return df
