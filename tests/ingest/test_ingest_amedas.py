"""AMeDAS bosai JSON parsers on the hand-written payloads in tests/data/amedas (see README)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from forecast import frames
from forecast.errors import EncodingError, ParseError
from forecast.frames import Flag
from forecast.ingest.amedas import parse_amedas_map, parse_amedas_point, parse_amedas_table

from .conftest import AMEDAS

MAP = AMEDAS / "map" / "20250801093000.json"
POINT = AMEDAS / "point" / "53133" / "20250801_09.json"
TABLE = AMEDAS / "amedastable.json"


def _expected(doc: dict) -> dict[str, tuple[float, int, str]]:
    """Oracle straight from the JSON: station → (value, flag, qc_rule)."""
    out = {}
    for code, elems in doc.items():
        if "precipitation10m" in elems:
            value, flag = elems["precipitation10m"]
            if value is None:
                out[code] = (np.nan, int(Flag.MISSING), f"amedas:flag={flag}")
            elif flag != 0:
                out[code] = (value, int(Flag.DOUBTFUL), f"amedas:flag={flag}")
            else:
                out[code] = (value, int(Flag.GOOD), "")
    return out


def test_map_snapshot():
    df = parse_amedas_map(MAP.read_bytes(), str(MAP))
    frames.observations(df)
    expected = _expected(json.loads(MAP.read_text()))
    assert sorted(df["station_id"]) == sorted(expected)      # 53091 has no rain element
    assert (df["variable"] == frames.RAIN).all()
    # 09:30 JST from the file name = 00:30 UTC
    assert (df["time"] == pd.Timestamp("2025-08-01T00:30", tz="UTC")).all()
    for row in df.itertuples():
        value, flag, rule = expected[row.station_id]
        assert row.flag == flag and row.qc_rule == rule
        assert (np.isnan(row.value) and np.isnan(value)) or row.value == value
    assert df["provisional"].all()


def test_map_time_argument():
    data = MAP.read_bytes()
    aware = datetime(2025, 8, 1, 0, 30, tzinfo=UTC)
    pd.testing.assert_frame_equal(parse_amedas_map(data, "latest.json", time=aware),
                                  parse_amedas_map(data, str(MAP)))
    naive_jst = datetime(2025, 8, 1, 9, 30)
    pd.testing.assert_frame_equal(parse_amedas_map(data, "latest.json", time=naive_jst),
                                  parse_amedas_map(data, str(MAP)))
    with pytest.raises(ParseError, match="disagrees"):
        parse_amedas_map(data, str(MAP), time=datetime(2025, 8, 1, 9, 40))
    with pytest.raises(ParseError, match="no observation time"):
        parse_amedas_map(data, "latest.json")
    with pytest.raises(ParseError, match="future"):
        parse_amedas_map(data, str(MAP), now=datetime(2025, 8, 1, 0, 0, tzinfo=UTC))


def test_point_file():
    df = parse_amedas_point(POINT.read_bytes(), str(POINT))
    doc = json.loads(POINT.read_text())
    assert (df["station_id"] == "53133").all()
    assert len(df) == len(doc)
    jst = pd.to_datetime(sorted(doc), format="%Y%m%d%H%M%S").tz_localize("Asia/Tokyo")
    assert df["time"].tolist() == list(jst.tz_convert("UTC"))
    assert df["time"].iloc[0] == pd.Timestamp("2025-08-01T00:00", tz="UTC")
    missing = df[df["flag"] == Flag.MISSING]
    assert len(missing) == 1 and missing["qc_rule"].iloc[0] == "amedas:flag=5"
    raw = [doc[k]["precipitation10m"][0] for k in sorted(doc)]
    np.testing.assert_allclose(df["value"], [np.nan if v is None else v for v in raw])
    with pytest.raises(ParseError, match="no station code"):
        parse_amedas_point(POINT.read_bytes(), "somewhere.json")
    other = parse_amedas_point(POINT.read_bytes(), "x.json", station_id="99999")
    assert (other["station_id"] == "99999").all()


def test_station_table():
    df = parse_amedas_table(TABLE.read_bytes(), str(TABLE))
    tsu = df.set_index("station_id").loc["53133"]
    assert tsu["name_ja"] == "津"
    assert tsu["lat"] == pytest.approx(34 + 43.9 / 60)
    assert tsu["lon"] == pytest.approx(136 + 31.1 / 60)
    assert tsu["alt_m"] == 3
    assert list(df["station_id"]) == sorted(json.loads(TABLE.read_text()))


def _map_with(**changes: object) -> bytes:
    doc = json.loads(MAP.read_text())
    doc["53133"].update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("data", [
    _map_with(precipitation10m=[1.0]),
    _map_with(precipitation10m=[1.0, "0"]),
    _map_with(precipitation10m=["1.0", 0]),
    _map_with(precipitation10m=None),
    _map_with(precipitation10m={"value": 1}),
    b'{"5313": {}}',
    b'{"53133": [1, 0]}',
    b'[1, 2]',
    b'{"53133": {"precipitation10m": [Infinity, 0]}}',
    b'{"53133": {}, "53133": {}}',
    b'{"53133": {"precipitation10m": [1.0, 0]',
    b"",
])
def test_bad_map_payloads(data):
    with pytest.raises(ParseError) as info:
        parse_amedas_map(data, str(MAP))
    assert info.value.source == "amedas" and info.value.location == str(MAP)


def test_wrong_encoding_is_encoding_error():
    with pytest.raises(EncodingError):
        parse_amedas_table(TABLE.read_text().encode("cp932"), str(TABLE))


@pytest.mark.parametrize("change", [
    {"20250801096000": {"precipitation10m": [0.0, 0]}},     # minute 60
    {"2025080109000": {"precipitation10m": [0.0, 0]}},      # 13 digits
    {"now": {"precipitation10m": [0.0, 0]}},
])
def test_bad_point_keys(change):
    doc = json.loads(POINT.read_text())
    doc.update(change)
    with pytest.raises(ParseError):
        parse_amedas_point(json.dumps(doc).encode(), str(POINT))


@pytest.mark.parametrize("entry", [
    {"lat": [34, 61.0], "lon": [136, 1.0]},
    {"lat": [34], "lon": [136, 1.0]},
    {"lat": [80, 1.0], "lon": [136, 1.0]},
    {"lon": [136, 1.0]},
    {"lat": [34, 1.0], "lon": [136, 1.0], "alt": "high"},
])
def test_bad_table_entries(entry):
    with pytest.raises(ParseError, match="53999"):
        parse_amedas_table(json.dumps({"53999": entry}).encode(), "t.json")
