"""Series never mix: MLIT daily tables get their own variables, so they neither overwrite the
hourly readings of the same station (stored, or in one frame) nor reach QC's hourly rules or the
hourly river frame. Expectations are read from the real files with the csv module."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from helpers import run
from sqlalchemy.engine import Engine

from forecast import frames
from forecast.catalogue import parse_catalogue
from forecast.features import river_hourly
from forecast.frames import Flag
from forecast.ingest.mlit import parse_mlit_dat, parse_mlit_dat_many, parse_mlit_table
from forecast.qc import apply_qc
from forecast.storage.observations import read_observations, upsert_observations

from .conftest import DAILY_2004, HOURLY_JAN

STATION = "301011281104010"
NOW = datetime(2024, 7, 2, tzinfo=UTC)


def _retitle(path, title: str) -> bytes:
    """The real file with only its title line changed (tests/data/mlit-wis/README.md)."""
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    lines[0] = title
    return "\r\n".join(lines).encode("utf-8")


def _utc(jst: datetime) -> pd.Timestamp:
    return pd.Timestamp(jst - timedelta(hours=9), tz="UTC")


def _hourly_oracle(data: bytes) -> dict[pd.Timestamp, float]:
    """UTC time → value of an hourly table (h時 = hh:00 JST; blanks/flags absent in the file)."""
    out = {}
    for rec in csv.reader(io.StringIO(data.decode("utf-8"))):
        if rec and rec[0][:1].isdigit():
            day = datetime.strptime(rec[0], "%Y/%m/%d")
            for h in range(1, 25):
                out[_utc(day + timedelta(hours=h))] = float(rec[2 * h - 1])
    return out


def _daily_oracle(data: bytes) -> dict[pd.Timestamp, float]:
    """UTC time (end of the day, 00:00 JST next day) → value of a daily table."""
    out, year = {}, None
    for rec in csv.reader(io.StringIO(data.decode("utf-8"))):
        if rec and rec[0].endswith("年"):
            year = int(rec[0][:-1])
        elif rec and rec[0].endswith("月") and year:
            for d, value in enumerate(rec[1::2], start=1):
                out[_utc(datetime(year, int(rec[0][:-1]), d) + timedelta(days=1))] = float(value)
    return out


@pytest.mark.parametrize(("title", "variable"), [
    ("日水位年表検索結果", "level_m_daily_mean"),
    ("日雨量年表検索結果", "rain_mm_daily"),
    ("日流量年表検索結果", "discharge_m3s_daily_mean"),
])
def test_daily_tables_have_their_own_variables(title, variable):
    data = _retitle(DAILY_2004, title)
    table = parse_mlit_table(data, "t.dat")
    assert table.variable == variable and table.interval == "1D"
    assert set(table.observations["variable"]) == {variable}
    assert variable in frames.DAILY_VARIABLES and variable in frames.VARIABLES
    # time stamping unchanged: the value of 2004-01-01 is stamped 2004-01-02 00:00 JST
    df = table.observations.set_index("time")["value"]
    assert df[pd.Timestamp("2004-01-01T15:00", tz="UTC")] == pytest.approx(0.52)
    assert df.to_dict() == pytest.approx(_daily_oracle(data))


def test_daily_and_hourly_variables_are_disjoint():
    hourly = {frames.LEVEL, frames.RAIN, frames.DISCHARGE, frames.RELEASE, frames.INFLOW}
    daily = {"level_m_daily_mean", "rain_mm_daily", "discharge_m3s_daily_mean"}
    assert set(frames.DAILY_VARIABLES) == daily
    assert set(frames.VARIABLES) == hourly | daily


@pytest.mark.parametrize(("hourly_title", "daily_title", "hourly_var"), [
    ("時刻流量月表検索結果", "日流量年表検索結果", "discharge_m3s"),
    ("時刻水位月表検索結果", "日水位年表検索結果", "level_m"),
    ("時刻雨量月表検索結果", "日雨量年表検索結果", "rain_mm"),
])
def test_daily_table_after_hourly_keeps_hourly_readings(engine: Engine, hourly_title,
                                                       daily_title, hourly_var):
    """Import the hourly month, then the daily year of the same station: the stored hourly
    series is still exactly the hourly file, and the daily series is stored beside it."""
    hourly_bytes, daily_bytes = _retitle(HOURLY_JAN, hourly_title), _retitle(DAILY_2004,
                                                                             daily_title)
    expect_h, expect_d = _hourly_oracle(hourly_bytes), _daily_oracle(daily_bytes)
    clash = [t for t in expect_d if t in expect_h and expect_h[t] != expect_d[t]]
    assert len(clash) == 10        # 00:00 JST stamps where the daily value differs (Jan 2004)
    run(engine, upsert_observations, parse_mlit_dat(hourly_bytes, "h.dat"), source="mlit_dat",
                        now=NOW)
    res = run(engine, upsert_observations, parse_mlit_dat(daily_bytes, "d.dat"), source="mlit_dat",
                              now=NOW)
    assert res.revised == 0 and res.inserted == 366
    stored = run(engine, read_observations, station_ids=[STATION])
    h = stored[stored["variable"] == hourly_var].set_index("time")["value"]
    assert h.to_dict() == pytest.approx(expect_h)
    d = stored[stored["variable"] != hourly_var]
    assert set(d["variable"]) == {hourly_var + ("_daily" if hourly_var == "rain_mm"
                                                else "_daily_mean")}
    assert d.set_index("time")["value"].to_dict() == pytest.approx(expect_d)


def test_one_batch_of_hourly_and_daily_files_keeps_both():
    many = parse_mlit_dat_many([(HOURLY_JAN.read_bytes(), "h.dat"),
                                (DAILY_2004.read_bytes(), "d.dat")])
    # storage keeps the last row of a duplicated (station, variable, time): no duplicates here
    assert not many.duplicated(["station_id", "variable", "time"]).any()
    assert (many["variable"] == "discharge_m3s").sum() == 31 * 24
    assert (many["variable"] == "discharge_m3s_daily_mean").sum() == 366


# --- QC ------------------------------------------------------------------------------------

def _frame(variable: str, values: list[float], step: str, *, station: str = "S1",
           flags: list[int] | None = None, rules: list[str] | None = None) -> pd.DataFrame:
    n = len(values)
    return frames.observations(pd.DataFrame({
        "station_id": station, "variable": variable,
        "time": pd.date_range("2024-06-01T15:00", periods=n, freq=step, tz="UTC"),
        "value": values, "flag": flags or [0] * n, "qc_rule": rules or [""] * n,
    }))


CATALOGUE = parse_catalogue({
    "name": "t",
    "rivers": [{
        "id": "r1", "name_ja": "川", "name_en": "R", "system_ja": "水系",
        "gauges": [{"code": "L1", "name_ja": "a", "lat": 34.5, "lon": 136.5,
                    "kind": "telemetry"},
                   {"code": "U1", "name_ja": "b", "lat": 34.6, "lon": 136.5,
                    "kind": "telemetry"}],
        "primary_gauge": "L1", "upstream_gauges": ["U1", "U2"],
        "thresholds": {"standby_m": 1.0, "caution_m": 2.0},
        "rain_gauges": [{"code": "R1", "name_ja": "c", "lat": 34.5, "lon": 136.4,
                         "weight": 1.0}],
        "catchment": {"area_km2": 10.0, "polygon": [[136.4, 34.4], [136.6, 34.4],
                                                    [136.5, 34.6]]},
        "qc": {"hard_min_m": 0.0, "hard_max_m": 5.0},
    }, {
        "id": "r2", "name_ja": "川2", "name_en": "R2", "system_ja": "水系",
        "gauges": [{"code": "U2", "name_ja": "d", "lat": 34.7, "lon": 136.5,
                    "kind": "telemetry"}],
        "primary_gauge": "U2", "thresholds": {"standby_m": 1.0},
        "rain_gauges": [{"code": "R1", "name_ja": "c", "lat": 34.5, "lon": 136.4,
                         "weight": 1.0}],
        "catchment": {"area_km2": 10.0, "polygon": [[136.4, 34.4], [136.6, 34.4],
                                                    [136.5, 34.6]]},
    }],
})


def _verdicts(df: pd.DataFrame) -> list[tuple[int, str]]:
    return list(zip(df["flag"].astype(int), df["qc_rule"], strict=True))


def test_qc_applies_no_hourly_rule_to_daily_series():
    # Ten equal daily level means and two equal rain totals: the hourly rules would call them
    # stuck; a value over the level hard limit (5 m) and one day's 300 mm of rain.
    level = [1.0] * 10 + [6.0]
    rain = [12.0, 12.0, 12.0, 300.0]
    daily = pd.concat([_frame("level_m_daily_mean", level, "1D", station="L1"),
                       _frame("rain_mm_daily", rain, "1D", station="R1")], ignore_index=True)
    hourly_twin = daily.assign(variable=daily["variable"].map(
        {"level_m_daily_mean": "level_m", "rain_mm_daily": "rain_mm"}))
    # the control proves the series would trip the hourly rules
    twin = apply_qc(hourly_twin, CATALOGUE)
    assert {"stuck", "hard_max"} <= set(twin["qc_rule"])
    out = apply_qc(daily, CATALOGUE)
    assert len(out) == len(daily)                     # no gap fills either
    assert _verdicts(out) == [(int(Flag.GOOD), "")] * len(daily)
    pd.testing.assert_series_equal(out["value"], daily["value"])


def test_qc_keeps_source_flags_of_daily_series_and_marks_nan_missing():
    real = parse_mlit_dat(_retitle(DAILY_2004, "日水位年表検索結果"), "d.dat")
    assert (real["flag"] == 0).all()                 # the real year has no flags
    marked = real.assign(
        value=real["value"].where(real.index != 5),     # a NaN without a source flag
        flag=np.where(real.index == 9, int(Flag.MISSING), real["flag"]).astype("int8"),
        qc_rule=np.where(real.index == 9, "mlit:$", real["qc_rule"]),
    )
    marked.loc[9, "value"] = np.nan
    out = apply_qc(marked, CATALOGUE).reset_index(drop=True)
    expected = [(0, "")] * len(real)
    expected[5] = (int(Flag.MISSING), "missing_value")
    expected[9] = (int(Flag.MISSING), "mlit:$")
    assert _verdicts(out) == expected
    # the same real series as an hourly level is judged by the level rules (runs of equal
    # daily means are "stuck"), so the pass-through above is the daily rule, not an accident
    as_level = apply_qc(real.assign(variable="level_m"), CATALOGUE)
    assert (as_level["qc_rule"] == "stuck").any()


# --- features ------------------------------------------------------------------------------

def _rows(station: str, variable: str, times: pd.DatetimeIndex, values) -> pd.DataFrame:
    return pd.DataFrame({"station_id": station, "variable": variable, "time": times,
                         "value": np.asarray(values, dtype="float64")})


def test_river_hourly_reads_hourly_rows_only():
    hours = pd.date_range("2024-06-01T00:00", periods=72, freq="h", tz="UTC")
    day_ends = pd.DatetimeIndex(["2024-06-01T15:00", "2024-06-02T15:00"], tz="UTC")  # 00 JST
    level = 1.0 + 0.01 * np.arange(72)
    up = 2.0 + 0.02 * np.arange(72)
    rain = np.where(np.arange(72) % 5 == 0, 3.0, 0.5)
    obs = frames.observations(pd.concat([
        _rows("L1", "level_m", hours, level),
        _rows("R1", "rain_mm", hours, rain),
        _rows("U1", "level_m", hours, up),
        # daily rows of the same stations, stamped on hourly stamps and listed last (a
        # "last row wins" selection across variables would pick them)
        _rows("L1", "level_m_daily_mean", day_ends, [99.0, 98.0]),
        _rows("R1", "rain_mm_daily", day_ends, [500.0, 400.0]),
        _rows("U1", "level_m_daily_mean", day_ends, [77.0, 76.0]),
        _rows("U2", "discharge_m3s_daily_mean", day_ends, [55.0, 54.0]),
    ], ignore_index=True))
    out = river_hourly(obs, CATALOGUE.river("r1"))
    assert out.index.equals(pd.DatetimeIndex(hours, name="time"))
    np.testing.assert_array_equal(out["level_m"].to_numpy(), level)
    np.testing.assert_array_equal(out["rain_mm"].to_numpy(), rain)
    np.testing.assert_array_equal(out["up_U1"].to_numpy(), up)
    assert out["up_U2"].isna().all()                 # U2 has daily rows only


def test_river_hourly_on_real_hourly_and_daily_level_tables():
    hourly_bytes = _retitle(HOURLY_JAN, "時刻水位月表検索結果")
    obs = parse_mlit_dat_many([(hourly_bytes, "h.dat"),
                               (_retitle(DAILY_2004, "日水位年表検索結果"), "d.dat")])
    river = parse_catalogue({
        "name": "t",
        "rivers": [{**CATALOGUE.river("r2").model_dump(mode="json", exclude_defaults=True),
                    "gauges": [{"code": STATION, "name_ja": "茂志利", "lat": 44.0,
                                "lon": 142.0, "kind": "telemetry"}],
                    "primary_gauge": STATION}],
    }).rivers[0]
    out = river_hourly(obs, river)
    expect = pd.Series(_hourly_oracle(hourly_bytes))
    assert out.index.equals(pd.DatetimeIndex(expect.index, name="time"))
    np.testing.assert_array_equal(out["level_m"].to_numpy(), expect.to_numpy())
