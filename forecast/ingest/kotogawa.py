"""The 厚東川 (Kōtō River) telemetry CSV scraped from 山口県土木防災情報システム.

The real data set of ``tests/data/kotogawa`` (provenance in its README): one row per 10 min,
``時刻`` ``YYYY/MM/DD HH:MM`` in JST, the river stage at 持世寺 (``水位_水位``, m) and the
厚東川ダム logger (``ダム_60分雨量`` trailing 60-min rain in mm, ``ダム_全放流量`` total
release in m³/s, ``ダム_貯水位`` reservoir level in m, …); UTF-8 with a byte-order mark.

The file writes **missing values as 0**: a stage of 0 is missing, and a dam logger outage
writes 0 in every dam column (recognised by ``ダム_貯水位`` = 0, a reservoir that cannot be
empty). Missing readings keep their row with value NaN, flag MISSING and the source rule
``kotogawa:0``. The dam rain is a trailing 60-minute total reported every 10 minutes: only the
whole-hour rows are kept, as the hourly accumulation ending at that hour (a true 0 there is
no rain). Stations (as in ``config/reference_rivers.yaml``): ``jiseiji`` (``level_m``),
``kotogawa_dam_release`` (``release_m3s``), ``kotogawa_dam_rain`` (``rain_mm``).

Error policy: strict. A missing column, a bad time or a non-numeric cell is a ``ParseError``
naming the row (the file is produced by a scraper; a bad row means the scraper changed).
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import ParseError
from forecast.frames import Flag
from forecast.ingest._payload import decode_text

SOURCE: Final = "kotogawa_csv"
TIME: Final = "時刻"
STAGE: Final = "水位_水位"
RAIN_60MIN: Final = "ダム_60分雨量"
RELEASE: Final = "ダム_全放流量"
RESERVOIR: Final = "ダム_貯水位"
STATIONS: Final = {"level": "jiseiji", "release": "kotogawa_dam_release",
                   "rain": "kotogawa_dam_rain"}
MISSING_RULE: Final = "kotogawa:0"
"""Source rule of a reading the file wrote as 0 (missing)."""


def _numbers(df: pd.DataFrame, column: str, location: str) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.to_numpy(dtype="float64"))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ParseError(f"{column} {str(df[column].iloc[i])[:30]!r} is not a number",
                         source=SOURCE, location=location, position=f"row {i + 2}")
    return values.to_numpy(dtype="float64")


def _series(station: str, variable: str, times: pd.Series, values: np.ndarray,
            missing: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "station_id": station, "variable": variable, "time": pd.DatetimeIndex(times),
        "value": np.where(missing, np.nan, values),
        "flag": np.where(missing, int(Flag.MISSING), int(Flag.GOOD)).astype(np.int8),
        "qc_rule": np.where(missing, MISSING_RULE, ""), "provisional": False,
    })


def parse_kotogawa_csv(data: bytes, location: str) -> pd.DataFrame:
    """Parse the 厚東川 CSV into canonical observations (``forecast.frames``; ``time`` UTC).

    Returns the stage at ``jiseiji`` (``level_m``, m) and the dam release
    (``release_m3s``, m³/s) at every row, and the dam rain (``rain_mm``, mm over the hour
    ending at ``time``) at whole hours; zeros written for missing readings are MISSING (module
    docstring). Sorted by station, variable and time; a repeated time is a ``ParseError``.
    """
    text, _ = decode_text(data, source=SOURCE, location=location)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ParseError(f"not a CSV: {exc}", source=SOURCE, location=location) from exc
    lacking = [c for c in (TIME, STAGE, RAIN_60MIN, RELEASE, RESERVOIR) if c not in df.columns]
    if lacking:
        raise ParseError(f"lacks columns {lacking}; has {list(df.columns)[:12]}",
                         source=SOURCE, location=location, position="header")
    shaped = df[TIME].str.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}")
    jst = pd.to_datetime(df[TIME].where(shaped), format="%Y/%m/%d %H:%M", errors="coerce")
    if jst.isna().any():
        i = int(np.flatnonzero(jst.isna().to_numpy())[0])
        raise ParseError(f"{TIME} {df[TIME].iloc[i]!r} is not YYYY/MM/DD HH:MM (JST)",
                         source=SOURCE, location=location, position=f"row {i + 2}")
    dup = jst.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ParseError(f"{TIME} {df[TIME].iloc[i]} appears twice", source=SOURCE,
                         location=location, position=f"row {i + 2}")
    times = jst.dt.tz_localize("Asia/Tokyo").dt.tz_convert("UTC")
    stage, rain, release, reservoir = (_numbers(df, c, location)
                                       for c in (STAGE, RAIN_60MIN, RELEASE, RESERVOIR))
    dam_out = reservoir == 0.0
    hour = (times.dt.minute == 0).to_numpy()
    parts = [
        _series(STATIONS["level"], frames.LEVEL, times, stage, stage == 0.0),
        _series(STATIONS["release"], frames.RELEASE, times, release, dam_out | (release == 0.0)),
        _series(STATIONS["rain"], frames.RAIN, times[hour], rain[hour], dam_out[hour]),
    ]
    out = frames.observations(pd.concat(parts, ignore_index=True))
    return out.sort_values(["station_id", "variable", "time"], kind="stable",
                           ignore_index=True)
