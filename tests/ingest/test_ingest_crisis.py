"""Crisis-gauge area_info JSON parser and below-start-level censoring.

The payloads are built in the record shape documented in DOMAIN.md §3 (no real Mie file is
public); values are illustrative.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast import frames
from forecast.errors import ParseError
from forecast.frames import Flag
from forecast.ingest.crisis import censor_below_start, parse_crisis_json

NOW = datetime(2025, 9, 12, 12, 0, tzinfo=UTC)


def _rec(code: str, obs_time: str, level: float | None, **extra: object) -> dict:
    rec = {"code": code, "name": f"観測所{code[-3:]}", "obsTime": obs_time, "level": level,
           "startLevel": 164.71, "warnLevel": 165.32, "fladLevel": 166.25,
           "lat": 34.7, "lon": 136.5}
    rec.update(extra)
    return rec


def _payload(records: list) -> bytes:
    return json.dumps({"obss": records}, ensure_ascii=False).encode("utf-8")


GOOD = [
    _rec("1000000107", "2025-09-12T20:50:00+09:00", 166.21),
    _rec("1000000108", "2025-09-12T11:40:00Z", 1.02, startLevel=1.5, warnLevel=None,
         fladLevel=3.0),
    # a stale reading: hours older than the others, keeps its own time
    _rec("1000000109", "2025-09-11T06:00:00+09:00", 0.31, startLevel=0.8),
]


def test_readings_and_levels():
    out = parse_crisis_json(_payload(GOOD), "24000.json", now=NOW)
    assert out.errors == []
    r = out.readings.set_index("station_id")
    assert r.loc["1000000107", "time"] == pd.Timestamp("2025-09-12T11:50", tz="UTC")
    assert r.loc["1000000108", "time"] == pd.Timestamp("2025-09-12T11:40", tz="UTC")
    assert r.loc["1000000109", "time"] == pd.Timestamp("2025-09-10T21:00", tz="UTC")
    assert r.loc["1000000107", "value"] == pytest.approx(166.21)
    assert out.readings["provisional"].all()
    assert (out.readings["flag"] == Flag.GOOD).all()
    frames.observations(out.readings)
    lv = out.levels.set_index("station_id")
    assert lv.loc["1000000108", "start_level_m"] == pytest.approx(1.5)
    assert np.isnan(lv.loc["1000000108", "warn_level_m"])
    assert lv.loc["1000000107", "overflow_level_m"] == pytest.approx(166.25)
    assert lv.loc["1000000107", "name"] == "観測所107"


@pytest.mark.parametrize(("bad", "message"), [
    (_rec("1000000200", "2025-09-12T20:50:00+09:00", None), "level"),
    ({"code": "1000000201", "obsTime": "2025-09-12T20:50:00+09:00", "level": 1.0}, "lacks"),
    (_rec("1000000202", "2025-09-12 20:50", 1.0), "offset"),
    (_rec("1000000203", "yesterday", 1.0), "obsTime"),
    (_rec("1000000204", "2025-09-13T20:50:00+09:00", 1.0), "future"),
    (_rec("1000000205", "2025-09-12T20:50:00+09:00", "1.0"), "level"),
    (_rec("", "2025-09-12T20:50:00+09:00", 1.0), "code"),
    (_rec("1000000206", "2025-09-12T20:50:00+09:00", 1.0, startLevel="high"), "startLevel"),
    ("not a record", "not an object"),
])
def test_one_bad_record_never_loses_the_rest(bad, message):
    records = [GOOD[0], bad, GOOD[1], GOOD[2]]
    out = parse_crisis_json(_payload(records), "24000.json", now=NOW)
    assert len(out.errors) == 1
    err = out.errors[0]
    assert isinstance(err, ParseError)
    assert err.position == "obss[1]"
    assert err.location == "24000.json"
    assert message in str(err)
    assert sorted(out.readings["station_id"]) == ["1000000107", "1000000108", "1000000109"]
    with pytest.raises(ParseError, match=message):
        parse_crisis_json(_payload(records), "24000.json", now=NOW, strict=True)


def test_duplicates_merge_or_conflict():
    same = parse_crisis_json(_payload([*GOOD, GOOD[0]]), "x", now=NOW)
    assert same.errors == [] and len(same.readings) == 3
    clash = dict(GOOD[0], level=160.0)
    out = parse_crisis_json(_payload([*GOOD, clash]), "x", now=NOW)
    assert [e.position for e in out.errors] == ["obss[3]"]
    assert out.readings.set_index("station_id").loc["1000000107", "value"] == 166.21


@pytest.mark.parametrize("data", [b"", b"{", b'{"obss": {}}', b"[]", b'{"obss": [1, NaN]}',
                                  "{\"obss\": []}".encode("utf-16")])
def test_payload_level_errors_raise(data):
    with pytest.raises(ParseError):
        parse_crisis_json(data, "x")


def test_empty_obss_is_empty_frames():
    out = parse_crisis_json(b'{"obss": []}', "x")
    assert out.readings.empty and out.levels.empty and out.errors == []
    frames.observations(out.readings)


# --- censoring ----------------------------------------------------------------------------

GRID = pd.date_range("2025-09-10T00:00", periods=12 * 24 * 3, freq="10min", tz="UTC")


def _readings(times: list[str], values: list[float]) -> pd.DataFrame:
    return frames.observations(pd.DataFrame({
        "station_id": "g1", "variable": frames.LEVEL,
        "time": pd.DatetimeIndex(times).tz_localize("UTC"), "value": values}))


def test_silence_below_start_is_censored_not_missing():
    obs = _readings(["2025-09-10T03:00", "2025-09-11T03:00", "2025-09-11T06:00",
                     "2025-09-11T06:10"], [0.5, 0.6, 1.7, 1.9])
    out = censor_below_start(obs, 1.5, GRID).set_index("time")
    t = pd.Timestamp
    assert out.loc[t("2025-09-10T02:50", tz="UTC"), "flag"] == Flag.MISSING  # before any reading
    assert out.loc[t("2025-09-10T03:00", tz="UTC"), "flag"] == Flag.GOOD
    assert out.loc[t("2025-09-10T03:00", tz="UTC"), "value"] == 0.5
    row = out.loc[t("2025-09-10T12:00", tz="UTC")]
    assert row["flag"] == Flag.BELOW_START and np.isnan(row["value"])
    assert row["qc_rule"] == "crisis:below_start"
    # above the start level the gauge must report every 10 min: a gap is missing
    row = out.loc[t("2025-09-11T06:30", tz="UTC")]
    assert row["flag"] == Flag.MISSING and row["qc_rule"] == "crisis:gap"
    assert len(out) == len(GRID)


def test_max_silence_turns_censoring_into_missing():
    obs = _readings(["2025-09-10T00:00"], [0.2])
    out = censor_below_start(obs, 1.0, GRID, max_silence=pd.Timedelta(hours=24))
    after = out[out["time"] > pd.Timestamp("2025-09-11T00:00", tz="UTC")]
    assert (after["flag"] == Flag.MISSING).all()
    within = out[(out["time"] > GRID[0]) & (out["time"] <= pd.Timestamp("2025-09-11", tz="UTC"))]
    assert (within["flag"] == Flag.BELOW_START).all()


def _naive_censor(times, values, start, grid, max_silence):
    out = []
    pairs = sorted(zip(times, values, strict=True))
    for g in grid:
        exact = [v for t, v in pairs if t == g]
        if exact:
            out.append((int(Flag.GOOD), exact[-1]))
            continue
        before = [(t, v) for t, v in pairs if t <= g]
        if before and before[-1][1] < start and g - before[-1][0] <= max_silence:
            out.append((int(Flag.BELOW_START), np.nan))
        else:
            out.append((int(Flag.MISSING), np.nan))
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GRID) - 1), st.floats(0.0, 3.0)),
                max_size=30, unique_by=lambda x: x[0]),
       st.floats(0.5, 2.5))
def test_censoring_matches_naive_oracle(points, start):
    grid = GRID[::6]  # hourly grid; readings stay on the 10-min clock
    times = [GRID[i] for i, _ in points]
    values = [v for _, v in points]
    obs = _readings([t.tz_localize(None).isoformat() for t in times], values) if points \
        else frames.empty_observations()
    out = censor_below_start(obs, start, grid, station_id="g1" if points else None)
    expected = _naive_censor(times, values, start, grid, pd.Timedelta(hours=36))
    assert out["flag"].tolist() == [f for f, _ in expected]
    np.testing.assert_allclose(out["value"], [v for _, v in expected])


def test_censor_needs_one_station():
    both = pd.concat([_readings(["2025-09-10T00:00"], [0.1]),
                      _readings(["2025-09-10T00:00"], [0.1]).assign(station_id="g2")])
    with pytest.raises(ParseError, match="several stations"):
        censor_below_start(both, 1.0, GRID)
    out = censor_below_start(both, 1.0, GRID, station_id="g2")
    assert (out["station_id"] == "g2").all()
