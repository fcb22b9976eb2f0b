"""Raw payload archive: every fetched file or response is stored, content-addressed, before it
is parsed, so a parser bug or a bad file never loses data (re-parse from the archive).

The same bytes fetched twice are stored once (``raw_payloads``); every fetch is a row of
``raw_fetches`` with its source, URI, time and parse outcome.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from forecast.errors import StorageError
from forecast.storage.tables import raw_fetches, raw_payloads


@dataclass(frozen=True)
class ArchivedPayload:
    """Where an archived payload can be found again."""

    fetch_id: int
    sha256: str
    size: int
    already_stored: bool


def sha256_hex(data: bytes) -> str:
    """Content address of a payload."""
    return hashlib.sha256(data).hexdigest()


def archive_payload(
    conn: Connection, data: bytes, *, source: str, uri: str, fetched_at: datetime
) -> ArchivedPayload:
    """Store ``data`` (once per content) and record this fetch; returns its identifiers.
    Commit this before parsing (its own transaction), so the bytes survive a parser crash."""
    sha = sha256_hex(data)
    exists = conn.execute(
        sa.select(raw_payloads.c.sha256).where(raw_payloads.c.sha256 == sha)
    ).first() is not None
    if not exists:
        try:
            with conn.begin_nested():
                conn.execute(raw_payloads.insert().values(
                    sha256=sha, size=len(data), content=data, first_seen_at=fetched_at))
        except IntegrityError:  # stored concurrently by another process: fine
            exists = True
    fetch_id = conn.execute(
        raw_fetches.insert().values(
            sha256=sha, source=source, uri=uri, fetched_at=fetched_at, parse_status="pending",
        ).returning(raw_fetches.c.id)
    ).scalar_one()
    return ArchivedPayload(int(fetch_id), sha, len(data), exists)


def archive_payloads(
    conn: Connection, items: list[tuple[bytes, str]], *, source: str, fetched_at: datetime
) -> list[ArchivedPayload]:
    """Archive many ``(data, uri)`` payloads at once (bulk file imports)."""
    shas = [sha256_hex(d) for d, _ in items]
    known = {r[0] for r in conn.execute(
        sa.select(raw_payloads.c.sha256).where(raw_payloads.c.sha256.in_(set(shas))))}
    new: dict[str, bytes] = {}
    for sha, (data, _) in zip(shas, items, strict=True):
        if sha not in known:
            new.setdefault(sha, data)
    if new:
        conn.execute(raw_payloads.insert(), [
            {"sha256": s, "size": len(d), "content": d, "first_seen_at": fetched_at}
            for s, d in new.items()])
    # one batched INSERT … RETURNING, ids in the order of `items`
    ids = [int(i) for i in conn.execute(
        raw_fetches.insert().returning(raw_fetches.c.id, sort_by_parameter_order=True),
        [{"sha256": sha, "source": source, "uri": uri, "fetched_at": fetched_at,
          "parse_status": "pending"} for sha, (_, uri) in zip(shas, items, strict=True)],
    ).scalars()]
    return [ArchivedPayload(i, s, len(d), s in known)
            for i, s, (d, _) in zip(ids, shas, items, strict=True)]


def mark_parsed(conn: Connection, fetch_id: int, *, ok: bool, rows: int | None = None,
                error: str | None = None) -> None:
    """Record the parse outcome of one fetch (``error`` is the typed error's message)."""
    conn.execute(
        raw_fetches.update().where(raw_fetches.c.id == fetch_id).values(
            parse_status="ok" if ok else "failed", rows=rows, parse_error=error)
    )


def mark_parsed_many(conn: Connection, rows_by_fetch: dict[int, int | None]) -> None:
    """Mark many fetches parsed OK in one transaction (``rows`` None when parsed in a batch)."""
    if not rows_by_fetch:
        return
    stmt = raw_fetches.update().where(raw_fetches.c.id == sa.bindparam("fid")).values(
        parse_status="ok", rows=sa.bindparam("n"))
    conn.execute(stmt, [{"fid": k, "n": v} for k, v in rows_by_fetch.items()])


def load_payload(conn: Connection, sha256: str) -> bytes:
    """The archived bytes with this content hash."""
    row = conn.execute(
        sa.select(raw_payloads.c.content).where(raw_payloads.c.sha256 == sha256)
    ).first()
    if row is None:
        raise StorageError(f"no archived payload {sha256}")
    return bytes(row[0])


def failed_fetches(conn: Connection, source: str | None = None) -> list[dict[str, object]]:
    """Fetches whose payload failed to parse (to re-parse after a fix)."""
    q = sa.select(raw_fetches).where(raw_fetches.c.parse_status == "failed")
    if source is not None:
        q = q.where(raw_fetches.c.source == source)
    return [dict(r._mapping) for r in conn.execute(q.order_by(raw_fetches.c.id))]


def read_fetches(conn: Connection, source: str | None = None) -> list[dict[str, object]]:
    """Every archived fetch (oldest first): id, sha256, source, uri, fetched_at, parse status,
    error and rows."""
    q = sa.select(raw_fetches)
    if source is not None:
        q = q.where(raw_fetches.c.source == source)
    return [dict(r._mapping) for r in conn.execute(q.order_by(raw_fetches.c.id))]
