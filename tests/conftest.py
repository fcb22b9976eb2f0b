"""Shared fixtures. PostgreSQL tests run when FORECAST_TEST_POSTGRES_URL is set (.ci/run sets it
to the local server) and are skipped with that reason otherwise, except under CI (``CI=true``),
where a skipped ``postgres`` test is turned into a failure so that CI cannot go green without
having run them (``pytest_runtest_makereport`` below)."""

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

pytest_plugins = ("pytester",)   # tests/test_conftest_ci.py runs this conftest on tiny test files


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Under CI a skipped ``postgres`` test fails: CI must exercise the PostgreSQL paths."""
    report: pytest.TestReport = yield
    if (report.skipped and not hasattr(report, "wasxfail") and _under_ci()
            and item.get_closest_marker("postgres") is not None):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"PostgreSQL test skipped under CI=true ({reason}); CI must run it: start the "
            "server and set FORECAST_TEST_POSTGRES_URL (.ci/run does both)"
        )
    return report


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
