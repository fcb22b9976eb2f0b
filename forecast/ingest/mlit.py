"""MLIT 水文水質データベース ``.dat`` downloads (the JSON rendering is in ``mlit_json``).

``.dat`` layout (DOMAIN.md §4.1): a title line naming the table (e.g. ``時刻水位月表検索結果``),
``key,value`` header lines (``観測所記号`` is the 15-digit station code), ``#`` comments, a
column header (``,1時,,2時,,…,24時,`` or ``,1日,,…,31日,``) and data rows of (value, flag)
pairs. Hour rule: ``h時`` is the value at hh:00 JST of the row's date, so ``24時`` is 00:00 JST
of the *next* day. Daily tables (日…年表, KIND 3/7) have a ``YYYY年`` line and one ``M月`` row
per month; a daily value is stamped at the end of its day (00:00 JST of the next day), the
convention for interval values in ``forecast.frames``. Daily values are means (level,
discharge) or totals (rain) over the day, so they get their own variables
(``frames.DAILY_VARIABLES``: ``level_m_daily_mean``, ``rain_mm_daily``,
``discharge_m3s_daily_mean``): importing a daily table after the hourly one of the same station
adds a daily series and never overwrites the real 00:00 JST hourly reading.

Flags: blank = 確定 (GOOD), ``*`` = 暫定 (GOOD, provisional), ``$`` 欠測, ``#`` 閉局,
``-`` 未登録 and the value ``-9999.99`` are MISSING with ``qc_rule`` ``mlit:<flag>``.

Strictness: a .dat file is a fixed grid written by MLIT's server, so any irregularity (field
count, unknown flag, unparsable number, non-consecutive or repeated dates) is a ``ParseError``
naming the line; nothing is guessed.

Speed: hourly files are checked line by line for layout (cheap), then all their values go
through one pandas C-parser pass (``_hourly_fast``); if that pass sees anything unusual the
files are re-read by the precise per-file path, which reports the exact line.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, pairwise
from typing import Any, Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import EncodingError, ParseError
from forecast.frames import Flag
from forecast.ingest._payload import (
    FUTURE_TOLERANCE,
    JST_OFFSET_NS,
    as_utc,
    decode_text,
    utc_ns_from_jst,
)

SOURCE_DAT: Final = "mlit_dat"

# title prefix → (variable, interval). Rain tables hold totals; level/discharge hold spot values
# (hourly) or daily means. Daily tables have their own variables (frames.DAILY_VARIABLES).
TITLES: Final[dict[str, tuple[str, str]]] = {
    "時刻水位月表": (frames.LEVEL, "1h"),
    "時刻雨量月表": (frames.RAIN, "1h"),
    "時刻流量月表": (frames.DISCHARGE, "1h"),
    "日水位年表": (frames.LEVEL_DAILY_MEAN, "1D"),
    "日雨量年表": (frames.RAIN_DAILY, "1D"),
    "日流量年表": (frames.DISCHARGE_DAILY_MEAN, "1D"),
}

# flag text → (Flag, qc_rule, provisional); qc_rule index into _RULES below.
_FLAG_TABLE: Final[dict[str, tuple[Flag, str, bool]]] = {
    "": (Flag.GOOD, "", False),
    "*": (Flag.GOOD, "", True),
    "$": (Flag.MISSING, "mlit:$", False),
    "#": (Flag.MISSING, "mlit:#", False),
    "-": (Flag.MISSING, "mlit:-", False),
}
_RULES: Final = ("", "mlit:$", "mlit:#", "mlit:-", "mlit:-9999.99", "mlit:blank")
_RULE_CODE: Final = {rule: i for i, rule in enumerate(_RULES)}
_MISSING_SENTINEL: Final = -9999.99
_HOURLY_HEADER: Final = "," + ",".join(f"{h}時," for h in range(1, 25))
_DAILY_HEADER: Final = "," + ",".join(f"{d}日," for d in range(1, 32))
_DATE_RE: Final = re.compile(r"^\d{4}/\d{2}/\d{2}$")
_STATION_RE: Final = re.compile(r"^\d{15}$")
_NS_PER_HOUR: Final = np.int64(3600 * 10**9)
_NS_PER_DAY: Final = np.int64(24) * _NS_PER_HOUR


@dataclass(frozen=True)
class MlitTable:
    """One parsed .dat file: ``kind`` is the title (e.g. ``時刻水位月表``), ``interval`` ``1h``
    or ``1D``, ``header`` the ``key,value`` lines, ``observations`` the canonical frame."""

    kind: str
    station_id: str
    variable: str
    interval: str
    header: dict[str, str]
    observations: pd.DataFrame


@dataclass
class _Arrays:
    kind: str
    station_id: str
    variable: str
    interval: str
    header: dict[str, str]
    times_jst: np.ndarray      # int64 ns, naive JST
    values: np.ndarray         # float64
    flags: np.ndarray          # int8
    rules: np.ndarray          # int8 index into _RULES
    provisional: np.ndarray    # bool


def _err(msg: str, location: str, line: int | None = None) -> ParseError:
    return ParseError(msg, source=SOURCE_DAT, location=location,
                      position=f"line {line}" if line is not None else "")


def _detect_kind(title: str, data: bytes, encoding: str, location: str) -> str:
    for kind in TITLES:
        if title.startswith(kind):
            return kind
    # An unknown title in a file with non-ASCII bytes usually means a third encoding (EUC-JP,
    # UTF-16): say so rather than "unknown table".
    for other in ("euc_jp", "utf-16"):
        try:
            alt = data.decode(other).lstrip("\ufeff").split("\n", 1)[0]
        except UnicodeDecodeError:
            continue
        if any(alt.startswith(kind) for kind in TITLES):
            raise EncodingError(f"file is {other}, not UTF-8 or Shift_JIS; re-save it",
                                source=SOURCE_DAT, location=location, position="line 1")
    raise _err(f"unknown table title {title[:40]!r} (decoded as {encoding}); expected one of "
               f"{sorted(TITLES)}", location, 1)


def _to_float(tokens: np.ndarray, rows: np.ndarray, line_of_row: np.ndarray,
              location: str) -> tuple[np.ndarray, np.ndarray]:
    """Strip and convert value tokens; blanks → NaN. Returns (values, blank_mask)."""
    stripped = np.char.strip(tokens)
    blank = stripped == ""
    stripped = np.where(blank, "nan", stripped)
    try:
        values = stripped.astype(np.float64)
    except ValueError:
        values = np.full(len(stripped), np.nan)
        for i, tok in enumerate(stripped):     # error path only: find the culprit
            try:
                values[i] = float(tok)
            except ValueError:
                raise _err(f"value {str(tok)[:20]!r} is not a number (shifted columns?)",
                           location, int(line_of_row[rows[i]])) from None
    bad = ~np.isfinite(values) & ~blank
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(f"non-finite value {str(tokens[i]).strip()!r}", location,
                   int(line_of_row[rows[i]]))
    return values, blank


def _flag_codes(flag_tokens: np.ndarray, rows: np.ndarray, line_of_row: np.ndarray,
                location: str) -> np.ndarray:
    """Flag text → index into ``_FLAG_TABLE``; an unknown flag is a ParseError."""
    flag_text = np.char.strip(flag_tokens)
    uniq, inverse = np.unique(flag_text, return_inverse=True)
    known = list(_FLAG_TABLE)
    code_of = np.empty(len(uniq), dtype=np.int8)
    for j, text in enumerate(uniq.tolist()):   # a handful of distinct flags, not per value
        if text not in _FLAG_TABLE:
            i = int(np.flatnonzero(inverse == j)[0])
            raise _err(f"unknown flag {str(text)[:20]!r} (expected blank, *, $, #, -)",
                       location, int(line_of_row[rows[i]]))
        code_of[j] = known.index(text)
    return code_of[inverse.ravel()]


_FLAG_OF: Final = np.array([e[0] for e in _FLAG_TABLE.values()], dtype=np.int8)
_RULE_OF: Final = np.array([_RULE_CODE[e[1]] for e in _FLAG_TABLE.values()], dtype=np.int8)
_PROV_OF: Final = np.array([e[2] for e in _FLAG_TABLE.values()], dtype=bool)


def _finish(values: np.ndarray, blank: np.ndarray, codes: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flag codes + values → (values, Flag, rule code, provisional); sentinels are missing."""
    flags, rules, prov = _FLAG_OF[codes], _RULE_OF[codes], _PROV_OF[codes]
    sentinel = np.abs(values - _MISSING_SENTINEL) < 1e-6
    good = flags == Flag.GOOD
    rules = np.where(good & sentinel, np.int8(_RULE_CODE["mlit:-9999.99"]), rules)
    rules = np.where(good & blank, np.int8(_RULE_CODE["mlit:blank"]), rules)
    missing = (flags == Flag.MISSING) | sentinel | blank
    flags = np.where(missing, np.int8(Flag.MISSING), flags).astype(np.int8)
    values = np.where(missing, np.nan, values)
    return values, flags, rules.astype(np.int8), prov & ~missing


def _classify(values: np.ndarray, blank: np.ndarray, flag_tokens: np.ndarray,
              rows: np.ndarray, line_of_row: np.ndarray, location: str,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map flag text and sentinel values to (values, Flag, rule code, provisional)."""
    return _finish(values, blank, _flag_codes(flag_tokens, rows, line_of_row, location))


def _header(lines: list[str], location: str) -> tuple[dict[str, str], int]:
    """Parse ``key,value`` lines up to the column header; return (header, header index)."""
    header: dict[str, str] = {}
    for i, line in enumerate(lines[1:], start=1):
        if line.startswith(","):
            return header, i
        if line.startswith("#") or not line.strip():
            continue
        key, sep, value = line.partition(",")
        if not sep:
            raise _err(f"header line {line[:40]!r} is not 'key,value'", location, i + 1)
        header[key.strip()] = value.strip()
    raise _err("no column header line (',1時,,2時,…' or ',1日,,…'): file truncated?",
               location, len(lines))


def _parse_hourly(rows: list[str], first_line: int, location: str,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    counts = np.fromiter((r.count(",") for r in rows), dtype=np.int64, count=len(rows))
    line_of_row = np.arange(len(rows)) + first_line
    wrong = np.flatnonzero(counts != 48)
    if len(wrong):
        i = int(wrong[0])
        raise _err(f"expected 49 fields (date + 24 value,flag pairs), found {counts[i] + 1}",
                   location, int(line_of_row[i]))
    grid = np.array(",".join(rows).split(","), dtype=str).reshape(len(rows), 49)
    dates = np.char.strip(grid[:, 0])
    bad_date = ~np.array([bool(_DATE_RE.match(d)) for d in dates.tolist()])
    if bad_date.any():
        i = int(np.flatnonzero(bad_date)[0])
        raise _err(f"bad date {str(dates[i])[:20]!r} (expected YYYY/MM/DD)", location,
                   int(line_of_row[i]))
    iso = np.char.replace(dates, "/", "-")
    try:
        days = iso.astype("datetime64[D]")
    except ValueError:
        for i, text in enumerate(iso.tolist()):   # error path only: find the culprit
            try:
                np.datetime64(text, "D")
            except ValueError:
                raise _err(f"impossible calendar date {dates[i]}", location,
                           int(line_of_row[i])) from None
        raise _err("unparsable dates", location, first_line) from None
    step = np.diff(days.astype(np.int64))
    if (step != 1).any():
        i = int(np.flatnonzero(step != 1)[0]) + 1
        raise _err(f"date {dates[i]} does not follow {dates[i - 1]} (rows must be consecutive "
                   "days; duplicate, missing or out-of-order row)", location,
                   int(line_of_row[i]))
    if pd.Timestamp(days[0]).day != 1 or not pd.Timestamp(days[-1]).is_month_end:
        raise _err("rows must cover whole months (first day 1, last the month's end): "
                   "file truncated?", location, int(line_of_row[-1]))
    hours = np.arange(1, 25, dtype=np.int64) * _NS_PER_HOUR
    times = (days.astype("datetime64[ns]").astype(np.int64)[:, None] + hours).ravel()
    row_idx = np.repeat(np.arange(len(rows)), 24)
    values, blank = _to_float(grid[:, 1::2].ravel(), row_idx, line_of_row, location)
    out = _classify(values, blank, grid[:, 2::2].ravel(), row_idx, line_of_row, location)
    return (times, *out)


def _parse_daily(rows: list[str], first_line: int, location: str,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    times: list[np.ndarray] = []
    val_tok: list[list[str]] = []
    flag_tok: list[list[str]] = []
    line_of_row: list[int] = []
    year: int | None = None
    previous: tuple[int, int] | None = None
    for offset, row in enumerate(rows):       # ≤ 13 lines per year: per-line, not per-value
        line = first_line + offset
        head, _, rest = row.partition(",")
        head = head.strip()
        if re.fullmatch(r"\d{4}年", head) and not rest.strip(", "):
            year = int(head[:4])
            continue
        m = re.fullmatch(r"(\d{1,2})月", head)
        if m is None or not 1 <= int(m.group(1)) <= 12:
            raise _err(f"expected 'YYYY年' or 'M月,…', found {head[:20]!r}", location, line)
        if year is None:
            raise _err("month row before any 'YYYY年' line", location, line)
        month = int(m.group(1))
        if previous is not None and (year * 12 + month) - (previous[0] * 12 + previous[1]) != 1:
            raise _err(f"{year}-{month:02d} does not follow {previous[0]}-{previous[1]:02d} "
                       "(duplicate, missing or out-of-order month)", location, line)
        previous = (year, month)
        tokens = rest.split(",")
        ndays = pd.Period(year=year, month=month, freq="M").days_in_month
        if len(tokens) % 2 or len(tokens) // 2 not in (ndays, 31):
            allowed = "31" if ndays == 31 else f"{ndays} or 31"
            raise _err(f"expected {allowed} value,flag pairs, found {len(tokens) / 2:g}",
                       location, line)
        extra_vals = tokens[2 * ndays::2]
        if any(t.strip() not in ("", "-9999.99") for t in extra_vals):
            raise _err(f"a value for a day after {year}-{month:02d}-{ndays}", location, line)
        val_tok.append(tokens[0:2 * ndays:2])
        flag_tok.append(tokens[1:2 * ndays:2])
        line_of_row.append(line)
        start = np.datetime64(f"{year:04d}-{month:02d}-01", "ns").astype(np.int64)
        times.append(start + np.arange(1, ndays + 1, dtype=np.int64) * _NS_PER_DAY)
    if not times:
        raise _err("no month rows: file truncated?", location, first_line)
    lines_arr = np.asarray(line_of_row)
    row_idx = np.repeat(np.arange(len(val_tok)), [len(v) for v in val_tok])
    val_arr = np.array(list(chain.from_iterable(val_tok)), dtype=str)
    flag_arr = np.array(list(chain.from_iterable(flag_tok)), dtype=str)
    values, blank = _to_float(val_arr, row_idx, lines_arr, location)
    out = _classify(values, blank, flag_arr, row_idx, lines_arr, location)
    return (np.concatenate(times), *out)


@dataclass
class _Scan:
    """A .dat file whose header and layout were checked; its data rows are still text."""

    location: str
    kind: str
    station_id: str
    variable: str
    interval: str
    header: dict[str, str]
    rows: list[str]
    first_line: int


def _scan(data: bytes, location: str) -> _Scan:
    text, encoding = decode_text(data, source=SOURCE_DAT, location=location)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise _err("empty file or blank title line", location, 1)
    kind = _detect_kind(lines[0].strip(), bytes(data), encoding, location)
    variable, interval = TITLES[kind]
    header, col_idx = _header(lines, location)
    station = header.get("観測所記号")
    if station is None:
        raise _err("no '観測所記号' (station code) header line", location)
    if not _STATION_RE.match(station):
        raise _err(f"観測所記号 {station[:30]!r} is not a 15-digit code", location)
    expected = _HOURLY_HEADER if interval == "1h" else _DAILY_HEADER
    if lines[col_idx].rstrip() != expected:
        raise _err(f"column header {lines[col_idx][:40]!r}… is not the {kind} layout "
                   f"{expected[:20]!r}…", location, col_idx + 1)
    body = [(i, ln) for i, ln in enumerate(lines[col_idx + 1:], start=col_idx + 2)
            if ln.strip() and not ln.startswith("#")]
    if not body:
        raise _err("no data rows after the column header: file truncated?", location,
                   len(lines))
    first_line = body[0][0]
    if body[-1][0] - first_line + 1 != len(body):
        # a blank/comment line inside the data block: line numbers would no longer line up
        gap = next(i for (i, _), (j, _) in pairwise(body) if j != i + 1)
        raise _err("blank or comment line inside the data rows", location, gap + 1)
    rows = [ln for _, ln in body]
    if interval == "1h":
        counts = np.fromiter((r.count(",") for r in rows), dtype=np.int64, count=len(rows))
        wrong = np.flatnonzero(counts != 48)
        if len(wrong):
            i = int(wrong[0])
            raise _err(f"expected 49 fields (date + 24 value,flag pairs), found "
                       f"{counts[i] + 1}", location, first_line + i)
        for i, row in enumerate(rows):        # ≤ 31 rows: checks the date shape only
            date = row.partition(",")[0].strip()
            if not _DATE_RE.match(date):
                raise _err(f"bad date {date[:12]!r} (expected YYYY/MM/DD)", location,
                           first_line + i)
    return _Scan(location, kind, station, variable, interval, header, rows, first_line)


def _convert(scan: _Scan) -> _Arrays:
    """Precise per-file conversion: exact error positions, tolerant of odd whitespace."""
    parse = _parse_hourly if scan.interval == "1h" else _parse_daily
    times, values, flags, rules, prov = parse(scan.rows, scan.first_line, scan.location)
    return _Arrays(scan.kind, scan.station_id, scan.variable, scan.interval, scan.header,
                   times, values, flags, rules, prov)


# Characters a clean hourly body may contain; anything else sends the batch to the precise path.
_FAST_BAD: Final = re.compile(r"[^0-9 .,\-*$#/\n]")
_VAL_COLS: Final = list(range(1, 49, 2))
_FLAG_COLS: Final = list(range(2, 49, 2))


def _hourly_fast(scans: list[_Scan]) -> list[_Arrays] | None:
    """All hourly files in one pandas C-parser pass; ``None`` if anything looks unusual.

    This path never raises for bad data: on any irregularity the caller re-runs the files
    through ``_convert``, which finds and reports the exact line.
    """
    n_rows = np.array([len(s.rows) for s in scans], dtype=np.int64)
    body = "\n".join(chain.from_iterable(s.rows for s in scans))
    if _FAST_BAD.search(body):
        return None
    # Any-typed: pandas-stubs only allow str column keys here; ours are positions
    na_values: Any = {col: [""] for col in _VAL_COLS}
    dtypes: Any = {0: "object", **dict.fromkeys(_VAL_COLS, "float64"),
                   **dict.fromkeys(_FLAG_COLS, "object")}
    try:
        table = pd.read_csv(
            io.StringIO(body), header=None, names=list(range(49)), engine="c",
            skipinitialspace=True, keep_default_na=False, skip_blank_lines=False,
            na_values=na_values, dtype=dtypes,
        )
        days = pd.to_datetime(table[0], format="%Y/%m/%d").to_numpy("datetime64[D]")
    except (ValueError, TypeError, pd.errors.ParserError):
        return None
    if len(table) != n_rows.sum():
        return None
    ends = np.cumsum(n_rows)
    starts = ends - n_rows
    day_no = days.astype(np.int64)
    same_file = np.repeat(np.arange(len(scans)), n_rows)
    step_ok = (np.diff(day_no) == 1) | (np.diff(same_file) != 0)
    first, last = pd.DatetimeIndex(days[starts]), pd.DatetimeIndex(days[ends - 1])
    if not (step_ok.all() and (first.day == 1).all() and last.is_month_end.all()):
        return None
    values = table[_VAL_COLS].to_numpy(np.float64).ravel()
    flag_text = table[_FLAG_COLS].to_numpy(object).ravel()
    codes = np.full(len(flag_text), -1, dtype=np.int8)
    for code, text in enumerate(_FLAG_TABLE):  # five comparisons over the whole batch
        codes[flag_text == text] = code
    if (codes < 0).any():
        return None
    values, flags, rules, prov = _finish(values, np.isnan(values), codes)
    hours = np.arange(1, 25, dtype=np.int64) * _NS_PER_HOUR
    times = (days.astype("datetime64[ns]").astype(np.int64)[:, None] + hours).ravel()
    out = []
    for scan, a, b in zip(scans, starts * 24, ends * 24, strict=True):
        out.append(_Arrays(scan.kind, scan.station_id, scan.variable, scan.interval,
                           scan.header, times[a:b], values[a:b], flags[a:b], rules[a:b],
                           prov[a:b]))
    return out


_FAST_MIN_ROWS: Final = 400
"""Below this many day rows the C parser's fixed cost outweighs its speed (~a year of files)."""


def _convert_all(scans: list[_Scan]) -> list[_Arrays]:
    hourly = [s for s in scans if s.interval == "1h"]
    fast = None
    if sum(len(s.rows) for s in hourly) >= _FAST_MIN_ROWS:
        fast = _hourly_fast(hourly)
    converted = iter(fast if fast is not None else [_convert(s) for s in hourly])
    return [next(converted) if s.interval == "1h" else _convert(s) for s in scans]


def _drop_future(parts: list[_Arrays], locations: list[str], now: datetime | None,
                 ) -> list[_Arrays]:
    """Without ``now``: unchanged. With it: a *value* later than now (+10 min) is an error;
    missing slots later than now (the rest of the current month, 未登録) are dropped."""
    if now is None:
        return parts
    limit_jst = (as_utc(now, source=SOURCE_DAT) + FUTURE_TOLERANCE).tz_localize(None).value \
        + int(JST_OFFSET_NS)
    out = []
    for part, location in zip(parts, locations, strict=True):
        future = part.times_jst > limit_jst
        if not future.any():
            out.append(part)
            continue
        valued = future & (part.flags != Flag.MISSING)
        if valued.any():
            t = pd.Timestamp(int(part.times_jst[np.flatnonzero(valued)[0]]))
            raise _err(f"a value at {t:%Y-%m-%d %H:%M} JST is later than now ({now})",
                       location)
        keep = ~future
        out.append(_Arrays(part.kind, part.station_id, part.variable, part.interval,
                           part.header, part.times_jst[keep], part.values[keep],
                           part.flags[keep], part.rules[keep], part.provisional[keep]))
    return out


def _frame(parts: list[_Arrays]) -> pd.DataFrame:
    if not parts:
        return frames.empty_observations()
    sizes = [len(p.values) for p in parts]
    rules = np.asarray(_RULES, dtype=object)[np.concatenate([p.rules for p in parts])]
    df = pd.DataFrame({
        "station_id": np.repeat(np.asarray([p.station_id for p in parts], dtype=object), sizes),
        "variable": np.repeat(np.asarray([p.variable for p in parts], dtype=object), sizes),
        "time": utc_ns_from_jst(np.concatenate([p.times_jst for p in parts])),
        "value": np.concatenate([p.values for p in parts]),
        "flag": np.concatenate([p.flags for p in parts]),
        "qc_rule": rules,
        "provisional": np.concatenate([p.provisional for p in parts]),
    })
    return frames.observations(df)


def _parse(files: list[tuple[bytes, str]], now: datetime | None) -> list[_Arrays]:
    parts = _convert_all([_scan(data, location) for data, location in files])
    return _drop_future(parts, [location for _, location in files], now)


def parse_mlit_table(data: bytes, location: str, *, now: datetime | None = None) -> MlitTable:
    """Parse one MLIT .dat download (UTF-8, UTF-8 with BOM or Shift_JIS/cp932).

    Returns the table kind, station code, variable (hourly tables: ``level_m`` m, ``rain_mm``
    mm over the hour ending at ``time``, ``discharge_m3s`` m³/s; daily tables:
    ``level_m_daily_mean`` m, ``rain_mm_daily`` mm over the day ending at ``time``,
    ``discharge_m3s_daily_mean`` m³/s), interval and the observations frame
    (columns ``forecast.frames.OBS_COLUMNS``, ``time`` UTC). Raises ``EncodingError`` for other
    encodings and ``ParseError`` (with line number) for any layout problem. With ``now``
    (tz-aware), a value later than now is a ``ParseError`` and missing slots after now are
    dropped.
    """
    (arrays,) = _parse([(data, location)], now)
    return MlitTable(arrays.kind, arrays.station_id, arrays.variable, arrays.interval,
                     arrays.header, _frame([arrays]))


def parse_mlit_dat(data: bytes, location: str, *, now: datetime | None = None) -> pd.DataFrame:
    """Parse one MLIT .dat file to a canonical observations frame (see ``parse_mlit_table``)."""
    return _frame(_parse([(data, location)], now))


def parse_mlit_dat_many(files: Iterable[tuple[bytes, str]], *,
                        now: datetime | None = None) -> pd.DataFrame:
    """Parse many ``(data, location)`` .dat files into one observations frame.

    Faster than concatenating ``parse_mlit_dat`` results: the frame is built once and all
    hourly values go through one C-parser pass. The first bad file raises its ``ParseError``.
    """
    return _frame(_parse(list(files), now))
