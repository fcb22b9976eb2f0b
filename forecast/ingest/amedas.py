"""JMA AMeDAS JSON from the "bosai" site (DOMAIN.md §4.2; not an official API).

* map snapshot ``map/YYYYMMDDhhmm00.json``: ``{"53133": {"precipitation10m": [0.5, 0], …}, …}``
  — all stations at one 10-minute time (JST, from the file name or the ``time`` argument);
* point file ``point/{code}/{YYYYMMDD}_{HH}.json``: ``{"20250801093000": {…elements…}, …}``
  — one station, keys are JST times;
* station table ``amedastable.json``: ``{"53133": {"type": "A", "lat": [34, 43.9],
  "lon": [136, 31.1], "alt": 5, "kjName": "津", …}, …}``.

Elements are ``[value, flag]``. Flag 0 with a non-null value is GOOD; any other flag code
(undocumented) keeps the value as DOUBTFUL, a null value is MISSING; ``qc_rule`` is
``amedas:flag=<n>``. Real-time values are 速報値, so ``provisional`` is True. Only
``precipitation10m`` (mm over the 10 minutes ending at ``time``) maps to a canonical variable
(``rain_mm``); the 1h/3h/24h totals overlap it and are not emitted.

Error policy: strict. A malformed element, a bad time key or a bad station code raises
``ParseError`` naming the key path; a station that simply lacks the element (it does not
observe rain) contributes no row.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import ParseError
from forecast.frames import Flag
from forecast.ingest._payload import (
    finite_number,
    first_future,
    load_json,
    utc_ns_from_jst,
)

SOURCE: Final = "amedas"
ELEMENTS: Final[dict[str, str]] = {"precipitation10m": frames.RAIN}
STATION_COLUMNS: Final = ("station_id", "name_ja", "name_kana", "name_en", "type", "lat", "lon",
                          "alt_m", "elems")
_CODE_RE: Final = re.compile(r"^\d{5}$")
_MAP_NAME_RE: Final = re.compile(r"(\d{12})00\.json$")
_POINT_RE: Final = re.compile(r"point/(\d{5})/\d{8}_\d{2}\.json$")


def _err(msg: str, location: str, position: str = "") -> ParseError:
    return ParseError(msg, source=SOURCE, location=location, position=position)


def _element(raw: Any, location: str, pos: str) -> tuple[float, int, str]:
    """``[value, flag]`` → (value, Flag, qc_rule)."""
    if not isinstance(raw, list) or len(raw) != 2:
        raise _err(f"element {str(raw)[:40]} is not [value, flag]", location, pos)
    value, code = raw
    if isinstance(code, bool) or not isinstance(code, int):
        raise _err(f"flag {code!r} is not an integer", location, pos)
    number = finite_number(value)
    if value is not None and number is None:
        raise _err(f"value {value!r} is not a finite number or null", location, pos)
    if number is None:
        return np.nan, int(Flag.MISSING), f"amedas:flag={code}"
    if code != 0:
        return number, int(Flag.DOUBTFUL), f"amedas:flag={code}"
    return number, int(Flag.GOOD), ""


def _jst_stamp(text: str, fmt: str, location: str, pos: str) -> pd.Timestamp:
    if not (text.isascii() and text.isdigit()):   # pandas would read "now" as the clock
        raise _err(f"time {text[:20]!r} is not all digits", location, pos)
    try:
        ts = pd.to_datetime(text, format=fmt)
    except (ValueError, TypeError) as exc:
        raise _err(f"time {text[:20]!r} does not match {fmt}", location, pos) from exc
    return pd.Timestamp(ts)


def _frame(cols: tuple[list[Any], ...], location: str, now: datetime | None) -> pd.DataFrame:
    station, variable, jst, values, flags, rules = cols
    if not station:
        return frames.empty_observations()
    jst_ns = np.array([t.value for t in jst], dtype=np.int64)
    df = frames.observations(pd.DataFrame({
        "station_id": station, "variable": variable, "time": utc_ns_from_jst(jst_ns),
        "value": np.asarray(values, dtype=np.float64), "flag": flags, "qc_rule": rules,
        "provisional": True,
    }))
    fut = first_future(df["time"], now, source=SOURCE)
    if fut is not None:
        raise _err(f"time {df['time'].iloc[fut].isoformat()} is in the future", location)
    return df.sort_values(["station_id", "variable", "time"]).reset_index(drop=True)


def parse_amedas_map(data: bytes, location: str, *, time: datetime | None = None,
                     now: datetime | None = None) -> pd.DataFrame:
    """Parse a map snapshot into ``rain_mm`` observations (mm per 10 min, ``time`` UTC).

    The observation time is ``time`` (naive = JST) or else read from the file name
    ``…/YYYYMMDDhhmm00.json`` (JST); if both are given they must agree.
    """
    from_name = _MAP_NAME_RE.search(location)
    named = _jst_stamp(from_name.group(1), "%Y%m%d%H%M", location, "file name") \
        if from_name else None
    if time is not None:
        given = pd.Timestamp(time)
        given = given.tz_convert("Asia/Tokyo").tz_localize(None) if given.tzinfo else given
        if named is not None and named != given:
            raise _err(f"time argument {given} (JST) disagrees with the file name {named}",
                       location)
        named = given
    if named is None:
        raise _err("no observation time: pass `time` or use a YYYYMMDDhhmm00.json name",
                   location)
    doc = load_json(data, source=SOURCE, location=location)
    if not isinstance(doc, dict):
        raise _err("expected an object keyed by station code", location)
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for code, elements in doc.items():
        if not _CODE_RE.match(code):
            raise _err(f"station key {code[:20]!r} is not a 5-digit code", location, code)
        if not isinstance(elements, dict):
            raise _err("station entry is not an object", location, code)
        _append(cols, elements, code, named, location, code)
    return _frame(cols, location, now)


def _append(cols: tuple[list[Any], ...], elements: dict[str, Any], station: str, time: Any,
            location: str, pos: str) -> None:
    """Append one row per known element of one station entry to the column lists."""
    for element, variable in ELEMENTS.items():
        if element in elements:
            value, flag, rule = _element(elements[element], location, f"{pos}.{element}")
            for col, item in zip(cols, (station, variable, time, value, flag, rule),
                                 strict=True):
                col.append(item)


def parse_amedas_point(data: bytes, location: str, *, station_id: str | None = None,
                       now: datetime | None = None) -> pd.DataFrame:
    """Parse a point file (one station, keys ``YYYYMMDDhhmmss`` JST) into ``rain_mm`` rows.

    ``station_id`` defaults to the code in the path ``point/{code}/…``.
    """
    if station_id is None:
        m = _POINT_RE.search(location)
        if m is None:
            raise _err("no station code: pass station_id or use a point/{code}/… path",
                       location)
        station_id = m.group(1)
    doc = load_json(data, source=SOURCE, location=location)
    if not isinstance(doc, dict):
        raise _err("expected an object keyed by YYYYMMDDhhmmss", location)
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for key, elements in doc.items():
        if not re.fullmatch(r"\d{14}", key):
            raise _err(f"time key {key[:20]!r} is not YYYYMMDDhhmmss", location, key)
        jst = _jst_stamp(key, "%Y%m%d%H%M%S", location, key)
        if not isinstance(elements, dict):
            raise _err("time entry is not an object", location, key)
        _append(cols, elements, station_id, jst, location, key)
    return _frame(cols, location, now)


def _degrees(raw: Any, location: str, pos: str, low: float, high: float) -> float:
    if not isinstance(raw, list) or len(raw) != 2:
        raise _err(f"{raw!r} is not [degrees, minutes]", location, pos)
    deg, minutes = finite_number(raw[0]), finite_number(raw[1])
    if deg is None or minutes is None or not 0 <= minutes < 60:
        raise _err(f"{raw!r} is not [degrees, minutes<60]", location, pos)
    out = deg + minutes / 60.0
    if not low <= out <= high:
        raise _err(f"{out:.4f} outside {low}…{high}", location, pos)
    return out


def parse_amedas_table(data: bytes, location: str) -> pd.DataFrame:
    """Parse ``amedastable.json`` into stations: ``STATION_COLUMNS`` with lat/lon in decimal
    degrees (from [deg, min]), ``alt_m`` in metres; sorted by ``station_id``."""
    doc = load_json(data, source=SOURCE, location=location)
    if not isinstance(doc, dict):
        raise _err("expected an object keyed by station code", location)
    rows: list[dict[str, Any]] = []
    for code, entry in doc.items():
        if not _CODE_RE.match(code):
            raise _err(f"station key {code[:20]!r} is not a 5-digit code", location, code)
        if not isinstance(entry, dict) or "lat" not in entry or "lon" not in entry:
            raise _err("station entry lacks lat/lon", location, code)
        alt = entry.get("alt")
        alt_m = finite_number(alt)
        if alt is not None and alt_m is None:
            raise _err(f"alt {alt!r} is not a number", location, f"{code}.alt")
        rows.append({
            "station_id": code,
            "name_ja": str(entry.get("kjName", "")), "name_kana": str(entry.get("knName", "")),
            "name_en": str(entry.get("enName", "")), "type": str(entry.get("type", "")),
            "lat": _degrees(entry["lat"], location, f"{code}.lat", 20.0, 46.0),
            "lon": _degrees(entry["lon"], location, f"{code}.lon", 122.0, 154.0),
            "alt_m": np.nan if alt_m is None else alt_m, "elems": str(entry.get("elems", "")),
        })
    df = pd.DataFrame(rows, columns=list(STATION_COLUMNS))
    return df.astype({"lat": "float64", "lon": "float64", "alt_m": "float64"}).sort_values(
        "station_id").reset_index(drop=True)
