"""Archive, migrations, rain vintages, forecasts, cycles, model versions, champions and the
audit log on SQLite and PostgreSQL; the unit of work and the issue-time lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from helpers import run
from sqlalchemy.engine import Engine

from forecast.catalogue import load_catalogue
from forecast.errors import CycleError, MigrationError, StorageError
from forecast.storage import archive, audit, cycles, forecasts, models, rain, stations
from forecast.storage.engine import (
    _alembic_config,
    check_schema,
    head_revision,
    migrate,
    transaction,
)
from forecast.storage.tables import (
    audit_log,
    forecast_runs,
    metadata,
    model_versions,
    raw_fetches,
    raw_payloads,
)

NOW = datetime(2024, 7, 1, 3, tzinfo=UTC)


def test_migrations_create_exactly_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    check_schema(engine)
    assert migrate(engine) == head_revision()  # idempotent


def test_upgrade_from_0001_numbers_reruns_and_keeps_champions(empty_engine: Engine) -> None:
    """A database at 0001 with a re-run forecast and a champion row upgrades without loss."""
    command.upgrade(_alembic_config(empty_engine), "0001")
    with empty_engine.begin() as conn:
        for i in (1, 2):
            conn.execute(sa.text(
                "INSERT INTO cycle_runs (issued_at, started_at, trigger, status) "
                "VALUES (:t, :t, 'cli', 'ok')"), {"t": NOW.replace(tzinfo=None)})
            conn.execute(sa.text(
                "INSERT INTO forecast_runs (river_id, issued_at, model_version, model_variant, "
                "input_cutoff, status, degraded, inputs, cycle_id, created_at) VALUES "
                "('koto', :t, :v, 'full', :t, 'ok', false, '{}', :c, :t)"),
                {"t": NOW.replace(tzinfo=None), "v": f"v{i}", "c": i})
        conn.execute(sa.text(
            "INSERT INTO model_versions (river_id, version, created_at, status, path, manifest) "
            "VALUES ('koto', 'v2', :t, 'champion', 'm/v2', '{}')"), {"t": NOW.replace(tzinfo=None)})
    migrate(empty_engine)
    with transaction(empty_engine) as conn:
        assert sorted(conn.execute(sa.select(forecast_runs.c.revision)).scalars()) == [1, 2]
        assert models.champion(conn, "koto") == "v2"
        assert "status" not in {c["name"] for c in sa.inspect(conn).get_columns("model_versions")}


def test_unmigrated_database_is_refused_with_instruction(empty_engine: Engine) -> None:
    with pytest.raises(MigrationError, match="forecast init-db"):
        check_schema(empty_engine)


def test_archive_is_content_addressed_and_keeps_every_fetch(engine: Engine) -> None:
    data = "時刻水位月表検索結果\n".encode("cp932") + bytes(range(256))
    a = run(engine, archive.archive_payload, data, source="mlit", uri="file:a.dat",
            fetched_at=NOW)
    b = run(engine, archive.archive_payload, data, source="mlit", uri="http://x/a.dat",
            fetched_at=NOW + timedelta(hours=1))
    assert a.sha256 == b.sha256 and not a.already_stored and b.already_stored
    assert run(engine, archive.load_payload, a.sha256) == data
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_payloads)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_fetches)).scalar() == 2
    run(engine, archive.mark_parsed, b.fetch_id, ok=False, error="ParseError: line 7")
    failed = run(engine, archive.failed_fetches, "mlit")
    assert [f["id"] for f in failed] == [b.fetch_id]
    assert failed[0]["parse_error"] == "ParseError: line 7"
    with pytest.raises(StorageError):
        run(engine, archive.load_payload, "0" * 64)


def _vintages(value: float) -> pd.DataFrame:
    issued = pd.Timestamp("2024-07-01 00:00", tz="UTC")
    valid = issued + pd.to_timedelta(np.arange(1, 7), unit="h")
    return pd.DataFrame({"product": "jma_srf", "catchment_id": "koto", "issued_at": issued,
                         "valid_at": valid, "value": value + np.arange(6.0)})


def test_rain_vintages_upsert_and_read(engine: Engine) -> None:
    assert run(engine, rain.upsert_rain_vintages, _vintages(1.0), now=NOW) == 6
    run(engine, rain.upsert_rain_vintages, _vintages(2.0), now=NOW)  # re-issue replaces
    got = run(engine, rain.read_rain_vintages, product="jma_srf")
    assert len(got) == 6
    np.testing.assert_allclose(got["value"], 2.0 + np.arange(6.0))
    assert (got["valid_at"] - got["issued_at"]).dt.total_seconds().tolist() == \
        [3600.0 * h for h in range(1, 7)]
    none = run(engine, rain.read_rain_vintages,
               issued_before=pd.Timestamp("2024-06-30", tz="UTC").to_pydatetime())
    assert none.empty


def test_rain_vintage_reads_match_a_filter_of_every_row(engine: Engine) -> None:
    """The indexed reads (products and catchments named in the query) return exactly the rows
    a filter of the whole table keeps, in the documented order."""
    rng = np.random.default_rng(1)
    rows = []
    for product in ("jma_srf", "b_other", "simulated_forecast"):
        for catchment in ("koto", "aa", "zz_last"):
            for k in range(int(rng.integers(0, 8))):
                issued = pd.Timestamp("2024-07-01", tz="UTC") + pd.Timedelta(minutes=30 * k)
                for h in range(1, 4):
                    rows.append((product, catchment, issued, issued + pd.Timedelta(hours=h),
                                 float(rng.gamma(1.0, 2.0))))
    every = pd.DataFrame(rows, columns=["product", "catchment_id", "issued_at", "valid_at",
                                        "value"])
    run(engine, rain.upsert_rain_vintages, every, now=NOW)
    t = pd.Timestamp("2024-07-01 01:00", tz="UTC")
    for kw in ({}, {"product": "b_other"}, {"catchment_id": "aa"}, {"issued_after": t},
               {"issued_before": t, "product": "jma_srf"},
               {"issued_after": t, "issued_before": t + pd.Timedelta(hours=1),
                "catchment_id": "zz_last"}, {"product": "none"}, {"catchment_id": "none"}):
        got = run(engine, rain.read_rain_vintages, **{
            k: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for k, v in kw.items()})
        keep = np.ones(len(every), dtype=bool)
        if "product" in kw:
            keep &= every["product"] == kw["product"]
        if "catchment_id" in kw:
            keep &= every["catchment_id"] == kw["catchment_id"]
        if "issued_after" in kw:
            keep &= every["issued_at"] >= kw["issued_after"]
        if "issued_before" in kw:
            keep &= every["issued_at"] <= kw["issued_before"]
        want = every[keep]
        key = ["catchment_id", "issued_at", "valid_at", "product"]
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True),
            want.sort_values(key).reset_index(drop=True), rtol=1e-6)  # PostgreSQL: REAL
        assert got[key[:3]].equals(got[key[:3]].sort_values(key[:3]))   # ordered


def _forecast(version: str, issued: str = "2024-07-01 03:00", base: float = 2.0
              ) -> pd.DataFrame:
    t = pd.Timestamp(issued, tz="UTC")
    h = np.arange(1, 7)
    q50 = base + 0.1 * h
    return pd.DataFrame({"river_id": "koto", "issued_at": t,
                         "valid_at": t + pd.to_timedelta(h, unit="h"), "horizon_h": h,
                         "level": q50, "q10": q50 - 0.2, "q50": q50, "q90": q50 + 0.3,
                         "model_version": version})


def test_forecast_runs_are_immutable_revisions_with_lineage(engine: Engine) -> None:
    with transaction(engine) as conn:
        cid, rev = cycles.start_cycle(conn, issued_at=NOW, started_at=NOW, trigger="test")
        assert rev == 1
        inputs = {"rain_forecast": "missing", "level": "ok"}
        forecasts.save_forecast(conn, _forecast("v1"), model_variant="no_forecast_rain",
                                input_cutoff=NOW, degraded=True, inputs=inputs,
                                created_at=NOW, cycle_id=cid, low_confidence=True,
                                reasons=["model variant no_forecast_rain"])
    # the re-run at :30 stores revision 2 and leaves revision 1 as it was
    later = NOW + timedelta(minutes=30)
    with transaction(engine) as conn:
        cid2, rev2 = cycles.start_cycle(conn, issued_at=NOW, started_at=later, trigger="test")
        forecasts.save_forecast(conn, _forecast("v1", base=3.0), model_variant="full",
                                input_cutoff=NOW, degraded=False, inputs={}, created_at=later,
                                cycle_id=cid2)
    assert rev2 == 2
    latest = run(engine, forecasts.latest_forecasts, "koto")
    assert latest["horizon_h"].tolist() == list(range(1, 7))
    assert set(latest["revision"]) == {2} and set(latest["model_variant"]) == {"full"}
    np.testing.assert_allclose(latest["q50"], 3.0 + 0.1 * np.arange(1, 7))
    archived = run(engine, forecasts.forecast_archive, "koto", NOW)
    first = archived[archived["revision"] == 1]
    np.testing.assert_allclose(first["q50"], 2.0 + 0.1 * np.arange(1, 7))
    assert first["inputs"].iloc[0] == inputs
    assert first["reasons"].iloc[0] == ["model variant no_forecast_rain"]
    assert bool(first["low_confidence"].iloc[0]) and int(first["cycle_id"].iloc[0]) == cid
    assert first["input_cutoff"].iloc[0] == pd.Timestamp(NOW)
    with pytest.raises(StorageError):
        run(engine, forecasts.save_forecast, pd.concat([_forecast("v1"), _forecast("v2")]),
            model_variant="full", input_cutoff=NOW, degraded=False, inputs={}, created_at=NOW)


def test_latest_forecast_is_the_newest_issue_time(engine: Engine) -> None:
    for issued, base in (("2024-07-01 04:00", 4.0), ("2024-07-01 03:00", 3.0)):
        run(engine, forecasts.save_forecast, _forecast("v1", issued, base), model_variant="full",
            input_cutoff=NOW, degraded=False, inputs={}, created_at=NOW)
    latest = run(engine, forecasts.latest_forecasts)
    assert set(latest["issued_at"]) == {pd.Timestamp("2024-07-01 04:00", tz="UTC")}


def test_cycle_outcomes_and_close(engine: Engine) -> None:
    with transaction(engine) as conn:
        cid, _ = cycles.start_cycle(conn, issued_at=NOW, started_at=NOW, trigger="test",
                                    owner="host:1")
        cycles.record_outcome(conn, cid, river_id="koto", status="failed", message="boom")
        cycles.finish_cycle(conn, cid, finished_at=NOW + timedelta(seconds=9), status="failed",
                            message=None)
    runs = run(engine, cycles.read_cycles, issued_at=NOW)
    assert runs["status"].tolist() == ["failed"] and runs["owner"].tolist() == ["host:1"]
    assert (runs["finished_at"] - runs["started_at"]).dt.total_seconds().tolist() == [9.0]
    assert run(engine, cycles.read_outcomes, cid) == [
        {"river_id": "koto", "status": "failed", "model_version": None, "message": "boom"}]


def test_a_forecast_and_its_audit_row_commit_together_or_not_at_all(engine: Engine) -> None:
    with pytest.raises(ZeroDivisionError), transaction(engine) as conn:
        forecasts.save_forecast(conn, _forecast("v1"), model_variant="full", input_cutoff=NOW,
                                degraded=False, inputs={}, created_at=NOW)
        audit.audit(conn, at=NOW, actor="t", action="forecast", target="koto")
        _ = 1 / 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(forecast_runs)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar() == 0


def test_driver_errors_become_storage_errors(engine: Engine) -> None:
    with pytest.raises(StorageError, match="writing twice failed"), \
            transaction(engine, "writing twice") as conn:
        for _ in range(2):
            models.register_model_version(conn, river_id="k", version="v", path="p",
                                          manifest={}, created_at=NOW)
            conn.execute(model_versions.insert().values(river_id="k", version="v", path="p",
                                                        manifest={}, created_at=NOW))


def test_champion_events_are_the_one_record(engine: Engine) -> None:
    with transaction(engine) as conn:
        for v in ("v1", "v2"):
            models.register_model_version(conn, river_id="koto", version=v, path=f"m/{v}",
                                          manifest={"v": v}, created_at=NOW)
        models.register_model_version(conn, river_id="koto", version="v1", path="m/v1",
                                      manifest={}, created_at=NOW)  # idempotent
        assert models.champion(conn, "koto") is None
        for action, v in (("promote", "v1"), ("promote", "v2")):
            models.add_champion_event(conn, river_id="koto", version=v, action=action, at=NOW,
                                      actor="h", note="")
        assert models.champion(conn, "koto") == "v2"
        models.add_champion_event(conn, river_id="koto", version="v1", action="rollback",
                                  at=NOW, actor="h", note="")
        assert models.champion(conn, "koto") == "v1"
        assert models.champions(conn) == {"koto": "v1"}
        table = models.list_model_versions(conn, "koto").set_index("version")["champion"]
        assert table.to_dict() == {"v1": True, "v2": False}
        audit.audit(conn, at=NOW, actor="hydrologist", action="model.promote",
                    target="koto/v2")
        assert audit.read_audit(conn, action="model.promote")[0]["target"] == "koto/v2"
    with pytest.raises(ValueError):
        run(engine, models.add_champion_event, river_id="koto", version="v1", action="swap",
            at=NOW, actor="h", note="")


def test_champion_stack_replays_pushes_and_pops() -> None:
    h = [{"version": "a", "action": "promote"}, {"version": "b", "action": "promote"},
         {"version": "c", "action": "promote"}, {"version": "b", "action": "rollback"},
         {"version": "a", "action": "rollback"}, {"version": "d", "action": "promote"}]
    assert models.champion_stack(h) == ["a", "d"]
    assert models.champion_stack([]) == []


def test_issue_lock_lets_one_process_run_an_issue_time(engine: Engine) -> None:
    with cycles.issue_lock(engine, NOW, owner="a:1", now=NOW):
        with pytest.raises(CycleError, match="another process"), \
                cycles.issue_lock(engine, NOW, owner="b:2", now=NOW):
            pass
        # another issue time is free
        with cycles.issue_lock(engine, NOW + timedelta(minutes=30), owner="b:2", now=NOW):
            pass
    with cycles.issue_lock(engine, NOW, owner="b:2", now=NOW):   # released: free again
        pass


def test_sqlite_lock_of_a_dead_process_expires(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from forecast.storage.engine import create_engine
    from forecast.storage.tables import cycle_locks

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    with engine.begin() as conn:   # a process that died while holding the lock
        conn.execute(cycle_locks.insert().values(issued_at=NOW, owner="dead:9",
                                                 acquired_at=NOW, expires_at=NOW))
    with pytest.raises(CycleError, match="dead:9"), \
            cycles.issue_lock(engine, NOW, owner="a:1", now=NOW):
        pass
    with cycles.issue_lock(engine, NOW, owner="a:1", now=NOW + cycles.LOCK_TTL):
        pass


def test_sync_stations_from_catalogue(engine: Engine, reference_catalogue_path) -> None:  # type: ignore[no-untyped-def]
    cat = load_catalogue(reference_catalogue_path)
    assert run(engine, stations.sync_stations, cat) == 3
    assert run(engine, stations.sync_stations, cat) == 3  # idempotent
