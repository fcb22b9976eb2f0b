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
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

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
    engine: Engine, data: bytes, *, source: str, uri: str, fetched_at: datetime
) -> ArchivedPayload:
    """Store ``data`` (once per content) and record this fetch; returns its identifiers."""
    sha = sha256_hex(data)
    try:
        with engine.begin() as conn:
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
                    sha256=sha, source=source, uri=uri, fetched_at=fetched_at,
                    parse_status="pending",
                ).returning(raw_fetches.c.id)
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise StorageError(f"archiving payload from {uri!r} failed: {exc}") from exc
    return ArchivedPayload(int(fetch_id), sha, len(data), exists)


def mark_parsed(engine: Engine, fetch_id: int, *, ok: bool, rows: int | None = None,
                error: str | None = None) -> None:
    """Record the parse outcome of one fetch (``error`` is the typed error's message)."""
    with engine.begin() as conn:
        conn.execute(
            raw_fetches.update().where(raw_fetches.c.id == fetch_id).values(
                parse_status="ok" if ok else "failed", rows=rows, parse_error=error)
        )


def load_payload(engine: Engine, sha256: str) -> bytes:
    """The archived bytes with this content hash."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(raw_payloads.c.content).where(raw_payloads.c.sha256 == sha256)
        ).first()
    if row is None:
        raise StorageError(f"no archived payload {sha256}")
    return bytes(row[0])


def failed_fetches(engine: Engine, source: str | None = None) -> list[dict[str, object]]:
    """Fetches whose payload failed to parse (to re-parse after a fix)."""
    q = sa.select(raw_fetches).where(raw_fetches.c.parse_status == "failed")
    if source is not None:
        q = q.where(raw_fetches.c.source == source)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(raw_fetches.c.id))]
