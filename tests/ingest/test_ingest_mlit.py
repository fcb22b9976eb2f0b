"""MLIT 水文水質DB .dat and JSON parsers: contract tests on real files, oracles, bad input."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from forecast import frames
from forecast.errors import EncodingError, ParseError
from forecast.frames import Flag
from forecast.ingest.mlit import (
    parse_mlit_dat,
    parse_mlit_dat_many,
    parse_mlit_table,
)
from forecast.ingest.mlit_json import parse_mlit_json

from .conftest import DAILY_2004, HOURLY_FEB, HOURLY_JAN, KUJI


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8").split("\r\n")


def _join(lines: list[str]) -> bytes:
    return "\r\n".join(lines).encode("utf-8")


def _naive_hourly(data: bytes) -> pd.DataFrame:
    """Oracle: csv module + datetime arithmetic, one value at a time."""
    rows = []
    for rec in csv.reader(io.StringIO(data.decode("utf-8-sig"))):
        if not rec or not rec[0][:1].isdigit():
            continue
        day = datetime.strptime(rec[0], "%Y/%m/%d")
        for h in range(1, 25):
            value, flag = rec[2 * h - 1].strip(), rec[2 * h].strip()
            jst = day + timedelta(hours=h)       # h時 = hh:00, 24時 = next day 00:00
            missing = flag in {"$", "#", "-"} or value in {"", "-9999.99"}
            rows.append({
                "time": pd.Timestamp(jst - timedelta(hours=9), tz="UTC"),
                "value": np.nan if missing else float(value),
                "flag": int(Flag.MISSING if missing else Flag.GOOD),
                "provisional": flag == "*" and not missing,
            })
    return pd.DataFrame(rows)


@pytest.mark.parametrize("path", [HOURLY_JAN, HOURLY_FEB])
def test_real_hourly_matches_naive_oracle(path):
    data = path.read_bytes()
    table = parse_mlit_table(data, str(path))
    df = table.observations
    assert table.kind == "時刻流量月表"
    assert table.station_id == "301011281104010"
    assert table.header["観測所名"] == "茂志利"
    assert (df["station_id"] == "301011281104010").all()
    assert (df["variable"] == frames.DISCHARGE).all()
    oracle = _naive_hourly(data)
    assert len(df) == len(oracle)
    pd.testing.assert_series_equal(df["time"], oracle["time"], check_names=False)
    np.testing.assert_allclose(df["value"], oracle["value"])
    np.testing.assert_array_equal(df["flag"], oracle["flag"])
    frames.observations(df)  # idempotent under the contract


def test_hour_24_is_midnight_of_next_day_jst(hourly_jan):
    lines = _lines(hourly_jan)
    idx = next(i for i, ln in enumerate(lines) if ln.startswith("2004/01/05"))
    cells = lines[idx].split(",")
    cells[1] = "    1.11"      # 1時
    cells[47] = "    9.99"     # 24時
    lines[idx] = ",".join(cells)
    df = parse_mlit_dat(_join(lines), "t.dat")
    at = df.set_index("time")["value"]
    # 2004/01/05 1時 = 01:00 JST = 2004-01-04 16:00 UTC
    assert at[pd.Timestamp("2004-01-04T16:00", tz="UTC")] == pytest.approx(1.11)
    # 2004/01/05 24時 = 2004-01-06 00:00 JST = 2004-01-05 15:00 UTC
    assert at[pd.Timestamp("2004-01-05T15:00", tz="UTC")] == pytest.approx(9.99)
    # first value of the file is 2004-01-01 01:00 JST, last 2004-02-01 00:00 JST
    assert df["time"].iloc[0] == pd.Timestamp("2003-12-31T16:00", tz="UTC")
    assert df["time"].iloc[-1] == pd.Timestamp("2004-01-31T15:00", tz="UTC")
    assert df["time"].diff().dropna().eq(pd.Timedelta(hours=1)).all()


@pytest.mark.parametrize(("title", "variable"), [
    ("時刻水位月表検索結果", frames.LEVEL),
    ("時刻雨量月表検索結果", frames.RAIN),
    ("時刻流量月表検索結果", frames.DISCHARGE),
])
def test_kind_detected_from_title(hourly_jan, title, variable):
    lines = _lines(hourly_jan)
    lines[0] = title
    table = parse_mlit_table(_join(lines), "t.dat")
    assert table.variable == variable
    assert table.interval == "1h"
    assert set(table.observations["variable"]) == {variable}


@pytest.mark.parametrize("encode", [
    lambda t: t.encode("cp932"),
    lambda t: t.encode("shift_jis"),
    lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),
    lambda t: t.replace("\r\n", "\n").encode("utf-8"),
])
def test_accepted_encodings_give_the_same_frame(hourly_jan, encode):
    reference = parse_mlit_dat(hourly_jan, "ref.dat")
    text = hourly_jan.decode("utf-8")
    pd.testing.assert_frame_equal(parse_mlit_dat(encode(text), "x.dat"), reference)


@pytest.mark.parametrize("codec", ["euc_jp", "utf-16", "utf-32"])
def test_other_encodings_are_encoding_errors(hourly_jan, codec):
    data = hourly_jan.decode("utf-8").encode(codec)
    with pytest.raises(EncodingError) as info:
        parse_mlit_dat(data, "bad.dat")
    assert info.value.location == "bad.dat"
    assert info.value.source == "mlit_dat"


def test_flags_and_missing_sentinel(hourly_jan):
    lines = _lines(hourly_jan)
    idx = next(i for i, ln in enumerate(lines) if ln.startswith("2004/01/10"))
    cells = lines[idx].split(",")
    # (value, flag) for 1時..6時
    cells[1:13] = ["    0.70", "*", "        ", "$", "    0.10", "#", "        ", "-",
                   "-9999.99", " ", "    0.33", " "]
    lines[idx] = ",".join(cells)
    df = parse_mlit_dat(_join(lines), "t.dat")
    day = df[(df["time"] >= pd.Timestamp("2004-01-09T16:00", tz="UTC"))].head(6)
    assert day["flag"].tolist() == [Flag.GOOD, Flag.MISSING, Flag.MISSING, Flag.MISSING,
                                    Flag.MISSING, Flag.GOOD]
    assert day["qc_rule"].tolist() == ["", "mlit:$", "mlit:#", "mlit:-", "mlit:-9999.99", ""]
    assert day["provisional"].tolist() == [True, False, False, False, False, False]
    assert day["value"].iloc[0] == pytest.approx(0.70)
    assert day["value"].iloc[1:5].isna().all()   # "$" with 0.10 still becomes NaN


def _naive_daily(data: bytes) -> list[tuple[pd.Timestamp, float]]:
    out, year = [], None
    for rec in csv.reader(io.StringIO(data.decode("utf-8"))):
        if rec and rec[0].endswith("年"):
            year = int(rec[0][:-1])
        elif rec and rec[0].endswith("月") and year:
            month = int(rec[0][:-1])
            for d, value in enumerate(rec[1::2], start=1):
                end_jst = datetime(year, month, d) + timedelta(days=1)
                out.append((pd.Timestamp(end_jst - timedelta(hours=9), tz="UTC"), float(value)))
    return out


def test_real_daily_table(daily_2004):
    table = parse_mlit_table(daily_2004, str(DAILY_2004))
    # a daily mean has its own variable (it must not overwrite the hourly discharge_m3s)
    assert (table.kind, table.interval) == ("日流量年表", "1D")
    assert table.variable == "discharge_m3s_daily_mean"
    df = table.observations
    oracle = _naive_daily(daily_2004)
    assert len(df) == len(oracle) == 366                     # 2004 is a leap year
    assert df["time"].tolist() == [t for t, _ in oracle]
    np.testing.assert_allclose(df["value"], [v for _, v in oracle])
    # a daily value is stamped at the end of its day: 2004-01-01 → 2004-01-02 00:00 JST
    assert df["time"].iloc[0] == pd.Timestamp("2004-01-01T15:00", tz="UTC")


def test_daily_table_with_31_pairs_per_month(daily_2004):
    lines = _lines(daily_2004)
    idx = next(i for i, ln in enumerate(lines) if ln.startswith("2月,"))
    lines[idx] = lines[idx] + ",        , -" * 2          # pad Feb to 31 pairs
    df = parse_mlit_dat(_join(lines), "t.dat")
    assert len(df) == 366
    lines[idx] = lines[idx].rsplit(",", 2)[0] + ",    1.00, "  # a value for Feb 31
    with pytest.raises(ParseError, match="day after"):
        parse_mlit_dat(_join(lines), "t.dat")


def _first_data_line(lines: list[str]) -> int:
    return next(i for i, ln in enumerate(lines) if ln[:1].isdigit())


def _mutations(data: bytes) -> dict[str, tuple[bytes, str | None]]:
    """name → (mutated bytes, expected 'line N' position or None)."""
    lines = _lines(data)
    i = _first_data_line(lines)
    line_no = f"line {i + 4}"          # 1-based line of data row 3
    out: dict[str, tuple[bytes, str | None]] = {}
    shifted = lines.copy()
    shifted[i + 3] = shifted[i + 3].replace(",", ",,", 1)
    out["shifted column"] = (_join(shifted), line_no)
    short = lines.copy()
    short[i + 3] = short[i + 3].rsplit(",", 2)[0]
    out["missing pair"] = (_join(short), line_no)
    swapped = lines.copy()
    cells = swapped[i + 3].split(",")
    cells[1], cells[2] = cells[2], cells[1]
    swapped[i + 3] = ",".join(cells)
    out["value/flag swapped"] = (_join(swapped), line_no)
    flag = lines.copy()
    cells = flag[i + 3].split(",")
    cells[2] = "?"
    flag[i + 3] = ",".join(cells)
    out["unknown flag"] = (_join(flag), line_no)
    nan = lines.copy()
    nan[i + 3] = nan[i + 3].replace("0.52", " nan", 1).replace("0.45", " inf", 1)
    out["non-finite value"] = (_join(nan), line_no)
    dup = lines.copy()
    dup.insert(i + 3, lines[i + 2])
    out["duplicated row"] = (_join(dup), line_no)
    swap_rows = lines.copy()
    swap_rows[i + 2], swap_rows[i + 3] = swap_rows[i + 3], swap_rows[i + 2]
    out["out-of-order rows"] = (_join(swap_rows), f"line {i + 3}")
    out["truncated mid-line"] = (data[: len(data) - 200], None)
    body_end = max(k for k, ln in enumerate(lines) if ln.strip())
    out["last day missing"] = (_join(lines[:body_end]), None)
    out["header only"] = (_join(lines[:i]), None)
    out["no station code"] = (_join([ln for ln in lines if not ln.startswith("観測所記号")]),
                              None)
    bad_code = [("観測所記号,30101128110401X" if ln.startswith("観測所記号") else ln)
                for ln in lines]
    out["bad station code"] = (_join(bad_code), None)
    layout = [ln.replace("1時,,2時", "0時,,1時") for ln in lines]
    out["other hour layout"] = (_join(layout), None)
    out["unknown title"] = (_join(["時刻水質月表検索結果", *lines[1:]]), "line 1")
    bad_date = lines.copy()
    bad_date[i + 3] = bad_date[i + 3].replace("2004/01/04", "2004/13/04")
    out["bad date"] = (_join(bad_date), line_no)
    out["empty"] = (b"", None)
    return out


@pytest.mark.parametrize("name", list(_mutations(HOURLY_JAN.read_bytes())))
def test_bad_hourly_files_raise_parse_error_with_position(name):
    data, position = _mutations(HOURLY_JAN.read_bytes())[name]
    with pytest.raises(ParseError) as info:
        parse_mlit_dat(data, "bad.dat")
    assert info.value.location == "bad.dat"
    assert info.value.source == "mlit_dat"
    if position is not None:
        assert info.value.position == position, str(info.value)


@pytest.mark.parametrize("mutate", [
    lambda ls: [ln.replace("3月,", "2月,", 1) for ln in ls],             # duplicated month
    lambda ls: [ln for ln in ls if not ln.startswith("2004年")],        # no year line
    lambda ls: [ln.replace("    0.52, ,", "    0.52, , 9,", 1) for ln in ls],  # shifted
])
def test_bad_daily_files(daily_2004, mutate):
    with pytest.raises(ParseError):
        parse_mlit_dat(_join(mutate(_lines(daily_2004))), "bad.dat")


def test_many_equals_concatenation_of_single_files():
    files = [(p.read_bytes(), str(p)) for p in (HOURLY_JAN, HOURLY_FEB, DAILY_2004)]
    many = parse_mlit_dat_many(files)
    single = pd.concat([parse_mlit_dat(d, loc) for d, loc in files], ignore_index=True)
    pd.testing.assert_frame_equal(many, frames.observations(single))


# --- JSON rendering (久慈川 額田) -----------------------------------------------------------


def test_kuji_json_excerpt():
    raw = json.loads(KUJI.read_text(encoding="utf-8"))
    df = parse_mlit_json(KUJI.read_bytes(), str(KUJI))
    assert len(df) == len(raw["records"])
    assert (df["station_id"] == "303011283322030").all()
    assert (df["variable"] == frames.LEVEL).all()
    # peak of typhoon Shanshan: 1.75 m at 2024-08-30 17:00 JST = 08:00 UTC
    peak = df.loc[df["value"].idxmax()]
    hourly = df[df["time"] >= pd.Timestamp("2024-07-01", tz="Asia/Tokyo")]
    assert peak["time"] == pd.Timestamp("2024-08-30T08:00", tz="UTC")
    assert peak["value"] == pytest.approx(1.75)
    nulls = sum(r["value"] is None for r in raw["records"])
    assert (df["flag"] == Flag.MISSING).sum() == nulls
    by_rule = df[df["flag"] == Flag.MISSING]["qc_rule"].value_counts().to_dict()
    expected = pd.Series([f"mlit:{r['flag']}" for r in raw["records"] if r["value"] is None])
    assert by_rule == expected.value_counts().to_dict()
    assert hourly[hourly["flag"] == Flag.GOOD]["provisional"].all()
    assert not df[df["time"] < pd.Timestamp("2024-07-01", tz="Asia/Tokyo")]["provisional"].any()


def _kuji_doc() -> dict:
    return json.loads(KUJI.read_text(encoding="utf-8"))


def _dump(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def test_kuji_json_order_does_not_matter():
    doc = _kuji_doc()
    reference = parse_mlit_json(_dump(doc), "k.json")
    random.Random(1).shuffle(doc["records"])
    pd.testing.assert_frame_equal(parse_mlit_json(_dump(doc), "k.json"), reference)


@pytest.mark.parametrize(("mutate", "position"), [
    (lambda d: d["records"].append(dict(d["records"][5])), "records[104]"),
    (lambda d: d["records"][7].pop("value"), "records[7]"),
    (lambda d: d["records"][8].update(timestamp="2024-13-01T00:00"), "records[8]"),
    (lambda d: d["records"][9].update(value="1.2"), "records[9]"),
    (lambda d: d["records"][10].update(flag="?"), "records[10]"),
    (lambda d: d.pop("meta"), "meta"),
])
def test_kuji_json_bad_records(mutate, position):
    doc = _kuji_doc()
    mutate(doc)
    with pytest.raises(ParseError) as info:
        parse_mlit_json(_dump(doc), "k.json")
    assert info.value.position == position


def test_kuji_json_future_and_non_finite():
    data = KUJI.read_bytes()
    with pytest.raises(ParseError, match="future"):
        parse_mlit_json(data, "k.json", now=datetime(2025, 1, 1, tzinfo=UTC))
    parse_mlit_json(data, "k.json", now=datetime(2026, 7, 1, tzinfo=UTC))
    for literal in (b"NaN", b"Infinity", b"1e999", b"1" + b"0" * 400):
        bad = data.replace(b'"value": -0.9,', b'"value": ' + literal + b",", 1)
        assert bad != data
        with pytest.raises(ParseError):
            parse_mlit_json(bad, "k.json")


def _variant_months(data: bytes, months: int) -> list[bytes]:
    """Valid copies of a January file shifted to other years, with flags sprinkled in."""
    out = []
    rng = random.Random(7)
    for k in range(months):
        lines = _lines(data)
        year = 2005 + k
        for i, ln in enumerate(lines):
            if ln.startswith("2004/01/"):
                cells = ln.replace("2004/", f"{year}/", 1).split(",")
                for pair in rng.sample(range(24), 3):
                    cells[1 + 2 * pair: 3 + 2 * pair] = rng.choice(
                        [["    0.61", "*"], ["        ", "$"], ["-9999.99", " "],
                         ["    0.10", "#"], ["        ", "-"], ["        ", " "]])
                lines[i] = ",".join(cells)
        out.append(_join(lines))
    return out


def test_batch_fast_path_equals_precise_path(hourly_jan):
    from forecast.ingest import mlit

    files = [*_variant_months(hourly_jan, 14), HOURLY_FEB.read_bytes()]
    scans = [mlit._scan(d, f"f{i}.dat") for i, d in enumerate(files)]
    fast = mlit._hourly_fast(scans)
    assert fast is not None, "clean files must take the batch path"
    for got, scan in zip(fast, scans, strict=True):
        want = mlit._convert(scan)
        for name in ("times_jst", "values", "flags", "rules", "provisional"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    many = parse_mlit_dat_many([(d, f"f{i}.dat") for i, d in enumerate(files)])
    assert len(many) == sum(len(parse_mlit_dat(d, "x")) for d in files)


def test_batch_falls_back_and_reports_the_bad_file(hourly_jan):
    files = _variant_months(hourly_jan, 14)
    lines = _lines(files[11])
    i = _first_data_line(lines) + 5
    lines[i] = lines[i].replace("0.", "O.", 1)              # letter O: fast path refuses
    files[11] = _join(lines)
    with pytest.raises(ParseError) as info:
        parse_mlit_dat_many([(d, f"f{k}.dat") for k, d in enumerate(files)])
    assert info.value.location == "f11.dat"
    assert info.value.position == f"line {i + 1}"


def test_now_rejects_future_values_and_drops_future_gaps(hourly_jan):
    # "now" inside the month: 2004-01-20 12:00 JST
    now = datetime(2004, 1, 20, 3, 0, tzinfo=UTC)
    with pytest.raises(ParseError, match="later than now") as info:
        parse_mlit_dat(hourly_jan, "jan.dat", now=now)
    assert info.value.location == "jan.dat"
    # the current month as MLIT serves it: slots after now are 未登録 ("-", no value)
    lines = _lines(hourly_jan)
    for i, ln in enumerate(lines):
        if ln.startswith("2004/") and ln[:10] > "2004/01/20":
            lines[i] = ln[:10] + ",        ,-" * 24
        elif ln.startswith("2004/01/20"):             # 1時..12時 observed, 13時.. not yet
            lines[i] = ",".join(ln.split(",")[:25]) + ",        ,-" * 12
    df = parse_mlit_dat(_join(lines), "jan.dat", now=now)
    assert df["time"].max() <= pd.Timestamp(now)
    assert df["time"].max() == pd.Timestamp("2004-01-20T03:00", tz="UTC")
    later = parse_mlit_dat(_join(lines), "jan.dat", now=datetime(2004, 3, 1, tzinfo=UTC))
    assert len(later) == 744
