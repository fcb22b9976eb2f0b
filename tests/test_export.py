"""Data platform export (``forecast export``): a database filled by real ticks over a rising
river (SQLite and PostgreSQL), exported to partitioned Parquet, read back with pyarrow and
compared with an independent SQL read; two incremental exports with ticks between them
equal one export of the whole span (no duplicates, no gaps); the schema is the README's."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine
from test_notify_stage import T0, _path

from forecast.cli import main
from forecast.cli.export import EXPORT_DATASETS
from forecast.clock import FixedClock
from forecast.errors import ConfigError
from forecast.ingest.replay import Replay
from forecast.pipeline.context import Context
from forecast.pipeline.demo import init_db
from forecast.pipeline.export import DATASETS, SCHEMA_VERSION, SCHEMAS, STATE_FILE, export
from forecast.pipeline.notify import acknowledge_notification
from forecast.pipeline.tick import Feeds, run_tick
from forecast.settings import load_settings
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage.engine import create_engine

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
# the key of one version of a row: immutable datasets have one version per key
VERSION_KEY = {
    "observations": ["station_id", "variable", "time", "revision"],
    "forecasts": ["run_id", "horizon_h"], "notifications": ["id", "changed_at"],
    "notification_messages": ["id"], "runs": ["id"], "run_rivers": ["cycle_id", "river_id"],
    "run_sources": ["cycle_id", "source"]}
CURRENT_KEY = {"observations": ["station_id", "variable", "time"], "notifications": ["id"]}


def _ticks(ctx: Context, clock: FixedClock, feeds: Feeds, ks: range) -> None:
    for k in ks:
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        run_tick(ctx, t, feeds=feeds, models=lambda r: None)


def _read(out: Path, name: str) -> pd.DataFrame:
    """One dataset of an export directory, every file, read back by pyarrow (Hive layout)."""
    if not (out / name).exists():
        return pd.DataFrame(columns=list(SCHEMAS[name].names))
    table = ds.dataset(out / name, format="parquet", partitioning="hive").to_table()
    return table.to_pandas().drop(columns="date")


def _rows(df: pd.DataFrame, name: str) -> pd.DataFrame:
    cols = list(SCHEMAS[name].names)
    return df[cols].sort_values(VERSION_KEY[name]).reset_index(drop=True)


def _current(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """The newest version of each row (what a DWH keeps after merging the increments)."""
    if name not in CURRENT_KEY:
        return _rows(df, name)
    newest = df.sort_values(VERSION_KEY[name]).drop_duplicates(CURRENT_KEY[name], keep="last")
    return _rows(newest, name)


def _active_level(ctx: Context) -> int:
    with ctx.engine.connect() as conn:
        got = conn.execute(sa.text("SELECT id FROM notifications WHERE state = 'active' "
                                   "AND topic = 'level'")).scalars().all()
    assert len(got) == 1, got
    return int(got[0])


@pytest.fixture
def world(engine: Engine) -> tuple[Context, FixedClock, Feeds]:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    obs, _ = _path(cat)
    clock = FixedClock(T0)
    return (Context.of(engine, cat, clock=clock), clock,
            Feeds(replay=Replay.of(obs, name="simulated")))


def test_two_increments_equal_one_export_and_the_database(
        world: tuple[Context, FixedClock, Feeds], tmp_path: Path) -> None:
    ctx, clock, feeds = world
    inc, once = tmp_path / "inc", tmp_path / "once"
    _ticks(ctx, clock, feeds, range(0, 18))          # to 08:30, standby raised
    first_until = clock.now()
    first = export(ctx, inc)
    assert first.datasets["forecasts"].rows > 0 and first.datasets["notifications"].rows > 0
    state = json.loads((inc / STATE_FILE).read_text(encoding="utf-8"))
    assert {k: v["until"] for k, v in state["datasets"].items()} == {
        n: first_until.isoformat() for n in DATASETS}
    # the rows stamped at exactly `until` (the last tick's) wait for the next window
    last_runs = _read(inc, "runs")
    assert last_runs["finished_at"].max() < first_until
    standby = _active_level(ctx)
    _ticks(ctx, clock, feeds, range(18, 24))         # escalation to caution
    clock.set(clock.now() + timedelta(minutes=3))
    caution = _active_level(ctx)
    assert caution != standby
    acknowledge_notification(ctx, caution, user="suzuki")
    _ticks(ctx, clock, feeds, range(24, 28))
    second = export(ctx, inc)
    assert second.datasets["forecasts"].since == first_until
    assert second.datasets["forecasts"].rows > 0
    assert export(ctx, once).datasets["forecasts"].since is None
    # nothing new at the same clock: an empty window, no files, the state unchanged
    again = export(ctx, inc)
    assert all(r.rows == 0 and not r.files for r in again.datasets.values())

    for name in DATASETS:
        union, whole = _read(inc, name), _read(once, name)
        assert not union.duplicated(VERSION_KEY[name]).any(), f"{name}: exported twice"
        assert len(union) == sum(r.datasets[name].rows for r in (first, second)), name
        pd.testing.assert_frame_equal(_current(union, name), _rows(whole, name),
                                      obj=name)
    # notifications: exported as they were in each window their event changed in (active,
    # then as the fall left it); the messages hold every step between
    n = _read(inc, "notifications").sort_values("changed_at")
    assert list(n.loc[n["id"] == standby, "changed_at"] >= first_until) == [False, True]
    assert n.loc[n["id"] == standby, "state"].iloc[0] == "active"
    assert (n["id"] == caution).sum() == 1
    kinds = _read(inc, "notification_messages").sort_values("id")
    assert "acknowledge" in set(kinds.loc[kinds["notification_id"] == caution, "kind"])

    # an export of everything (until after the last tick) against an independent read of
    # the tables; the last tick's rows, stamped at the clock's now, were not in `once`
    full = tmp_path / "full"
    export(ctx, full, until=clock.now() + timedelta(minutes=1))
    last = _read(full, "forecasts")
    assert len(last) - len(_read(once, "forecasts")) == (last["created_at"] == clock.now()).sum()
    once = full
    with ctx.engine.connect() as conn:
        def sql(q: str) -> pd.DataFrame:
            return pd.read_sql(sa.text(q), conn)

        fv = sql("SELECT r.id AS run_id, v.horizon_h, r.river_id, v.q10, v.q50, v.q90, "
                 "v.level, r.model_variant FROM forecast_values v "
                 "JOIN forecast_runs r ON r.id = v.run_id ORDER BY r.id, v.horizon_h")
        ob = sql("SELECT station_id, variable, value, flag, revision, source FROM observations "
                 "ORDER BY station_id, variable, time")
        counts = {t: int(sql(f"SELECT count(*) AS n FROM {t}")["n"].iat[0]) for t in (
            "notifications", "alert_messages", "cycle_river_outcomes",
            "cycle_source_outcomes")}
        msgs = sql("SELECT id, payload FROM alert_messages ORDER BY id")
        runs = sql("SELECT id, stages FROM cycle_runs WHERE finished_at IS NOT NULL "
                   "ORDER BY id")
    got = _read(once, "forecasts").sort_values(["run_id", "horizon_h"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[list(fv.columns)], fv, check_dtype=False)
    assert (got["valid_at"] - got["issued_at"] == pd.to_timedelta(got["horizon_h"], "h")).all()
    o = _read(once, "observations").sort_values(["station_id", "variable", "time"])
    pd.testing.assert_frame_equal(o[list(ob.columns)].reset_index(drop=True), ob,
                                  check_dtype=False)
    assert set(o["flag_name"]) <= {"good", "filled", "doubtful", "unreliable", "missing"}
    assert len(_read(once, "notifications")) == counts["notifications"]
    assert len(_read(once, "notification_messages")) == counts["alert_messages"]
    assert len(_read(once, "run_rivers")) == counts["cycle_river_outcomes"]
    assert len(_read(once, "run_sources")) == counts["cycle_source_outcomes"]
    r = _read(once, "runs").sort_values("id")
    assert list(r["id"]) == list(runs["id"]) and len(r) == 28
    stored = [s if isinstance(s, dict) else json.loads(s) for s in runs["stages"]]
    assert [json.loads(s) for s in r["stages"]] == stored
    m = _read(once, "notification_messages").sort_values("id")
    assert [json.loads(p) for p in m["payload"]] == [
        p if isinstance(p, dict) else json.loads(p) for p in msgs["payload"]]


def test_an_export_before_every_tick_misses_nothing(
        world: tuple[Context, FixedClock, Feeds], tmp_path: Path) -> None:
    """An export at T + 5 min, before the tick of T (at T + 20 min): the tick stamps its
    notification changes with T (``updated_at``), inside the window already exported; the
    change times chosen still hand every change to the next export."""
    ctx, clock, feeds = world
    inc, once = tmp_path / "inc", tmp_path / "once"
    for k in range(0, 26):
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=5))
        export(ctx, inc)
        _ticks(ctx, clock, feeds, range(k, k + 1))
    clock.set(clock.now() + timedelta(minutes=1))
    export(ctx, inc)
    export(ctx, once)
    assert len(_read(once, "notifications")) >= 3
    for name in DATASETS:
        union, whole = _read(inc, name), _read(once, name)
        assert not union.duplicated(VERSION_KEY[name]).any(), name
        pd.testing.assert_frame_equal(_current(union, name), _rows(whole, name), obj=name)


def _documented() -> dict[str, list[tuple[str, str, bool]]]:
    """The README's tables: dataset → [(column, Arrow type, nullable)]."""
    section = README.split("### Data platform export", 1)[1].split("\n## ", 1)[0]
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for name, body in re.findall(r"^#### `([a-z_]+)`[^\n]*\n(.*?)(?=^#### |\Z)", section,
                                 re.M | re.S):
        out[name] = [(c, t, n == "yes") for c, t, n in re.findall(
            r"^\| `([a-z0-9_]+)` \| `([^`]+)` \| (yes|no) \|", body, re.M)]
    return out


def test_files_have_the_documented_schema(world: tuple[Context, FixedClock, Feeds],
                                          tmp_path: Path) -> None:
    ctx, clock, feeds = world
    _ticks(ctx, clock, feeds, range(0, 16))
    _ticks(ctx, clock, feeds, range(50, 51))   # the next UTC day: a window over two days
    rep = export(ctx, tmp_path, until=clock.now() + timedelta(minutes=1))
    documented = _documented()
    assert set(documented) == set(DATASETS) == set(EXPORT_DATASETS)
    for name in DATASETS:
        expected = [(f.name, str(f.type), f.nullable) for f in SCHEMAS[name]]
        assert documented[name] == expected, name
        files = rep.datasets[name].files
        assert files, name
        for path in files:
            assert path.parent.parent.name == name
            assert re.fullmatch(r"date=\d{4}-\d{2}-\d{2}", path.parent.name)
            schema = pq.read_schema(path)
            assert [(f.name, str(f.type), f.nullable) for f in schema] == expected, path
            assert schema.metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()
            day = pq.read_table(path).column(
                {"observations": "ingested_at", "forecasts": "created_at",
                 "notifications": "changed_at", "notification_messages": "created_at"}
                .get(name, "finished_at")).to_pandas().dt.strftime("date=%Y-%m-%d")
            assert set(day) == {path.parent.name}
    assert len({p.parent.name for p in rep.datasets["runs"].files}) == 2
    assert not list(tmp_path.rglob(".*.tmp"))


def test_wrong_windows_are_refused(world: tuple[Context, FixedClock, Feeds],
                                   tmp_path: Path) -> None:
    ctx, clock, _ = world
    t = clock.now()
    with pytest.raises(ConfigError, match="unknown dataset nope"):
        export(ctx, tmp_path, datasets=["nope"])
    with pytest.raises(ConfigError, match="is not before"):
        export(ctx, tmp_path, since=t, until=t)
    with pytest.raises(ConfigError, match="no UTC offset"):
        export(ctx, tmp_path, since=datetime(2024, 7, 1))
    export(ctx, tmp_path, datasets=["runs"], until=t)
    with pytest.raises(ConfigError, match="give --since"):
        export(ctx, tmp_path, datasets=["runs"], until=t - timedelta(hours=1))
    # an explicit older window is allowed and leaves the incremental point alone
    export(ctx, tmp_path, datasets=["runs"], since=t - timedelta(hours=2),
           until=t - timedelta(hours=1))
    state = json.loads((tmp_path / STATE_FILE).read_text(encoding="utf-8"))
    assert state["datasets"] == {"runs": {"until": t.isoformat()}}
    (tmp_path / STATE_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an export state file"):
        export(ctx, tmp_path)


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> None:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    cat_file = tmp_path / "rivers.yaml"
    cat_file.write_text(yaml.safe_dump(cat.model_dump(mode="json", exclude_none=True),
                                       allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FORECAST_CATALOGUE", str(cat_file))
    settings = load_settings()
    clock = FixedClock(T0)
    ctx = Context.of(create_engine(settings.db_url), cat, clock=clock, settings=settings)
    init_db(ctx)
    obs, _ = _path(cat)
    _ticks(ctx, clock, Feeds(replay=Replay.of(obs, name="simulated")), range(0, 3))
    out = tmp_path / "out"
    assert main(["export", "--out", str(out), "--dataset", "runs", "--dataset", "forecasts",
                 "--until", "2024-07-01T11:00+09:00"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^runs\s+3 rows in 1 file", text, re.M), text
    assert re.search(r"^forecasts\s+\d+ rows in 1 file", text, re.M), text
    assert "observations" not in text
    assert len(_read(out, "runs")) == 3
    for argv, says in (
            (["--dataset", "nope"], "invalid choice: 'nope'"),
            (["--since", "yesterday"], "is not an ISO 8601 time"),
            (["--since", "2024-07-02T00:00Z", "--until", "2024-07-01T00:00Z"],
             "is not before --until"),
            (["--until", "2024-07-01T00:00Z"], "give --since")):   # before the state
        try:   # argument errors leave argparse as SystemExit, the others as main's code
            code = main(["export", "--out", str(out), *argv])
        except SystemExit as exc:
            code = exc.code
        assert code == 2, argv
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
