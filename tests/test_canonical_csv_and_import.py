"""Canonical CSV parser and the file-import service (archive before parse; a bad file never
stops the others)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import context, run
from sqlalchemy.engine import Engine

from forecast.catalogue import load_catalogue
from forecast.errors import EncodingError, ParseError
from forecast.frames import DISCHARGE, DISCHARGE_DAILY_MEAN, LEVEL, RAIN, Flag
from forecast.ingest.canonical_csv import parse_canonical_csv
from forecast.pipeline.context import Context
from forecast.pipeline.importer import import_files
from forecast.storage.engine import create_engine, migrate
from forecast.storage.observations import read_observations
from forecast.storage.tables import raw_fetches, raw_payloads

# a file without a variable column no longer defaults to level_m: the column names it
GOOD = (b"station_id,time,value,variable\nG1,2024-07-01T09:00+09:00,1.25,level_m\n"
        b"G1,2024-07-01T09:10+09:00,,level_m\n")
NOW = datetime(2024, 7, 2, tzinfo=UTC)
CAT = load_catalogue(Path(__file__).resolve().parent.parent / "config" / "reference_rivers.yaml")


@pytest.fixture
def ctx(engine: Engine) -> Context:
    return context(engine, CAT, NOW)


def test_parses_times_to_utc_and_blank_to_nan() -> None:
    df = parse_canonical_csv(GOOD, "x.csv")
    assert df["time"].iloc[0] == datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
    assert df["value"].isna().tolist() == [False, True]


@pytest.mark.parametrize(("data", "err", "where"), [
    (b"station,time,value\nG1,2024-07-01T09:00+09:00,1\n", ParseError, "header"),
    (b"station_id,time,value\nG1,2024-07-01T09:00,1\n", ParseError, "row 2"),
    (b"station_id,time,value\nG1,2024-07-01T09:00Z,1\nG1,2024-07-01T09:10Z,abc\n",
     ParseError, "row 3"),
    (b"station_id,time,value\nG1,2024-07-01T09:00Z,inf\n", ParseError, "row 2"),
    ("station_id,time,value\nG1,2024-07-01T09:00Z,1\n".encode("utf-16"), EncodingError, "byte"),
])
def test_bad_input_names_the_position(data: bytes, err: type, where: str) -> None:
    with pytest.raises(err, match=where):
        parse_canonical_csv(data, "x.csv")


def test_import_archives_everything_and_continues_after_a_bad_file(
        ctx: Context, engine: Engine, tmp_path: Path) -> None:
    good, bad, gone = tmp_path / "good.csv", tmp_path / "bad.csv", tmp_path / "missing.csv"
    good.write_bytes(GOOD)
    bad.write_bytes(b"station_id,time,value\nG2,2024-07-01T09:00,1\n")
    report = import_files(ctx, [bad, good, gone], source="canonical_csv", accept_unknown=True)
    assert report.rows == {str(good): 2}
    assert set(report.failed) == {str(bad), str(gone)}
    assert report.unknown_stations == {"G1"}
    assert len(run(engine, read_observations)) == 2
    with engine.connect() as conn:
        status = dict(conn.execute(sa.select(raw_fetches.c.uri, raw_fetches.c.parse_status)).all())
        n_payloads = conn.execute(sa.select(sa.func.count()).select_from(raw_payloads)).scalar()
    assert status == {bad.resolve().as_uri(): "failed", good.resolve().as_uri(): "ok"}
    assert n_payloads == 2  # the bad file's bytes are kept for re-parsing
    again = import_files(ctx, [good], source="canonical_csv", accept_unknown=True)
    assert again.inserted == 0 and again.revised == 0


MLIT = Path(__file__).parent / "data" / "mlit-wis"


def test_batch_import_isolates_a_bad_file(ctx: Context, engine: Engine, tmp_path: Path) -> None:
    """mlit_dat parses files in batches; one truncated file must not cost the others."""
    good = sorted(MLIT.glob("*kind6*.dat"))
    bad = tmp_path / "truncated.dat"
    data = good[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2 - 7])
    report = import_files(ctx, [*good, bad], source="mlit_dat")
    assert list(report.failed) == [str(bad)]
    assert set(report.rows) == {str(p) for p in good}
    stored = run(engine, read_observations)
    assert len(stored) >= report.total_rows > 0   # QC may add FILLED rows in short gaps
    with engine.connect() as conn:
        status = sorted(conn.execute(sa.select(raw_fetches.c.parse_status)).scalars())
    assert status == ["failed", "ok", "ok"]
    # all-good batch goes through the fast path and gives the same rows
    again = import_files(ctx, good, source="mlit_dat")
    assert not again.failed and again.inserted == 0 and again.revised == 0


def test_daily_table_after_the_hourly_one_leaves_the_hourly_series_alone(
        ctx: Context, engine: Engine, tmp_path: Path) -> None:
    """The exact steps of the defect: `import --source mlit_dat` of the hourly months, then of
    the daily year table of the same station (and both in one command)."""
    hourly = sorted(MLIT.glob("japan_301011281104010_kind6_*.dat"))
    daily = MLIT / "japan_301011281104010_kind7_2004.dat"
    assert not import_files(ctx, hourly, source="mlit_dat").failed
    before = run(engine, read_observations, variable=DISCHARGE)
    report = import_files(ctx, [daily], source="mlit_dat")
    assert not report.failed and report.revised == 0
    after = run(engine, read_observations, variable=DISCHARGE)
    pd.testing.assert_frame_equal(before, after)
    days = run(engine, read_observations, variable=DISCHARGE_DAILY_MEAN)
    assert 360 <= len(days) <= 366
    # in one command, into a second database: the same two series, nothing dropped
    second = create_engine(f"sqlite:///{tmp_path / 'one_command.db'}")
    migrate(second)
    assert not import_files(context(second, CAT, NOW), [*hourly, daily],
                            source="mlit_dat").failed
    cols = ["station_id", "variable", "time", "value", "flag"]
    for variable, want in ((DISCHARGE, before), (DISCHARGE_DAILY_MEAN, days)):
        got = run(second, read_observations, variable=variable)
        pd.testing.assert_frame_equal(got[cols], want[cols])


def test_qc_runs_on_import(ctx: Context, engine: Engine, tmp_path: Path) -> None:
    """1e308, -5000 and NaN in a canonical CSV are never stored as GOOD."""
    f = tmp_path / "bad_values.csv"
    f.write_text("station_id,time,value,variable\n"
                 "jiseiji,2024-07-01T00:00Z,2.10,level_m\n"
                 "jiseiji,2024-07-01T00:10Z,1e308,level_m\n"
                 "jiseiji,2024-07-01T00:20Z,-5000,level_m\n"
                 "jiseiji,2024-07-01T00:30Z,,level_m\n"
                 "jiseiji,2024-07-01T00:40Z,2.12,level_m\n", encoding="utf-8")
    report = import_files(ctx, [f], source="canonical_csv")
    assert not report.failed
    got = run(engine, read_observations, station_ids=["jiseiji"]).set_index("time")
    t = pd.Timestamp("2024-07-01T00:00Z")
    flags = {int((k - t).total_seconds() // 600): (int(v), r)
             for k, v, r in zip(got.index, got["flag"], got["qc_rule"], strict=True)}
    assert flags[0][0] == Flag.GOOD and flags[4][0] == Flag.GOOD
    assert flags[1] == (Flag.UNRELIABLE, "hard_max") and flags[2] == (Flag.UNRELIABLE, "hard_min")
    assert flags[3][0] in (Flag.MISSING, Flag.FILLED)


def test_rain_csv_without_variable_is_stored_as_rain(ctx: Context, engine: Engine,
                                                     tmp_path: Path) -> None:
    f = tmp_path / "rain.csv"
    f.write_text("station_id,time,value\nkotogawa_dam_rain,2024-07-01T01:00Z,12.5\n"
                 "kotogawa_dam_rain,2024-07-01T02:00Z,3.0\n", encoding="utf-8")
    assert not import_files(ctx, [f], source="canonical_csv").failed
    got = run(engine, read_observations, station_ids=["kotogawa_dam_rain"])
    assert set(got["variable"]) == {RAIN}
    np.testing.assert_allclose(got["value"], [12.5, 3.0])
    assert run(engine, read_observations, variable=LEVEL).empty


def test_unknown_station_is_refused_naming_file_row_and_station(
        ctx: Context, engine: Engine, tmp_path: Path) -> None:
    f = tmp_path / "unknown.csv"
    f.write_text("station_id,time,value,variable\njiseiji,2024-07-01T01:00Z,2.0,level_m\n"
                 "nowhere,2024-07-01T01:00Z,1.0,level_m\n", encoding="utf-8")
    report = import_files(ctx, [f], source="canonical_csv")
    err = report.failed[str(f)]
    assert "row 3" in err and "nowhere" in err and "--accept-unknown-stations" in err
    assert run(engine, read_observations).empty    # the whole file is refused
    assert not import_files(ctx, [f], source="canonical_csv", accept_unknown=True).failed
    assert set(run(engine, read_observations)["station_id"]) == {"jiseiji", "nowhere"}
