"""Crisis-management gauges (危機管理型水位計): left-censoring at the observation start level and
the silence rule (explained low water vs. an unexplained silence), with the operators' reason.
Rules in the package docstring (``forecast.features``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from forecast.catalogue import River
from forecast.features.columns import (
    CENSORED,
    CRISIS_MAX_SILENCE,
    CRISIS_NEAR_START_M,
    CRISIS_RAIN_KNOWN,
    CRISIS_RISE_M,
    CRISIS_SILENCE_RAIN_MM,
    CRISIS_TREND_WINDOW,
    FRESH,
    JST_OFFSET_H,
    LAST_M,
    LAST_RISE_M,
    SILENT_H,
    UNEXPLAINED,
    UP_PREFIX,
    USABLE_FLAGS,
    censored_column,
    extra_columns,
)
from forecast.frames import LEVEL, RAIN, Flag


def _trend_into(t: np.ndarray, value: np.ndarray, usable: np.ndarray,
                window: pd.Timedelta = CRISIS_TREND_WINDOW) -> np.ndarray:
    """Per row: its reading minus the mean of the usable readings in [t - window, t) (m).

    NaN for rows that are not usable readings or have no usable reading in that window.
    """
    out = np.full(len(t), np.nan)
    u = np.flatnonzero(usable)
    if not len(u):
        return out
    tu, vu = t[u], value[u]
    cs = np.concatenate([[0.0], np.cumsum(vu)])
    hi = np.arange(len(u))                                  # readings strictly before this one
    lo = tu.searchsorted(tu - window.value, side="left")
    n = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (cs[hi] - cs[lo]) / n
    out[u] = np.where(n > 0, vu - mean, np.nan)
    return out


def crisis_level_to_hourly(rows: pd.DataFrame, start_level_m: float,
                           index: pd.DatetimeIndex,
                           max_silence: pd.Timedelta = CRISIS_MAX_SILENCE,
                           near_start_m: float = CRISIS_NEAR_START_M) -> pd.DataFrame:
    """One crisis gauge's rows (``time, value, flag``; any flag) -> hourly level and censoring.

    Returns columns on ``index``: ``level`` (m; ``start_level_m`` where censored, NaN for gaps),
    ``censored`` (0/1), and for the hours censored by *silence* (no fresh evidence) what is
    known about it: ``silent_h`` (hours since the last evidence), ``last_m`` (that evidence's
    reading, m; NaN for a ``BELOW_START`` row) and ``last_rise_m`` (that reading minus the mean
    of the usable readings in the ``CRISIS_TREND_WINDOW`` before it, or minus ``start_level_m``
    when there is none, m; NaN for a ``BELOW_START`` row); all three NaN on other hours. The
    rules are in the module docstring. Looks only back: the values at T depend on rows with
    time <= T.
    """
    t = pd.DatetimeIndex(rows["time"]).asi8
    if len(t) > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        rows, t = rows.iloc[order], t[order]
    value = rows["value"].to_numpy(dtype="float64")
    flag = rows["flag"].to_numpy()
    usable = np.isin(flag, list(USABLE_FLAGS)) & np.isfinite(value)
    with np.errstate(invalid="ignore"):
        below = (flag == int(Flag.BELOW_START)) | (usable & (value < start_level_m))
    evidence = np.flatnonzero(usable | below)
    at = index.asi8
    level = np.full(len(at), np.nan)
    censored = np.zeros(len(at), dtype=bool)
    silent = np.zeros(len(at), dtype=bool)
    lastc = np.zeros(len(at), dtype=np.intp)
    if len(evidence):
        # freshest reading or BELOW_START row in (T - 30 min, T]
        te = t[evidence]
        pos = te.searchsorted(at, side="right") - 1
        row = evidence[np.clip(pos, 0, None)]
        fresh = (pos >= 0) & (at - te[np.clip(pos, 0, None)] < FRESH.value)
        censored = fresh & below[row]
        level = np.where(fresh & ~censored, value[row], np.nan)
        # no fresh evidence: silent since a below-start (or near-start) word <= max_silence old
        with np.errstate(invalid="ignore"):
            quiet = below | (usable & (value < start_level_m + near_start_m))
        last = t.searchsorted(at, side="right") - 1
        lastc = np.clip(last, 0, None)
        silent = (~fresh & (last >= 0) & quiet[lastc]
                  & (at - t[lastc] <= max_silence.value))
        censored |= silent
        level = np.where(censored, start_level_m, level)
    nan = np.full(len(at), np.nan)
    if silent.any():
        hours = np.where(silent, (at - t[lastc]) / pd.Timedelta(hours=1).value, np.nan)
        last_m = np.where(silent & usable[lastc], value[lastc], np.nan)
        trend = _trend_into(t, value, usable)
        # no reading in the hour before: the gauge was quiet, so the level came up from below
        # the start level (a lower bound of the rise; negative for a below-start heartbeat)
        trend = np.where(usable & np.isnan(trend), value - start_level_m, trend)
        rise = np.where(silent, trend[lastc], np.nan)
    else:
        hours, last_m, rise = nan, nan, nan
    return pd.DataFrame({"level": level, "censored": censored.astype("float64"),
                         "silent_h": hours, "last_m": last_m, "last_rise_m": rise}, index=index)


class _Silence(NamedTuple):
    """Per hour of a river frame: the silence rule's parts (module docstring)."""

    silent: np.ndarray        # censored by silence (no fresh evidence)
    rising: np.ndarray        # ... and the level was rising into it
    hours: np.ndarray         # int: hours of the frame in (last evidence, T]
    rain_mm: np.ndarray       # catchment rain over those hours (mm, known hours only)
    rain_known: np.ndarray    # share of those hours with known catchment rain (0-1)
    rain_now: np.ndarray      # catchment rain is known for the hour ending at T itself
    up_silent: np.ndarray     # some upstream input of the frame has no value at T
    unexplained: np.ndarray   # the silence is not explained: not read as low water


def _silence_checks(hourly: pd.DataFrame, start_level_m: float | None) -> _Silence:
    """Classify the silent censored hours of a river frame (vectorised; looks back only)."""
    n = len(hourly)
    if SILENT_H in hourly.columns and start_level_m is not None:
        silent_h = hourly[SILENT_H].to_numpy(dtype="float64")
    else:
        silent_h = np.full(n, np.nan)
    silent = np.isfinite(silent_h) & (censored_column(hourly, CENSORED).to_numpy() > 0)
    rise = _column(hourly, LAST_RISE_M)
    with np.errstate(invalid="ignore"):
        rising = silent & (rise > CRISIS_RISE_M + 1e-9)    # readings are to the centimetre
    # hours h of the frame with last evidence < h <= T (T itself always counts)
    secs = np.round(np.where(silent, silent_h, 0.0) * 3600.0).astype(np.int64)
    hours = np.where(silent, np.maximum((secs + 3599) // 3600, 1), 0)
    rain = hourly[RAIN].to_numpy(dtype="float64")
    known = np.isfinite(rain)
    cs_rain = np.concatenate([[0.0], np.cumsum(np.where(known, rain, 0.0))])
    cs_known = np.concatenate([[0], np.cumsum(known)])
    end = np.arange(1, n + 1)
    begin = np.clip(end - hours, 0, None)       # hours before the frame start count as unknown
    rain_mm = cs_rain[end] - cs_rain[begin]
    with np.errstate(invalid="ignore", divide="ignore"):
        rain_known = np.where(hours > 0, (cs_known[end] - cs_known[begin]) / hours, 1.0)
    extras = extra_columns(hourly)
    up_silent = np.asarray(hourly[extras].isna().to_numpy().any(axis=1) if extras
                           else np.zeros(n, dtype=bool), dtype=bool)
    unexplained = silent & (rising | (rain_known < CRISIS_RAIN_KNOWN) | ~known
                            | (rain_mm >= CRISIS_SILENCE_RAIN_MM) | up_silent)
    return _Silence(silent, rising, hours, rain_mm, rain_known, known, up_silent, unexplained)


def _column(hourly: pd.DataFrame, column: str) -> np.ndarray:
    if column in hourly.columns:
        return hourly[column].to_numpy(dtype="float64")
    return np.full(len(hourly), np.nan)


def _hours_text(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.0f} h"


_NO_SHIFT = pd.Timedelta(0)


def _flag_at(hourly: pd.DataFrame, column: str, i: int) -> bool:
    """``censored_column(hourly, column).iloc[i] > 0`` without building the whole column."""
    if column not in hourly.columns:
        return False
    return bool(hourly[column].to_numpy(dtype="float64")[i] > 0)   # NaN counts as 0


def _plain_reading(hourly: pd.DataFrame, i: object) -> bool:
    """Row ``i`` holds a usable level that is neither censored nor marked unexplained: what
    ``silence_reason`` answers None for at once."""
    if not isinstance(i, (int, np.integer)):
        return False
    level = float(hourly[LEVEL].to_numpy(dtype="float64")[int(i)])
    return bool(np.isfinite(level)) and not _flag_at(hourly, CENSORED, int(i)) \
        and not _flag_at(hourly, UNEXPLAINED, int(i))


SILENCE_NOT_LOW_WATER = "not read as low water"
"""The words every ``silence_reason`` line carries (the notification stage looks for them)."""


def silence_reason(hourly: pd.DataFrame, river: River, at: pd.Timestamp, *,
                   shift: pd.Timedelta = _NO_SHIFT) -> str | None:
    """Why the primary level of the river frame at ``at`` is not known, for operators.

    None when it is a reading, or an hour censored at the start level that the silence rule
    explains as low water (module docstring). Otherwise one line naming the gauge, how long it
    has been silent since which evidence, and every reason the silence is not read as low water
    (rising into it, rain since, the rain gauges or upstream gauges silent too), or that the
    level is a gap. Pure: reads only rows <= ``at`` of the frame, which ``river_hourly`` built.
    """
    ts = pd.Timestamp(at)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    gauge = river.gauge
    kind = "crisis gauge" if gauge.kind == "crisis" else "gauge"
    who = f"{kind} {gauge.name_ja} ({gauge.code}, {river.name_ja})"
    # ``shift``: the frame's times run this much behind the clock (the cycle's half-hour issue
    # times); the times in the message are the real ones
    when = (ts + shift + pd.Timedelta(hours=JST_OFFSET_H)).strftime("%Y-%m-%d %H:%M JST")
    if ts not in hourly.index:
        return f"{who}: the river frame has no row for {when}"
    if hourly.index.is_unique and _plain_reading(hourly, hourly.index.get_loc(ts)):
        return None
    frame = hourly.loc[:ts]
    i = len(frame) - 1
    if not np.isfinite(float(frame[LEVEL].iloc[i])):
        return f"{who}: no usable level at {when} (a gap, {SILENCE_NOT_LOW_WATER})"
    start = gauge.start_level_m if gauge.kind == "crisis" else None
    censored = float(censored_column(frame, CENSORED).iloc[i]) > 0
    marked = float(censored_column(frame, UNEXPLAINED).iloc[i]) > 0
    if not censored and not marked:   # a reading: only a censored hour can be unexplained
        return None
    if censored and (start is None or SILENT_H not in frame.columns):
        return (f"{who}: level censored at {when} but the river frame has no silence columns "
                f"(not built by river_hourly), so it is {SILENCE_NOT_LOW_WATER}")
    got = _silence_checks(frame, start)
    if not (got.unexplained[i] or marked):
        return None
    hours = float(frame[SILENT_H].iloc[i])
    since = ts - pd.Timedelta(seconds=round(hours * 3600))
    since_jst = (since + shift + pd.Timedelta(hours=JST_OFFSET_H)).strftime(
        "%Y-%m-%d %H:%M JST")
    last = float(frame[LAST_M].iloc[i])
    what = f"{last:.2f} m" if np.isfinite(last) else "a below-start report"
    why: list[str] = []
    if got.rising[i]:
        why.append(f"after rising {float(frame[LAST_RISE_M].iloc[i]):+.2f} m over the hour "
                   "before")
    if got.rain_known[i] < CRISIS_RAIN_KNOWN or not got.rain_now[i]:
        unknown = round(float(got.hours[i]) * (1.0 - float(got.rain_known[i])))
        why.append(f"and the river's rain gauges are silent too (catchment rain unknown for "
                   f"{unknown} of {got.hours[i]} h, the latest hour included"
                   if not got.rain_now[i] else
                   f"and the river's rain gauges are silent too (catchment rain unknown for "
                   f"{unknown} of {got.hours[i]} h")
        why[-1] += "; data outage?)"
    if got.rain_mm[i] >= CRISIS_SILENCE_RAIN_MM:
        why.append(f"while {got.rain_mm[i]:.0f} mm of rain fell over the catchment")
    if got.up_silent[i]:
        dead = [c.removeprefix(UP_PREFIX) for c in extra_columns(frame)
                if not np.isfinite(float(frame[c].iloc[i]))]
        why.append(f"and upstream {', '.join(dead)} silent too (data outage?)")
    return (f"{who} silent {_hours_text(hours)} since {what} at {since_jst} "
            + "; ".join(why) + f"; {SILENCE_NOT_LOW_WATER} (level held at the start level "
            f"{start:.2f} m is a guess)")
