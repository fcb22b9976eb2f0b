"""Canonical column contracts for the long frames that flow between layers.

Every parser returns, and every consumer accepts, one of these shapes (mlforecast-style long
frames). Times are timezone-aware UTC ``datetime64[ns, UTC]``.

Observations (``OBS_COLUMNS``)
    station_id  str     station code as in the catalogue
    variable    str     one of ``VARIABLES`` (units in the name)
    time        UTC     observation time (for accumulations: end of the interval)
    value       float   NaN when missing
    flag        int     a ``Flag`` value
    qc_rule     str     name of the QC rule or source rule that set the flag ("" if none)
    provisional bool    True for 暫定 (provisional) values that a 確定 value may replace
    source      str     optional (``OPTIONAL_OBS_COLUMNS``): provenance of each row, e.g.
                        ``simulated`` or an ingest source name (canonical CSV ``source``
                        column); kept by ``observations`` when present, never added

Hourly and daily series never share a variable: a daily mean or total (MLIT 日…年表) has its
own variable (``DAILY_VARIABLES``), stamped at the end of its day, so it can neither overwrite
an hourly reading of the same station nor reach the hourly features.

Rain vintages (``RAIN_VINTAGE_COLUMNS``): catchment rainfall products, observed or forecast
    product     str     e.g. ``jma_srf_forecast``, ``jma_analysis``, ``simulated``
    catchment_id str    river id whose catchment the value averages
    issued_at   UTC     when the product was issued (analysis: its valid time)
    valid_at    UTC     end of the accumulation hour
    value       float   rain_mm over the hour ending at ``valid_at``

Forecasts (``FORECAST_COLUMNS``)
    river_id, issued_at, valid_at, horizon_h (int hours), level (point forecast, m),
    q10, q50, q90 (m), model_version (str)
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

import pandas as pd

from forecast.errors import FrameError


class Flag(IntEnum):
    """Quality flag of one value, in the Delft-FEWS vocabulary (lower is better)."""

    GOOD = 0          # original, passed every check
    FILLED = 1        # filled by interpolation across a short gap
    DOUBTFUL = 2      # failed a soft check (soft limit, suspicious rate); usable with care
    UNRELIABLE = 3    # failed a hard check; never used by features or models
    MISSING = 4       # no value (source flagged it missing, or a gap)
    BELOW_START = 5   # crisis gauge silent below its observation start level (left-censored)


LEVEL: Final = "level_m"
RAIN: Final = "rain_mm"            # mm over the interval ending at `time`
DISCHARGE: Final = "discharge_m3s"
RELEASE: Final = "release_m3s"     # dam release
INFLOW: Final = "inflow_m3s"
# Daily series (MLIT 日水位年表 / 日雨量年表 / 日流量年表), stamped at the end of their day
LEVEL_DAILY_MEAN: Final = "level_m_daily_mean"           # mean level (m) over the day
RAIN_DAILY: Final = "rain_mm_daily"                      # rain (mm) over the day ending at `time`
DISCHARGE_DAILY_MEAN: Final = "discharge_m3s_daily_mean"  # mean discharge (m3/s) over the day
DAILY_VARIABLES: Final = frozenset({LEVEL_DAILY_MEAN, RAIN_DAILY, DISCHARGE_DAILY_MEAN})
VARIABLES: Final = frozenset({LEVEL, RAIN, DISCHARGE, RELEASE, INFLOW, *DAILY_VARIABLES})

OBS_COLUMNS: Final = ("station_id", "variable", "time", "value", "flag", "qc_rule", "provisional")
SOURCE: Final = "source"
OPTIONAL_OBS_COLUMNS: Final = (SOURCE,)
"""Columns ``observations`` keeps (after ``OBS_COLUMNS``) when present; other extras are dropped."""
RAIN_VINTAGE_COLUMNS: Final = ("product", "catchment_id", "issued_at", "valid_at", "value")
FORECAST_COLUMNS: Final = (
    "river_id", "issued_at", "valid_at", "horizon_h", "level", "q10", "q50", "q90",
    "model_version",
)


def _check_columns(df: pd.DataFrame, required: tuple[str, ...], what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise FrameError(f"{what} frame lacks columns {missing}; has {list(df.columns)}")


def _check_utc(df: pd.DataFrame, column: str, what: str) -> None:
    dtype = df[column].dtype
    tz = getattr(dtype, "tz", None)
    if tz is None or str(tz) != "UTC":
        raise FrameError(f"{what} column {column!r} must be tz-aware UTC, got {dtype}")


def empty_observations() -> pd.DataFrame:
    """An observations frame with no rows and the canonical dtypes."""
    return pd.DataFrame(
        {
            "station_id": pd.Series([], dtype=object),
            "variable": pd.Series([], dtype=object),
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "value": pd.Series([], dtype="float64"),
            "flag": pd.Series([], dtype="int8"),
            "qc_rule": pd.Series([], dtype=object),
            "provisional": pd.Series([], dtype=bool),
        }
    )


def observations(df: pd.DataFrame) -> pd.DataFrame:
    """Validate and normalise an observations frame (adds default flag/qc_rule/provisional).

    Returns ``OBS_COLUMNS`` plus, when the input has it, the optional ``source`` column (str;
    every row needs one); any other extra column is dropped. Raises ``FrameError`` when a
    required column is missing, times are not UTC, a variable is unknown, a flag is out of
    range or a ``source`` value is missing.
    """
    _check_columns(df, ("station_id", "variable", "time", "value"), "observations")
    out = df.copy(deep=False)  # columns are replaced, never modified in place
    if "flag" not in out.columns:
        out["flag"] = int(Flag.GOOD)
    if "qc_rule" not in out.columns:
        out["qc_rule"] = ""
    if "provisional" not in out.columns:
        out["provisional"] = False
    _check_utc(out, "time", "observations")
    unknown = set(out["variable"].unique()) - VARIABLES
    if unknown:
        raise FrameError(f"observations frame has unknown variables {sorted(unknown)}")
    if out["value"].dtype != "float64":
        out["value"] = pd.to_numeric(out["value"], errors="raise").astype("float64")
    if len(out) and (out["flag"].min() < 0 or out["flag"].max() > max(Flag)):
        raise FrameError("observations frame has flags outside forecast.frames.Flag")
    if out["flag"].dtype != "int8":
        out["flag"] = out["flag"].astype("int8")
    # Casts are skipped when the dtype is already right: frames of millions of rows pass here.
    for col in ("station_id", "variable", "qc_rule"):
        if out[col].dtype != object:
            out[col] = out[col].astype(str).astype(object)
    if out["qc_rule"].isna().any():
        out["qc_rule"] = out["qc_rule"].fillna("")
    if out["provisional"].dtype != bool:
        out["provisional"] = out["provisional"].astype(bool)
    columns = [*OBS_COLUMNS, *(c for c in OPTIONAL_OBS_COLUMNS if c in out.columns)]
    if SOURCE in out.columns:
        if out[SOURCE].isna().any():
            raise FrameError("observations frame has rows without a source")
        if out[SOURCE].dtype != object:
            out[SOURCE] = out[SOURCE].astype(str).astype(object)
    result = pd.DataFrame({c: out[c] for c in columns}, copy=False)
    if not isinstance(result.index, pd.RangeIndex) or result.index.start != 0:
        result = result.reset_index(drop=True)
    return result


def rain_vintages(df: pd.DataFrame) -> pd.DataFrame:
    """Validate a rain-vintage frame (see module docstring)."""
    _check_columns(df, RAIN_VINTAGE_COLUMNS, "rain vintage")
    _check_utc(df, "issued_at", "rain vintage")
    _check_utc(df, "valid_at", "rain vintage")
    out = df.loc[:, list(RAIN_VINTAGE_COLUMNS)].copy()
    out["value"] = out["value"].astype("float64")
    return out.reset_index(drop=True)


def forecasts(df: pd.DataFrame) -> pd.DataFrame:
    """Validate a forecast frame (see module docstring)."""
    _check_columns(df, FORECAST_COLUMNS, "forecast")
    _check_utc(df, "issued_at", "forecast")
    _check_utc(df, "valid_at", "forecast")
    out = df.loc[:, list(FORECAST_COLUMNS)].copy()
    out["horizon_h"] = out["horizon_h"].astype("int64")
    for c in ("level", "q10", "q50", "q90"):
        out[c] = out[c].astype("float64")
    return out.reset_index(drop=True)
