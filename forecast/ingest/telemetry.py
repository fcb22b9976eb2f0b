"""Configurable adapter for prefecture telemetry feeds (CSV or JSON): a new feed is config.

Example (YAML, validated by ``TelemetryFeed``; unknown keys are refused)::

    name: mie_level_csv
    format: csv
    encoding: cp932
    columns: {station: 観測所コード, time: 観測日時, value: 水位, flag: 状態}
    time_format: "%Y/%m/%d %H:%M"     # omit for ISO 8601
    time_zone: Asia/Tokyo             # for naive times; offsets in the data win
    units: cm                         # converted to the variable's unit (m for level_m)
    variable: level_m
    station_map: {"2401": "kumozu_oyachi"}   # feed code → catalogue code
    missing_values: ["-9999", "欠測", ""]
    flag_map: {"0": GOOD, "1": DOUBTFUL}      # unknown flag text → ParseError

Error policy: strict, like a contract. Unparsable times or numbers, unmapped stations (unless
``unmapped: drop``), values outside ``plausible_range`` after unit conversion (the usual sign
of cm sent as m), timestamps after ``now`` and conflicting duplicates raise ``ParseError``
naming the row (CSV: line number; JSON: ``records[i]``). Exact duplicates are merged and rows
are sorted, since feed order carries no meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecast import frames
from forecast.errors import ConfigError, ParseError
from forecast.frames import Flag
from forecast.ingest._payload import decode_text, first_future, load_json

SOURCE: Final = "telemetry"
# factor to the variable's canonical unit
_FACTORS: Final[dict[str, dict[str, float]]] = {
    frames.LEVEL: {"m": 1.0, "cm": 0.01, "mm": 0.001},
    frames.RAIN: {"mm": 1.0, "cm": 10.0},
    frames.DISCHARGE: {"m3/s": 1.0},
    frames.RELEASE: {"m3/s": 1.0},
    frames.INFLOW: {"m3/s": 1.0},
}
_DEFAULT_RANGE: Final[dict[str, tuple[float, float]]] = {
    frames.LEVEL: (-10.0, 30.0),       # stage above a gauge datum
    frames.RAIN: (0.0, 200.0),         # per reporting interval (10 min / 1 h)
    frames.DISCHARGE: (0.0, 50_000.0),
    frames.RELEASE: (0.0, 50_000.0),
    frames.INFLOW: (0.0, 50_000.0),
}


class ColumnMap(BaseModel):
    """Feed column (CSV header or JSON key) for each canonical field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    station: str = Field(min_length=1)
    time: str = Field(min_length=1)
    value: str = Field(min_length=1)
    flag: str | None = None


class TelemetryFeed(BaseModel):
    """One telemetry feed's format; see the module docstring for an example."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    format: Literal["csv", "json"]
    encoding: Literal["utf-8", "cp932"] = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    records_path: tuple[str, ...] = ()          # JSON keys leading to the records array
    columns: ColumnMap
    time_format: str | None = None
    time_zone: str = "Asia/Tokyo"
    units: Literal["m", "cm", "mm", "m3/s"]
    variable: Literal["level_m", "rain_mm", "discharge_m3s", "release_m3s", "inflow_m3s"]
    station_map: dict[str, str] = Field(min_length=1)
    unmapped: Literal["error", "drop"] = "error"
    missing_values: tuple[str, ...] = ("",)
    flag_map: dict[str, Literal["GOOD", "DOUBTFUL", "UNRELIABLE", "MISSING"]] = {}
    plausible_range: tuple[float, float] | None = None   # canonical units; None = default
    provisional: bool = True                    # real-time telemetry is unverified (暫定)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TelemetryFeed:
        if self.units not in _FACTORS[self.variable]:
            raise ValueError(f"units {self.units!r} do not fit {self.variable}; use one of "
                             f"{sorted(_FACTORS[self.variable])}")
        if self.columns.flag is not None and not self.flag_map:
            raise ValueError("columns.flag is set, so flag_map must map its values")
        low, high = self.bounds
        if not low < high:
            raise ValueError("plausible_range must be (low, high) with low < high")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        """Plausible value range in the variable's canonical unit."""
        return self.plausible_range or _DEFAULT_RANGE[self.variable]


def feed_from_mapping(raw: Mapping[str, Any], *, location: str = "") -> TelemetryFeed:
    """Validate a feed configuration (e.g. loaded from YAML); ``ConfigError`` names the keys."""
    try:
        return TelemetryFeed.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"telemetry feed {location or '?'}: {problems}") from exc


def _err(feed: TelemetryFeed, msg: str, location: str, position: str = "") -> ParseError:
    return ParseError(msg, source=f"{SOURCE}:{feed.name}", location=location, position=position)


def _table_csv(feed: TelemetryFeed, data: bytes, location: str) -> tuple[pd.DataFrame, list[str]]:
    text, _ = decode_text(data, source=f"{SOURCE}:{feed.name}", location=location,
                          encodings=(feed.encoding,))
    lines = text.splitlines()
    if not lines:
        raise _err(feed, "empty file", location, "line 1")
    header = lines[0].split(feed.delimiter)
    header = [h.strip().strip('"') for h in header]
    wanted = [c for c in (feed.columns.station, feed.columns.time, feed.columns.value,
                          feed.columns.flag) if c is not None]
    absent = [c for c in wanted if c not in header]
    if absent:
        raise _err(feed, f"columns {absent} not in header {header[:10]}", location, "line 1")
    # blank lines (e.g. a trailing one) carry nothing; keep true line numbers for messages
    numbered = [(i, ln) for i, ln in enumerate(lines[1:], start=2) if ln.strip()]
    body = [ln for _, ln in numbered]
    positions = [f"line {i}" for i, _ in numbered]
    counts = np.fromiter((ln.count(feed.delimiter) for ln in body), dtype=np.int64,
                         count=len(body))
    wrong = np.flatnonzero(counts != len(header) - 1)
    if len(wrong):
        i = int(wrong[0])
        raise _err(feed, f"expected {len(header)} fields, found {counts[i] + 1} (quoted "
                   "delimiters are not supported)", location, positions[i])
    cells = np.array(feed.delimiter.join(body).split(feed.delimiter) if body else [],
                     dtype=object)
    grid = cells.reshape(len(body), len(header))
    table = pd.DataFrame({c: pd.Series(grid[:, header.index(c)], dtype=object).str.strip()
                          .str.strip('"') for c in wanted})
    return table, positions


def _table_json(feed: TelemetryFeed, data: bytes, location: str,
                ) -> tuple[pd.DataFrame, list[str]]:
    node: Any = load_json(data, source=f"{SOURCE}:{feed.name}", location=location)
    for depth, key in enumerate(feed.records_path):
        if not isinstance(node, dict) or key not in node:
            raise _err(feed, f"records path {list(feed.records_path[:depth + 1])} not found",
                       location, ".".join(feed.records_path[:depth + 1]))
        node = node[key]
    if not isinstance(node, list):
        raise _err(feed, "records path does not lead to an array", location,
                   ".".join(feed.records_path))
    wanted = [c for c in (feed.columns.station, feed.columns.time, feed.columns.value,
                          feed.columns.flag) if c is not None]
    out: dict[str, list[str]] = {c: [] for c in wanted}
    for i, rec in enumerate(node):
        if not isinstance(rec, dict) or any(c not in rec for c in wanted):
            raise _err(feed, f"record lacks one of {wanted}", location, f"records[{i}]")
        for c in wanted:
            item = rec[c]
            if isinstance(item, bool) or not isinstance(item, str | int | float | None):
                raise _err(feed, f"{c} {str(item)[:30]} is not a scalar", location,
                           f"records[{i}]")
            out[c].append("" if item is None else str(item))
    return pd.DataFrame(out, dtype=object), [f"records[{i}]" for i in range(len(node))]


_OFFSET_RE: Final = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _times(feed: TelemetryFeed, stamps: pd.Series, positions: list[str],
           location: str) -> pd.DatetimeIndex:
    """Feed time strings → UTC. Naive times are in ``feed.time_zone``; offsets win."""
    if feed.time_format is None:
        aware = stamps.str.strip().str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
    else:
        aware = np.full(len(stamps), "%z" in feed.time_format or "%Z" in feed.time_format)
    if len(aware) and aware.any() and not aware.all():
        i = int(np.flatnonzero(aware != aware[0])[0])
        raise _err(feed, "time column mixes times with and without UTC offset", location,
                   positions[i])
    # pandas turns "now"/"today"/... into a clock read whatever the format: refuse them first
    words = stamps.str.strip().str.lower().isin(["now", "today", "tomorrow", "yesterday"])
    is_aware = bool(len(aware) and aware[0])
    try:
        parsed = pd.to_datetime(stamps.where(~words), errors="coerce", utc=is_aware,
                                format=feed.time_format or "ISO8601")
    except (ValueError, TypeError) as exc:
        raise _err(feed, f"unparsable time column: {exc}", location) from exc
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(feed, f"time {str(stamps.iloc[i])[:30]!r} does not match "
                   f"{feed.time_format or 'ISO 8601'}", location, positions[i])
    times = pd.DatetimeIndex(parsed)
    if times.tz is None:
        try:
            times = times.tz_localize(ZoneInfo(feed.time_zone), ambiguous="raise",
                                      nonexistent="raise")
        except (ValueError, TypeError) as exc:   # DST gaps/overlaps in non-Japanese zones
            raise _err(feed, f"time not valid in {feed.time_zone}: {exc}", location) from exc
    return times.tz_convert("UTC")


def parse_telemetry(feed: TelemetryFeed, data: bytes, location: str, *,
                    now: datetime | None = None) -> pd.DataFrame:
    """Parse one feed payload into an observations frame.

    ``value`` is converted from ``feed.units`` to the canonical unit of ``feed.variable`` (m for
    ``level_m``, mm for ``rain_mm``, m³/s for flows); ``time`` is UTC; ``station_id`` is the
    catalogue code from ``feed.station_map``; missing markers give NaN with Flag.MISSING and
    ``qc_rule`` ``telemetry:missing``; mapped feed flags set ``qc_rule`` ``telemetry:flag=<x>``.
    """
    reader = _table_csv if feed.format == "csv" else _table_json
    table, positions = reader(feed, data, location)
    cols = feed.columns

    station_raw = table[cols.station]
    mapped = station_raw.map(feed.station_map)
    unmapped = mapped.isna().to_numpy()
    if unmapped.any() and feed.unmapped == "error":
        i = int(np.flatnonzero(unmapped)[0])
        raise _err(feed, f"station {station_raw.iloc[i]!r} is not in station_map", location,
                   positions[i])
    keep = ~unmapped
    table, mapped = table[keep].reset_index(drop=True), mapped[keep].reset_index(drop=True)
    positions = [p for p, k in zip(positions, keep, strict=True) if k]

    times = _times(feed, table[cols.time], positions, location)

    raw_value = table[cols.value]
    missing = raw_value.isin(feed.missing_values).to_numpy()
    numbers = pd.to_numeric(raw_value.where(~missing), errors="coerce").to_numpy(np.float64)
    bad = (~missing) & ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(feed, f"value {raw_value.iloc[i][:30]!r} is not a finite number", location,
                   positions[i])
    values = numbers * _FACTORS[feed.variable][feed.units]
    low, high = feed.bounds
    implausible = (~missing) & ((values < low) | (values > high))
    if implausible.any():
        i = int(np.flatnonzero(implausible)[0])
        raise _err(feed, f"{values[i]:g} outside plausible {low:g}…{high:g} for "
                   f"{feed.variable} after converting from {feed.units}: wrong units?",
                   location, positions[i])

    flags = np.full(len(table), int(Flag.GOOD), dtype=np.int8)
    rules = np.full(len(table), "", dtype=object)
    if cols.flag is not None:
        text = table[cols.flag]
        unknown = ~text.isin(list(feed.flag_map)).to_numpy()
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise _err(feed, f"flag {text.iloc[i][:20]!r} not in flag_map", location,
                       positions[i])
        flags = text.map(lambda t: int(Flag[feed.flag_map[t]])).to_numpy(np.int8)
        rules = np.where(flags != Flag.GOOD, "telemetry:flag=" + text.to_numpy(dtype=str), "")
    flags = np.where(missing, np.int8(Flag.MISSING), flags)
    rules = np.where(missing, "telemetry:missing", rules)
    values = np.where(missing | (flags == Flag.MISSING), np.nan, values)

    df = frames.observations(pd.DataFrame({
        "station_id": mapped.to_numpy(dtype=object), "variable": feed.variable, "time": times,
        "value": values, "flag": flags, "qc_rule": rules.astype(object),
        "provisional": feed.provisional,
    }))
    fut = first_future(df["time"], now, source=SOURCE)
    if fut is not None:
        raise _err(feed, f"time {df['time'].iloc[fut].isoformat()} is in the future", location,
                   positions[fut])
    key = ["station_id", "time"]
    exact = df.duplicated(keep="first")
    df = df[~exact.to_numpy()]
    positions = [p for p, e in zip(positions, exact.to_numpy(), strict=True) if not e]
    clash = df.duplicated(key).to_numpy()
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        raise _err(feed, "two different values for the same station and time", location,
                   positions[i])
    return df.sort_values(key, kind="stable").reset_index(drop=True)
