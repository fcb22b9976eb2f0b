"""The 厚東川 CSV parser on the real file, against an independent pandas reading, and its
refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.errors import ParseError
from forecast.frames import Flag
from forecast.ingest.kotogawa import MISSING_RULE, parse_kotogawa_csv

CSV = (Path(__file__).parent.parent / "data" / "kotogawa"
       / "kotogawa_jiseiji_level_kotogawa_dam_2023-06_2023-07.csv")


@pytest.fixture(scope="module")
def parsed() -> pd.DataFrame:
    return parse_kotogawa_csv(CSV.read_bytes(), str(CSV))


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    df = pd.read_csv(CSV, encoding="utf-8-sig")
    df["utc"] = (pd.to_datetime(df["時刻"], format="%Y/%m/%d %H:%M")
                 - pd.Timedelta(hours=9)).dt.tz_localize("UTC")
    return df


def _series(parsed: pd.DataFrame, station: str) -> pd.DataFrame:
    return parsed[parsed["station_id"] == station].set_index("time")


def test_stage_zeros_missing_times_utc(parsed: pd.DataFrame, raw: pd.DataFrame) -> None:
    s = _series(parsed, "jiseiji")
    assert set(s["variable"]) == {"level_m"} and len(s) == len(raw) == 8928
    assert (s.index == pd.DatetimeIndex(raw["utc"])).all()
    zero = (raw["水位_水位"] == 0).to_numpy()
    assert zero.sum() == 4
    np.testing.assert_array_equal(s["value"].to_numpy()[~zero], raw["水位_水位"][~zero])
    assert s["value"].isna().to_numpy().tolist() == zero.tolist()
    assert (s["flag"].to_numpy()[zero] == int(Flag.MISSING)).all()
    assert set(s["qc_rule"].to_numpy()[zero]) == {MISSING_RULE}
    assert (s["flag"].to_numpy()[~zero] == int(Flag.GOOD)).all()
    peak = s["value"].idxmax()
    assert s["value"].max() == 7.47 and peak == pd.Timestamp("2023-06-30 19:30", tz="UTC")


def test_dam_release_and_hourly_rain(parsed: pd.DataFrame, raw: pd.DataFrame) -> None:
    out = (raw["ダム_貯水位"] == 0).to_numpy()
    rel = _series(parsed, "kotogawa_dam_release")
    assert set(rel["variable"]) == {"release_m3s"}
    assert rel["value"].isna().to_numpy().tolist() == out.tolist() and out.sum() == 10
    hours = raw[raw["utc"].dt.minute == 0]
    rain = _series(parsed, "kotogawa_dam_rain")
    assert set(rain["variable"]) == {"rain_mm"} and len(rain) == len(hours) == 1488
    expect = hours["ダム_60分雨量"].where(hours["ダム_貯水位"] != 0)
    np.testing.assert_array_equal(rain["value"].to_numpy(), expect.to_numpy())
    # a 0 at a whole hour is no rain, not missing (outside the logger outage)
    assert (rain["value"] == 0).sum() > 1000


@pytest.mark.parametrize(("text", "match"), [
    ("時刻,水位_水位\n2023/06/01 00:10,2.5\n", "lacks columns"),
    ("時刻,水位_水位,ダム_60分雨量,ダム_全放流量,ダム_貯水位\n2023-06-01 00:10,2.5,0,9,38\n",
     "row 2"),
    ("時刻,水位_水位,ダム_60分雨量,ダム_全放流量,ダム_貯水位\n2023/06/01 00:10,x,0,9,38\n",
     "水位_水位 'x' is not a number"),
    ("時刻,水位_水位,ダム_60分雨量,ダム_全放流量,ダム_貯水位\n2023/06/01 00:10,2.5,0,9,38\n"
     "2023/06/01 00:10,2.6,0,9,38\n", "appears twice"),
])
def test_refuses_bad_files(text: str, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        parse_kotogawa_csv(text.encode("utf-8"), "bad.csv")
