"""Crisis-management gauges (危機管理型水位計): k.river.go.jp ``area_info`` JSON, and censoring.

Payload (DOMAIN.md §3, undocumented and liable to change): an object with an ``obss`` array of
records such as ``{"code": "1000000107", "name": "…", "obsTime": "2025-09-12T20:50:00+09:00",
"level": 166.21, "startLevel": 164.71, "warnLevel": 165.32, "fladLevel": 166.25, …}``.

Error policy — one bad record never loses the rest: a payload that is not JSON or has no
``obss`` array raises ``ParseError``; a bad *record* (missing key, null or non-finite level, a
time without offset or in the future, a conflicting duplicate) becomes a ``ParseError`` with
``position="obss[i]"`` in ``CrisisPayload.errors`` and the other records still parse. The caller
decides whether errors are fatal (``strict=True`` raises the first one).

Each reading keeps its own ``obsTime``: these gauges report late and the "current" file can hold
a reading hours old; the fetch time is never substituted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import ParseError
from forecast.frames import Flag
from forecast.ingest._payload import as_utc, finite_number, load_json

SOURCE: Final = "crisis_gauge"
REQUIRED_KEYS: Final = ("code", "obsTime", "level", "startLevel", "warnLevel", "fladLevel")
LEVEL_COLUMNS: Final = ("station_id", "name", "start_level_m", "warn_level_m",
                        "overflow_level_m", "lat", "lon")
MAX_SILENCE: Final = pd.Timedelta(hours=36)
"""Longest silence below the start level still read as low water (gauges report ~daily)."""
_THRESHOLD_KEYS: Final = {"startLevel": "start_level_m", "warnLevel": "warn_level_m",
                          "fladLevel": "overflow_level_m"}


@dataclass(frozen=True)
class CrisisPayload:
    """Result of ``parse_crisis_json``.

    ``readings``: observations frame (``level_m`` in m, ``time`` = each reading's own obsTime in
    UTC, provisional True: real-time values are unverified).
    ``levels``: one row per station, columns ``LEVEL_COLUMNS`` (m; NaN when the feed gives null).
    ``errors``: one ``ParseError`` per rejected record, ``position`` ``obss[i]``.
    """

    readings: pd.DataFrame
    levels: pd.DataFrame
    errors: list[ParseError] = field(default_factory=list)


def _record(rec: Any, i: int, location: str, now: pd.Timestamp | None,
            ) -> tuple[dict[str, Any] | None, ParseError | None]:
    def bad(msg: str) -> tuple[None, ParseError]:
        return None, ParseError(msg, source=SOURCE, location=location, position=f"obss[{i}]")

    if not isinstance(rec, dict):
        return bad(f"record is {type(rec).__name__}, not an object")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        return bad(f"record lacks keys {missing}")
    code = rec["code"]
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if not isinstance(code, str) or not code.strip():
        return bad(f"code {code!r} is not a non-empty string")
    level = finite_number(rec["level"])
    if level is None:
        return bad(f"level {rec['level']!r} is null or not a finite number")
    thresholds: dict[str, float] = {}
    for key, column in _THRESHOLD_KEYS.items():
        # thresholds may legitimately be null (not set for this gauge): NaN, not an error
        value = rec[key]
        number = finite_number(value)
        if value is not None and number is None:
            return bad(f"{key} {value!r} is not a finite number or null")
        thresholds[column] = np.nan if number is None else number
    stamp = rec["obsTime"]
    if not isinstance(stamp, str):
        return bad(f"obsTime {stamp!r} is not a string")
    try:
        # fromisoformat, not pd.Timestamp: the latter also accepts "now"/"today" (a clock read)
        ts = pd.Timestamp(datetime.fromisoformat(stamp))
    except (ValueError, TypeError, OverflowError) as exc:
        return bad(f"obsTime {stamp!r} is not an ISO 8601 time: {exc}")
    if ts.tzinfo is None:
        return bad(f"obsTime {stamp!r} has no UTC offset (ambiguous)")
    ts = ts.tz_convert("UTC")
    if now is not None and ts > now + pd.Timedelta(minutes=10):
        return bad(f"obsTime {stamp} is in the future (now {now.isoformat()})")
    name = rec.get("name")
    row = {"station_id": code.strip(), "time": ts, "value": level,
           "name": name if isinstance(name, str) else "",
           "lat": finite_number(rec.get("lat")), "lon": finite_number(rec.get("lon")),
           **thresholds}
    return row, None


def parse_crisis_json(data: bytes, location: str, *, now: datetime | None = None,
                      strict: bool = False) -> CrisisPayload:
    """Parse an area_info JSON payload into readings, per-station levels and record errors.

    ``now`` (tz-aware) rejects readings later than now + 10 min. Duplicate records for the same
    station and time with the same level are merged; a different level is an error on the later
    record. With ``strict=True`` the first record error is raised instead of collected.
    """
    doc = load_json(data, source=SOURCE, location=location)
    if not isinstance(doc, dict) or not isinstance(doc.get("obss"), list):
        raise ParseError("expected an object with an 'obss' array", source=SOURCE,
                         location=location)
    now_utc = as_utc(now, source=SOURCE) if now is not None else None
    rows: list[dict[str, Any]] = []
    errors: list[ParseError] = []
    seen: dict[tuple[str, pd.Timestamp], float] = {}
    for i, rec in enumerate(doc["obss"]):     # JSON records are Python objects already
        row, error = _record(rec, i, location, now_utc)
        if row is not None:
            key = (row["station_id"], row["time"])
            previous = seen.get(key)
            if previous is None:
                seen[key] = row["value"]
                rows.append(row)
            elif previous != row["value"]:
                error = ParseError(
                    f"station {key[0]} at {key[1].isoformat()} has two different levels "
                    f"({previous} and {row['value']})", source=SOURCE, location=location,
                    position=f"obss[{i}]")
        if error is not None:
            if strict:
                raise error
            errors.append(error)
    return CrisisPayload(_readings(rows), _levels(rows), errors)


def _readings(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return frames.empty_observations()
    df = pd.DataFrame({
        "station_id": [r["station_id"] for r in rows],
        "variable": frames.LEVEL,
        "time": pd.DatetimeIndex([r["time"] for r in rows]).tz_convert("UTC"),
        "value": np.array([r["value"] for r in rows], dtype=np.float64),
        "flag": int(Flag.GOOD), "qc_rule": "", "provisional": True,
    })
    return frames.observations(df).sort_values(["station_id", "time"]).reset_index(drop=True)


def _levels(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=object if c in ("station_id", "name")
                                          else "float64") for c in LEVEL_COLUMNS})
    df = pd.DataFrame(rows).sort_values("time")
    # the latest record's thresholds win (they change only when a gauge is re-surveyed)
    df = df.drop_duplicates("station_id", keep="last").sort_values("station_id")
    out = df.loc[:, list(LEVEL_COLUMNS)].astype({c: "float64" for c in LEVEL_COLUMNS[2:]})
    return out.reset_index(drop=True)


def censor_below_start(readings: pd.DataFrame, start_level_m: float, grid: pd.DatetimeIndex,
                       *, station_id: str | None = None,
                       max_silence: pd.Timedelta | None = MAX_SILENCE,
                       ) -> pd.DataFrame:
    """Put one crisis gauge's readings on a time grid, left-censoring silent low-water times.

    ``readings``: observations frame (``level_m``, m) for one station (or pass ``station_id``
    to select it). ``grid``: tz-aware times (e.g. every 10 min). A grid time with a reading at
    exactly that time gets it. A grid time without one gets ``value`` NaN and

    * ``Flag.BELOW_START`` (``qc_rule`` ``crisis:below_start``) when the last reading at or
      before it was below ``start_level_m`` (m) and is at most ``max_silence`` old — the gauge
      reports about once a day below its start level, so silence there means low water;
    * ``Flag.MISSING`` (``crisis:gap``) otherwise: no earlier reading, last reading at or above
      the start level (it should be reporting every 10 min), or silent for too long.

    Returns an observations frame with one row per grid time.
    """
    if grid.tz is None:
        raise ParseError("grid must be timezone-aware", source=SOURCE)
    obs = frames.observations(readings)
    if station_id is not None:
        obs = obs[obs["station_id"] == station_id]
    ids = obs["station_id"].unique()
    if len(ids) > 1:
        raise ParseError(f"readings hold several stations {sorted(ids)[:5]}; pass station_id",
                         source=SOURCE)
    sid = station_id if station_id is not None else (str(ids[0]) if len(ids) else "")
    obs = obs[obs["flag"] == Flag.GOOD].sort_values("time").drop_duplicates("time", keep="last")
    left = pd.DataFrame({"time": grid.tz_convert("UTC").sort_values().unique()})
    right = obs.loc[:, ["time", "value"]].rename(columns={"time": "last_time",
                                                          "value": "last_value"})
    merged = pd.merge_asof(left, right, left_on="time", right_on="last_time",
                           direction="backward")
    exact = (merged["last_time"] == merged["time"]).to_numpy()
    age = merged["time"] - merged["last_time"]
    fresh = age.notna() & (True if max_silence is None else age <= max_silence)
    below = (merged["last_value"] < start_level_m).to_numpy() & fresh.to_numpy() & ~exact
    flag = np.where(exact, int(Flag.GOOD),
                    np.where(below, int(Flag.BELOW_START), int(Flag.MISSING)))
    rule = np.where(exact, "", np.where(below, "crisis:below_start", "crisis:gap"))
    return frames.observations(pd.DataFrame({
        "station_id": sid, "variable": frames.LEVEL, "time": merged["time"],
        "value": np.where(exact, merged["last_value"].to_numpy(), np.nan),
        "flag": flag, "qc_rule": rule.astype(object), "provisional": exact,
    }))
