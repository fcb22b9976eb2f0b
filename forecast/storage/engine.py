"""Engine creation, the unit of work and schema migrations.

SQLite (the embedded default) runs in WAL mode so one writer and many readers work at once;
PostgreSQL is selected by a ``postgresql+psycopg://`` URL. ``migrate`` applies the Alembic
migrations shipped in ``forecast/storage/migrations``; ``check_schema`` refuses a database whose
schema is not at the revision this code expects.

``transaction(engine)`` is the unit of work: every repository function takes the
``Connection`` it yields, so a forecast, its cycle outcome, an alert state change, an outbox row
and an audit row commit together or not at all. It is also the one place where driver errors
become ``StorageError`` (with any password scrubbed from the message: ``redact``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from forecast.errors import MigrationError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA temp_store=MEMORY")  # staging tables for bulk upserts
    cur.execute("PRAGMA cache_size=-131072")  # 128 MB: the observation index outgrows 2 MB
    cur.close()


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # not even parseable: keep the scheme only, the rest may hold a secret
        return url.split(":", 1)[0] + ":***"


def scrub(text: str, engine: Engine | None) -> str:
    """``text`` with the engine URL's password removed (driver messages may quote it)."""
    password = engine.url.password if engine is not None else None
    return text.replace(str(password), "***") if password else text


def create_engine(url: str) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder when needed."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError) as exc:
        secret = _password_of(url)
        detail = str(exc).replace(secret, "***") if secret else str(exc)
        raise StorageError(f"cannot create a database engine for {redact(url)}: "
                           f"{detail}") from None
    return engine


def _password_of(url: str) -> str | None:
    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


@contextmanager
def transaction(engine: Engine, what: str = "database operation") -> Iterator[Connection]:
    """One unit of work: commits when the block ends, rolls back on any exception.

    Driver errors (``SQLAlchemyError``) become ``StorageError`` naming ``what``, with any
    password scrubbed; project errors raised inside pass through unchanged (after rollback).
    """
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"{what} failed: {scrub(_first_line(exc), engine)}") from exc


@contextmanager
def connection(engine: Engine, what: str = "database operation") -> Iterator[Connection]:
    """A connection outside the unit of work (e.g. to hold a session lock), with the same
    error translation as ``transaction``; the caller commits."""
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"{what} failed: {scrub(_first_line(exc), engine)}") from exc


def _first_line(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's multi-line statement/parameter dump."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# Alembic is imported by the functions that use it: a forecasting process never migrates.
def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise MigrationError("no migrations found in the package")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with transaction(engine, "reading the schema revision") as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> str:
    """Bring the schema up to the newest revision; returns it. Idempotent."""
    from alembic import command

    try:
        command.upgrade(_alembic_config(engine), "head")
    except SQLAlchemyError as exc:
        raise MigrationError(f"migration failed: {scrub(_first_line(exc), engine)}") from exc
    return head_revision()


def check_schema(engine: Engine) -> None:
    """Raise ``MigrationError`` with an instruction if the schema is not at head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise MigrationError(
            f"database schema is at {current or 'nothing'}, this code needs {head}: "
            "run `forecast init-db` to migrate"
        )
