"""Shared fixtures. PostgreSQL tests run when FORECAST_TEST_POSTGRES_URL is set (.ci/run sets it
to the local server) and are skipped with that reason otherwise."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from forecast.storage.engine import create_engine, migrate

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("FORECAST_TEST_POSTGRES_URL", "")
PG_SKIP = "PostgreSQL tests skipped: set FORECAST_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"


def _pg_engine() -> Iterator[Engine]:
    """A fresh schema on the test server, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    engine = create_engine(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database: SQLite file (WAL) or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'test.db'}")
        yield engine
        engine.dispose()
    else:
        if not PG_URL:
            pytest.skip(PG_SKIP)
        yield from _pg_engine()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """A migrated database (SQLite and PostgreSQL)."""
    migrate(empty_engine)
    return empty_engine


@pytest.fixture(scope="session")
def reference_catalogue_path() -> Path:
    return ROOT / "config" / "reference_rivers.yaml"
