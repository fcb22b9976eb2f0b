"""Canonical CSV: a row's variable comes from the file or the catalogue (never a default),
unknown stations are refused, the optional ``source`` column carries provenance through
``to_canonical_csv`` → ``parse_canonical_csv`` → storage."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from forecast import frames
from forecast.catalogue import load_catalogue, parse_catalogue
from forecast.errors import CatalogueError, FrameError, ParseError
from forecast.frames import Flag
from forecast.ingest.canonical_csv import parse_canonical_csv, to_canonical_csv
from forecast.storage.observations import (
    has_simulated_data,
    read_observations,
    upsert_observations,
)

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "config" / "reference_rivers.yaml"
MIE = ROOT / "config" / "rivers.yaml"
NOW = datetime(2024, 7, 2, tzinfo=UTC)

# 持世寺 (level), 厚東川ダム release and rain gauge from the reference catalogue
NO_VARIABLE = (b"station_id,time,value\n"
               b"jiseiji,2024-07-01T09:00+09:00,2.5\n"
               b"kotogawa_dam_rain,2024-07-01T09:00+09:00,4.0\n"
               b"kotogawa_dam_release,2024-07-01T09:00+09:00,35.0\n")


@pytest.fixture(scope="module")
def reference_variables() -> dict[str, str]:
    return load_catalogue(REFERENCE).station_variables()


# --- Catalogue.station_variables -------------------------------------------------------------

def test_station_variables_of_the_mie_catalogue_match_its_yaml():
    raw = yaml.safe_load(MIE.read_text(encoding="utf-8"))
    gauges = {g["code"] for r in raw["rivers"] for g in r["gauges"]}
    rain = {g["code"] for r in raw["rivers"] for g in r["rain_gauges"]}
    assert len(gauges) == 51 and len(rain) == 28 and not gauges & rain
    expected = {**dict.fromkeys(gauges, "level_m"), **dict.fromkeys(rain, "rain_mm")}
    assert load_catalogue(MIE).station_variables() == expected


def test_station_variables_give_the_dam_release_its_variable(reference_variables):
    assert reference_variables == {"jiseiji": "level_m", "kotogawa_dam_release": "release_m3s",
                                   "kotogawa_dam_rain": "rain_mm"}


def _catalogue(**gauge_extra: object) -> dict[str, object]:
    poly = [[136.4, 34.4], [136.6, 34.4], [136.5, 34.6]]
    return {"name": "t", "rivers": [{
        "id": "r1", "name_ja": "川", "name_en": "R", "system_ja": "水系",
        "gauges": [{"code": "L1", "name_ja": "a", "lat": 34.5, "lon": 136.5,
                    "kind": "telemetry"},
                   {"code": "U1", "name_ja": "b", "lat": 34.6, "lon": 136.5,
                    "kind": "telemetry", **gauge_extra}],
        "primary_gauge": "L1", "upstream_gauges": ["U1"],
        "thresholds": {"standby_m": 1.0},
        "rain_gauges": [{"code": "R1", "name_ja": "c", "lat": 34.5, "lon": 136.4,
                         "weight": 1.0}],
        "catchment": {"area_km2": 10.0, "polygon": poly},
    }]}


@pytest.mark.parametrize(("extra", "variable"), [
    ({}, "level_m"), ({"variable": "inflow_m3s"}, "inflow_m3s"),
    ({"variable": "discharge_m3s"}, "discharge_m3s"),
])
def test_upstream_gauge_variable(extra, variable):
    cat = parse_catalogue(_catalogue(**extra))
    assert cat.station_variables() == {"L1": "level_m", "U1": variable, "R1": "rain_mm"}


@pytest.mark.parametrize(("extra", "match"), [
    ({"variable": "rain_mm"}, "variable"),                        # not a gauge variable
    ({"variable": "release_m3s", "kind": "crisis", "start_level_m": 0.5}, "crisis"),
])
def test_gauge_variable_is_checked(extra, match):
    with pytest.raises(CatalogueError, match=match):
        parse_catalogue(_catalogue(**extra))


def test_primary_gauge_must_be_a_level_gauge():
    data = _catalogue()
    data["rivers"][0]["gauges"][0]["variable"] = "release_m3s"  # type: ignore[index]
    with pytest.raises(CatalogueError, match="primary_gauge 'L1' measures release_m3s"):
        parse_catalogue(data)


def test_a_code_that_is_gauge_and_rain_gauge_has_no_single_variable():
    data = _catalogue()
    data["rivers"][0]["rain_gauges"][0]["code"] = "U1"  # type: ignore[index]
    with pytest.raises(CatalogueError, match=r"station 'U1' is level_m .* and rain_mm"):
        parse_catalogue(data).station_variables()


# --- variables in parse_canonical_csv ---------------------------------------------------------

def test_variables_from_the_catalogue_when_the_file_has_none(reference_variables):
    df = parse_canonical_csv(NO_VARIABLE, "x.csv", station_variables=reference_variables)
    assert df["variable"].tolist() == ["level_m", "rain_mm", "release_m3s"]
    assert df["value"].tolist() == [2.5, 4.0, 35.0]


def test_without_variable_column_or_catalogue_nothing_defaults_to_level():
    with pytest.raises(ParseError) as info:
        parse_canonical_csv(NO_VARIABLE, "x.csv")
    msg = str(info.value)
    assert "x.csv at row 2" in msg and "'jiseiji'" in msg
    assert "add a variable column" in msg and "add the station to the catalogue" in msg


def test_the_files_variable_column_wins(reference_variables):
    data = (b"station_id,time,value,variable\n"
            b"jiseiji,2024-07-01T09:00+09:00,2.5,level_m_daily_mean\n"
            b"kotogawa_dam_rain,2024-07-01T09:00+09:00,4.0,\n")   # empty: the catalogue's
    df = parse_canonical_csv(data, "x.csv", station_variables=reference_variables)
    assert df["variable"].tolist() == ["level_m_daily_mean", "rain_mm"]
    with pytest.raises(ParseError, match=r"x.csv at row 3: no variable for station "
                                         r"'kotogawa_dam_rain': its variable cell is empty"):
        parse_canonical_csv(data, "x.csv")


def test_unknown_variable_names_the_row(reference_variables):
    data = (b"station_id,time,value,variable\n"
            b"jiseiji,2024-07-01T09:00+09:00,2.5,level_m\n"
            b"jiseiji,2024-07-01T10:00+09:00,2.6,level_cm\n")
    for kwargs in ({}, {"station_variables": reference_variables}):
        with pytest.raises(ParseError, match=r"x.csv at row 3: unknown variable 'level_cm'"):
            parse_canonical_csv(data, "x.csv", **kwargs)  # type: ignore[arg-type]


def test_station_unknown_to_the_catalogue_is_refused(reference_variables):
    data = (b"station_id,time,value,variable\n"
            b"jiseiji,2024-07-01T09:00+09:00,2.5,level_m\n"
            b"ZZ9,2024-07-01T09:00+09:00,1.0,rain_mm\n")
    with pytest.raises(ParseError) as info:
        parse_canonical_csv(data, "x.csv", station_variables=reference_variables)
    msg = str(info.value)
    assert "x.csv at row 3" in msg and "'ZZ9'" in msg
    assert msg.endswith("or import with --accept-unknown-stations")
    df = parse_canonical_csv(data, "x.csv", station_variables=reference_variables,
                             accept_unknown=True)
    assert df["station_id"].tolist() == ["jiseiji", "ZZ9"]
    assert df["variable"].tolist() == ["level_m", "rain_mm"]
    # accepted, but still without a variable from anywhere: refused
    with pytest.raises(ParseError, match=r"row 2: no variable for station 'ZZ9'.*not in the "
                                         "catalogue"):
        parse_canonical_csv(b"station_id,time,value\nZZ9,2024-07-01T09:00Z,1\n", "x.csv",
                            station_variables=reference_variables, accept_unknown=True)


@pytest.mark.parametrize(("cell", "expected"), [
    ("", int(Flag.GOOD)), ("0", 0), ("2", 2), ("5", int(Flag.BELOW_START)),
])
def test_flags(cell, expected):
    data = f"station_id,time,value,variable,flag\nG,2024-07-01T00:00Z,1,level_m,{cell}\n"
    assert parse_canonical_csv(data.encode(), "x.csv")["flag"].tolist() == [expected]


@pytest.mark.parametrize("cell", ["6", "-1", "x", "1.5"])
def test_bad_flag_names_the_row(cell):
    data = ("station_id,time,value,variable,flag\nG,2024-07-01T00:00Z,1,level_m,0\n"
            f"G,2024-07-01T01:00Z,1,level_m,{cell}\n")
    with pytest.raises(ParseError, match=rf"row 3: flag '{cell}' is not"):
        parse_canonical_csv(data.encode(), "x.csv")


# --- source column -------------------------------------------------------------------------

def test_source_column_is_returned():
    data = (b"station_id,time,value,variable,source\n"
            b"G,2024-07-01T00:00Z,1,level_m,simulated\n"
            b"G,2024-07-01T01:00Z,2,level_m,mlit_dat\n")
    df = parse_canonical_csv(data, "x.csv")
    assert df["source"].tolist() == ["simulated", "mlit_dat"]
    assert list(df.columns) == [*frames.OBS_COLUMNS, "source"]
    no_source = parse_canonical_csv(data.replace(b",source", b"").replace(b",simulated", b"")
                                    .replace(b",mlit_dat", b""), "x.csv")
    assert list(no_source.columns) == list(frames.OBS_COLUMNS)


@pytest.mark.parametrize("cell", ["", "Simulated", "obs-1", "a b", "x" * 33])
def test_bad_source_names_the_row(cell):
    data = ("station_id,time,value,variable,source\nG,2024-07-01T00:00Z,1,level_m,observed\n"
            f"G,2024-07-01T01:00Z,1,level_m,{cell}\n")
    with pytest.raises(ParseError, match="row 3: source"):
        parse_canonical_csv(data.encode(), "x.csv")


def test_frames_observations_keeps_source_and_drops_other_extras():
    base = pd.DataFrame({"station_id": ["G", "G"], "variable": "level_m",
                         "time": pd.to_datetime(["2024-07-01T00:00Z", "2024-07-01T01:00Z"]),
                         "value": [1.0, 2.0], "source": ["simulated", "observed"],
                         "other": [1, 2]})
    out = frames.observations(base)
    assert list(out.columns) == [*frames.OBS_COLUMNS, "source"]
    assert out["source"].tolist() == ["simulated", "observed"]
    with pytest.raises(FrameError, match="without a source"):
        frames.observations(base.assign(source=["simulated", None]))


# --- writer ---------------------------------------------------------------------------------

def _obs(**extra: object) -> pd.DataFrame:
    return frames.observations(pd.DataFrame({
        "station_id": ["jiseiji", "kotogawa_dam_rain"], "variable": ["level_m", "rain_mm"],
        "time": pd.to_datetime(["2024-07-01T09:00+09:00", "2024-07-01T09:00:00.25+09:00"],
                               format="ISO8601", utc=True),
        "value": [2.5, np.nan], "flag": [0, 4], **extra,
    }))


def test_writer_output():
    assert to_canonical_csv(_obs(), source="simulated") == (
        b"station_id,variable,time,value,flag,source\n"
        b"jiseiji,level_m,2024-07-01T00:00:00.000000000+00:00,2.5,0,simulated\n"
        b"kotogawa_dam_rain,rain_mm,2024-07-01T00:00:00.250000000+00:00,,4,simulated\n")
    whole = _obs().iloc[:1]
    assert to_canonical_csv(whole) == (b"station_id,variable,time,value,flag\n"
                                       b"jiseiji,level_m,2024-07-01T00:00:00+00:00,2.5,0\n")
    # the frame's own source column is written when no source is given
    assert to_canonical_csv(_obs(source=["observed", "mlit_dat"])).endswith(b",4,mlit_dat\n")


@pytest.mark.parametrize("bad", ["Simulated", "", "a-b"])
def test_writer_refuses_what_the_parser_would(bad):
    with pytest.raises(FrameError, match="source"):
        to_canonical_csv(_obs(), source=bad)


_CODE = st.text(alphabet="abcXYZ019_-.日本", min_size=1, max_size=12)
_VALUE = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(math.nan))
_TIME = st.integers(min_value=-2 * 10**18, max_value=4 * 10**18).map(
    lambda ns: pd.Timestamp(ns, tz="UTC"))
_ROW = st.tuples(_CODE, st.sampled_from(sorted(frames.VARIABLES)), _TIME, _VALUE,
                 st.sampled_from([int(f) for f in Flag]),
                 st.sampled_from(["simulated", "observed", "mlit_dat", "a", "x_1"]))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_ROW, min_size=1, max_size=30), with_source=st.booleans(),
       whole_seconds=st.booleans())
def test_round_trip(rows, with_source, whole_seconds):
    df = pd.DataFrame(rows, columns=["station_id", "variable", "time", "value", "flag",
                                     "source"])
    if whole_seconds:
        df["time"] = df["time"].dt.floor("s")
    if not with_source:
        df = df.drop(columns="source")
    obs = frames.observations(df)
    back = parse_canonical_csv(to_canonical_csv(obs), "rt.csv")
    assert back["station_id"].tolist() == df["station_id"].tolist()
    assert back["variable"].tolist() == df["variable"].tolist()
    assert back["time"].tolist() == df["time"].tolist()
    # exact: same bits (NaN where NaN)
    np.testing.assert_array_equal(back["value"].to_numpy().view(np.int64)[df["value"].notna()],
                                  df["value"].to_numpy().view(np.int64)[df["value"].notna()])
    assert back["value"].isna().tolist() == df["value"].isna().tolist()
    assert back["flag"].tolist() == df["flag"].tolist()
    if with_source:
        assert back["source"].tolist() == df["source"].tolist()
    else:
        assert "source" not in back.columns


# --- provenance through storage -------------------------------------------------------------

def test_exported_simulation_stays_simulated_after_reimport(engine: Engine,
                                                           reference_variables):
    sim = parse_canonical_csv(NO_VARIABLE, "sim.csv", station_variables=reference_variables)
    csv_bytes = to_canonical_csv(sim, source="simulated")
    back = parse_canonical_csv(csv_bytes, "sim.csv", station_variables=reference_variables)
    run(engine, upsert_observations, back, source="canonical_csv", now=NOW)
    assert run(engine, has_simulated_data)
    stored = run(engine, read_observations)
    assert stored["source"].tolist() == ["simulated"] * 3
    assert list(stored.columns) == [*frames.OBS_COLUMNS, "source", "revision"]


def test_rows_without_source_take_the_import_source(engine: Engine, reference_variables):
    df = parse_canonical_csv(NO_VARIABLE, "x.csv", station_variables=reference_variables)
    run(engine, upsert_observations, df, source="canonical_csv", now=NOW)
    assert not run(engine, has_simulated_data)
    assert run(engine, read_observations)["source"].tolist() == ["canonical_csv"] * 3
