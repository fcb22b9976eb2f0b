"""API-key aggregate: machine clients' keys, scoped to roles, expiring, revocable.

A key is ``fk_<key_id>_<secret>``; only the SHA-256 of the secret is stored (the secret is a
random 32-byte token, so a plain hash suffices: there is nothing to guess), compared in
constant time. Functions take a ``Connection`` so a key change commits with its audit row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast.storage.tables import api_keys


def add_key(conn: Connection, *, key_id: str, name: str, roles: list[str],
            secret_sha256: str, created_at: datetime, created_by: str,
            expires_at: datetime | None) -> None:
    conn.execute(api_keys.insert().values(
        key_id=key_id, name=name, roles=roles, secret_sha256=secret_sha256,
        created_at=created_at, created_by=created_by, expires_at=expires_at))


def get_key(conn: Connection, key_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    return None if row is None else dict(row._mapping)


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    """Every key, newest first (hashes included: callers show what they need)."""
    return [dict(r._mapping) for r in conn.execute(
        sa.select(api_keys).order_by(api_keys.c.created_at.desc(), api_keys.c.key_id))]


def revoke_key(conn: Connection, key_id: str, *, at: datetime, by: str) -> bool:
    """Revoke a key now; False when there is no such key or it was already revoked."""
    n = conn.execute(api_keys.update().where(api_keys.c.key_id == key_id,
                                             api_keys.c.revoked_at.is_(None))
                     .values(revoked_at=at, revoked_by=by)).rowcount
    return bool(n)


def touch_key(conn: Connection, key_id: str, at: datetime) -> None:
    """Record a use of the key."""
    conn.execute(api_keys.update().where(api_keys.c.key_id == key_id)
                 .values(last_used_at=at))
