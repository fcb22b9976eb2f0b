"""Configurable telemetry adapter: CSV and JSON feeds described only by configuration."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from forecast import frames
from forecast.errors import ConfigError, EncodingError, ParseError
from forecast.frames import Flag
from forecast.ingest.telemetry import TelemetryFeed, feed_from_mapping, parse_telemetry

CSV_FEED = {
    "name": "mie_level_csv", "format": "csv", "encoding": "cp932",
    "columns": {"station": "観測所コード", "time": "観測日時", "value": "水位", "flag": "状態"},
    "time_format": "%Y/%m/%d %H:%M", "units": "cm", "variable": "level_m",
    "station_map": {"2401": "kumozu_oyachi", "2402": "kushida_ryogun"},
    "missing_values": ["", "-9999", "欠測"], "flag_map": {"0": "GOOD", "1": "DOUBTFUL"},
}
CSV_TEXT = (
    "観測所コード,観測日時,水位,状態\r\n"
    "2401,2025/09/12 20:50,166,0\r\n"
    "2401,2025/09/12 20:40,150,1\r\n"
    "2402,2025/09/12 20:50,欠測,0\r\n"
    "2402,2025/09/12 20:40,-12.5,0\r\n"
)
JSON_FEED = {
    "name": "rain_json", "format": "json", "records_path": ["data", "obs"],
    "columns": {"station": "id", "time": "t", "value": "rain"},
    "units": "mm", "variable": "rain_mm", "station_map": {"A1": "rg_tsu"},
    "missing_values": ["", "-999"],
}
NOW = datetime(2025, 9, 13, tzinfo=UTC)


def _csv(text: str = CSV_TEXT) -> bytes:
    return text.encode("cp932")


def _naive(text: str) -> list[tuple[str, pd.Timestamp, float, int]]:
    """Oracle: row by row with the same configuration."""
    out = []
    for line in text.strip().split("\r\n")[1:]:
        code, stamp, value, state = line.split(",")
        jst = datetime.strptime(stamp, "%Y/%m/%d %H:%M")
        t = pd.Timestamp(jst).tz_localize("Asia/Tokyo").tz_convert("UTC")
        missing = value in ("", "-9999", "欠測")
        flag = Flag.MISSING if missing else (Flag.DOUBTFUL if state == "1" else Flag.GOOD)
        out.append((CSV_FEED["station_map"][code], t,
                    np.nan if missing else float(value) / 100, int(flag)))
    return sorted(out, key=lambda r: (r[0], r[1]))


def test_csv_feed_matches_oracle():
    feed = feed_from_mapping(CSV_FEED)
    df = parse_telemetry(feed, _csv(), "feed.csv", now=NOW)
    frames.observations(df)
    expected = _naive(CSV_TEXT)
    assert df["station_id"].tolist() == [r[0] for r in expected]
    assert df["time"].tolist() == [r[1] for r in expected]
    np.testing.assert_allclose(df["value"], [r[2] for r in expected])
    assert df["flag"].tolist() == [r[3] for r in expected]
    assert set(df["qc_rule"]) == {"", "telemetry:flag=1", "telemetry:missing"}
    assert (df["variable"] == "level_m").all() and df["provisional"].all()


def test_json_feed_with_offsets_and_records_path():
    payload = {"data": {"obs": [
        {"id": "A1", "t": "2025-09-12T20:50:00+09:00", "rain": 3.5},
        {"id": "A1", "t": "2025-09-12T11:40:00Z", "rain": "-999"},
        {"id": "A1", "t": "2025-09-12T11:30:00Z", "rain": None},
    ]}}
    df = parse_telemetry(feed_from_mapping(JSON_FEED), json.dumps(payload).encode(), "u")
    assert df["time"].tolist() == list(pd.to_datetime(
        ["2025-09-12T11:30", "2025-09-12T11:40", "2025-09-12T11:50"]).tz_localize("UTC"))
    assert df["flag"].tolist() == [Flag.MISSING, Flag.MISSING, Flag.GOOD]
    assert df["value"].iloc[2] == 3.5


def test_unit_conversion_is_configuration():
    text = "観測所コード,観測日時,水位,状態\r\n2401,2025/09/12 20:50,1.66,0\r\n"
    as_m = feed_from_mapping({**CSV_FEED, "units": "m"})
    assert parse_telemetry(as_m, _csv(text), "f")["value"].iloc[0] == pytest.approx(1.66)
    as_mm = feed_from_mapping({**CSV_FEED, "units": "mm"})
    assert parse_telemetry(as_mm, _csv(text), "f")["value"].iloc[0] == pytest.approx(0.00166)


def test_unmapped_station_error_or_drop():
    text = CSV_TEXT + "9999,2025/09/12 20:50,100,0\r\n"
    with pytest.raises(ParseError) as info:
        parse_telemetry(feed_from_mapping(CSV_FEED), _csv(text), "f.csv")
    assert info.value.position == "line 6" and "9999" in str(info.value)
    dropped = parse_telemetry(feed_from_mapping({**CSV_FEED, "unmapped": "drop"}), _csv(text),
                              "f.csv")
    assert len(dropped) == 4


@pytest.mark.parametrize(("text", "position", "message"), [
    # cm values sent by a feed configured as m: 166 m is not a stage
    (CSV_TEXT, "line 2", "wrong units"),
    ("観測所コード,観測日時,水位,状態\r\n2401,2025/09/12 20:50,abc,0\r\n", "line 2", "number"),
    ("観測所コード,観測日時,水位,状態\r\n2401,2025/09/12 20:50,inf,0\r\n", "line 2", "finite"),
    ("観測所コード,観測日時,水位,状態\r\n2401,2025/09/12 20:50,1.0,0,9\r\n", "line 2", "fields"),
    ("観測所コード,観測日時,水位,状態\r\n2401,2025/09/12 25:50,1.0,0\r\n", "line 2", "time"),
    ("観測所コード,観測日時,水位,状態\r\n2401,now,1.0,0\r\n", "line 2", "time"),
    ("観測所コード,観測日時,水位,状態\r\n2401,2025/09/12 20:50,1.0,7\r\n", "line 2", "flag"),
    ("観測所コード,日時,水位,状態\r\n2401,2025/09/12 20:50,1.0,0\r\n", "line 1", "columns"),
    ("観測所コード,観測日時,水位,状態\r\n2401,2025/09/13 20:50,1.0,0\r\n", "line 2", "future"),
    ("観測所コード,観測日時,水位,状態\r\n2401,2025/09/12 20:50,1.0,0\r\n"
     "2401,2025/09/12 20:50,1.1,0\r\n", "line 3", "two different"),
])
def test_bad_csv_rows(text, position, message):
    feed = feed_from_mapping({**CSV_FEED, "units": "m"})
    with pytest.raises(ParseError) as info:
        parse_telemetry(feed, _csv(text), "f.csv", now=NOW)
    assert info.value.position == position, str(info.value)
    assert message in str(info.value)
    assert info.value.source == "telemetry:mie_level_csv"


def test_exact_duplicates_are_merged_and_order_is_irrelevant():
    feed = feed_from_mapping(CSV_FEED)
    lines = CSV_TEXT.strip().split("\r\n")
    shuffled = "\r\n".join([lines[0], lines[4], lines[1], lines[3], lines[2], lines[1]]) + "\r\n"
    pd.testing.assert_frame_equal(parse_telemetry(feed, _csv(shuffled), "f"),
                                  parse_telemetry(feed, _csv(), "f"))


def test_wrong_encoding():
    with pytest.raises(EncodingError):
        parse_telemetry(feed_from_mapping({**CSV_FEED, "encoding": "utf-8"}), _csv(), "f")


@pytest.mark.parametrize("payload", [
    {"data": {}}, {"data": {"obs": {}}}, {"data": {"obs": [{"id": "A1", "t": "x"}]}},
    {"data": {"obs": [{"id": "A1", "t": "2025-09-12T20:50", "rain": [1]}]}},
    {"data": {"obs": [{"id": "A1", "t": "2025-09-12T20:50", "rain": 1},
                      {"id": "A1", "t": "2025-09-12T11:50Z", "rain": 1}]}},   # naive + aware
])
def test_bad_json_payloads(payload):
    with pytest.raises(ParseError):
        parse_telemetry(feed_from_mapping(JSON_FEED), json.dumps(payload).encode(), "u")


@pytest.mark.parametrize("change", [
    {"colour": "red"},                                   # extra key forbidden
    {"units": "m3/s"},                                   # does not fit level_m
    {"time_zone": "Mars/Olympus"},
    {"format": "xml"},
    {"station_map": {}},
    {"plausible_range": [5, 1]},
    {"flag_map": {}},                                    # flag column without a map
    {"columns": {"station": "a", "time": "b"}},
])
def test_bad_configuration_is_config_error(change):
    with pytest.raises(ConfigError):
        feed_from_mapping({**CSV_FEED, **change}, location="feeds.yaml")


def test_feed_is_plain_pydantic():
    feed = TelemetryFeed.model_validate(CSV_FEED)
    assert feed.bounds == (-10.0, 30.0)


def test_blank_lines_and_bom_are_tolerated_with_true_line_numbers():
    feed = feed_from_mapping({**CSV_FEED, "encoding": "utf-8"})
    text = CSV_TEXT.replace("\r\n2402,2025/09/12 20:50", "\r\n\r\n2402,2025/09/12 20:50") + "\r\n"
    data = b"\xef\xbb\xbf" + text.encode("utf-8")
    pd.testing.assert_frame_equal(parse_telemetry(feed, data, "f"),
                                  parse_telemetry(feed_from_mapping(CSV_FEED), _csv(), "f"))
    bad = data.replace(b"-12.5", b"x")
    with pytest.raises(ParseError) as info:
        parse_telemetry(feed, bad, "f")
    assert info.value.position == "line 6"
