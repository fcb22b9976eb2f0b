"""Archive, migrations, rain vintages, forecasts, model versions and audit log on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from forecast.catalogue import load_catalogue
from forecast.errors import MigrationError, StorageError
from forecast.storage import archive, repository
from forecast.storage.engine import check_schema, head_revision, migrate
from forecast.storage.tables import metadata, raw_fetches, raw_payloads

NOW = datetime(2024, 7, 1, 3, tzinfo=UTC)


def test_migrations_create_exactly_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    check_schema(engine)
    assert migrate(engine) == head_revision()  # idempotent


def test_unmigrated_database_is_refused_with_instruction(empty_engine: Engine) -> None:
    with pytest.raises(MigrationError, match="forecast init-db"):
        check_schema(empty_engine)


def test_archive_is_content_addressed_and_keeps_every_fetch(engine: Engine) -> None:
    data = "時刻水位月表検索結果\n".encode("cp932") + bytes(range(256))
    a = archive.archive_payload(engine, data, source="mlit", uri="file:a.dat", fetched_at=NOW)
    b = archive.archive_payload(engine, data, source="mlit", uri="http://x/a.dat",
                                fetched_at=NOW + timedelta(hours=1))
    assert a.sha256 == b.sha256 and not a.already_stored and b.already_stored
    assert archive.load_payload(engine, a.sha256) == data
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_payloads)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_fetches)).scalar() == 2
    archive.mark_parsed(engine, b.fetch_id, ok=False, error="ParseError: line 7")
    failed = archive.failed_fetches(engine, "mlit")
    assert [f["id"] for f in failed] == [b.fetch_id]
    assert failed[0]["parse_error"] == "ParseError: line 7"
    with pytest.raises(StorageError):
        archive.load_payload(engine, "0" * 64)


def _vintages(value: float) -> pd.DataFrame:
    issued = pd.Timestamp("2024-07-01 00:00", tz="UTC")
    valid = issued + pd.to_timedelta(np.arange(1, 7), unit="h")
    return pd.DataFrame({"product": "jma_srf", "catchment_id": "koto", "issued_at": issued,
                         "valid_at": valid, "value": value + np.arange(6.0)})


def test_rain_vintages_upsert_and_read(engine: Engine) -> None:
    assert repository.upsert_rain_vintages(engine, _vintages(1.0), now=NOW) == 6
    repository.upsert_rain_vintages(engine, _vintages(2.0), now=NOW)  # re-issue replaces
    got = repository.read_rain_vintages(engine, product="jma_srf")
    assert len(got) == 6
    np.testing.assert_allclose(got["value"], 2.0 + np.arange(6.0))
    assert (got["valid_at"] - got["issued_at"]).dt.total_seconds().tolist() == \
        [3600.0 * h for h in range(1, 7)]
    none = repository.read_rain_vintages(
        engine, issued_before=pd.Timestamp("2024-06-30", tz="UTC").to_pydatetime())
    assert none.empty


def _forecast(version: str, issued: str = "2024-07-01 03:00") -> pd.DataFrame:
    t = pd.Timestamp(issued, tz="UTC")
    h = np.arange(1, 7)
    q50 = 2.0 + 0.1 * h
    return pd.DataFrame({"river_id": "koto", "issued_at": t,
                         "valid_at": t + pd.to_timedelta(h, unit="h"), "horizon_h": h,
                         "level": q50, "q10": q50 - 0.2, "q50": q50, "q90": q50 + 0.3,
                         "model_version": version})


def test_forecasts_keep_lineage_and_rerun_replaces(engine: Engine) -> None:
    cid = repository.start_cycle(engine, issued_at=NOW, started_at=NOW, trigger="test")
    inputs = {"rain_forecast": "missing", "level": "ok"}
    repository.save_forecast(engine, _forecast("v1"), model_variant="no_forecast_rain",
                             input_cutoff=NOW, degraded=True, inputs=inputs, created_at=NOW,
                             cycle_id=cid)
    repository.save_forecast(engine, _forecast("v1"), model_variant="full", input_cutoff=NOW,
                             degraded=False, inputs={}, created_at=NOW, cycle_id=cid)
    repository.finish_cycle(engine, cid, finished_at=NOW, status="ok",
                            outcomes=[{"river_id": "koto", "status": "ok"}])
    got = repository.latest_forecasts(engine, "koto")
    assert len(got) == 6
    assert set(got["model_variant"]) == {"full"}
    assert got["horizon_h"].tolist() == list(range(1, 7))
    assert (got["q10"] <= got["q50"]).all() and (got["q50"] <= got["q90"]).all()
    with pytest.raises(StorageError):
        repository.save_forecast(engine, pd.concat([_forecast("v1"), _forecast("v2")]),
                                 model_variant="full", input_cutoff=NOW, degraded=False,
                                 inputs={}, created_at=NOW)


def test_model_versions_champion_switch_and_audit(engine: Engine) -> None:
    for v in ("v1", "v2"):
        repository.register_model_version(engine, river_id="koto", version=v, path=f"m/{v}",
                                          manifest={"v": v}, created_at=NOW)
    repository.set_champion(engine, river_id="koto", version="v1", at=NOW)
    repository.set_champion(engine, river_id="koto", version="v2", at=NOW)
    st = repository.list_model_versions(engine, "koto").set_index("version")["status"]
    assert st.to_dict() == {"v1": "retired", "v2": "champion"}
    with pytest.raises(StorageError):
        repository.set_champion(engine, river_id="koto", version="nope", at=NOW)
    repository.audit(engine, at=NOW, actor="hydrologist", action="promote", target="koto/v2")
    assert repository.read_audit(engine)[0]["target"] == "koto/v2"


def test_sync_stations_from_catalogue(engine: Engine, reference_catalogue_path) -> None:  # type: ignore[no-untyped-def]
    cat = load_catalogue(reference_catalogue_path)
    n = repository.sync_stations(engine, cat)
    assert n == 3
    assert repository.sync_stations(engine, cat) == 3  # idempotent
