"""The hourly river frame: sub-hourly readings resampled, catchment rain, upstream inputs,
crisis censoring and silence columns (rules in the package docstring, ``forecast.features``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecast.catalogue import Gauge, River
from forecast.errors import FrameError
from forecast.features.columns import (
    CENSORED,
    CENSORED_SUFFIX,
    FRESH,
    LAST_M,
    LAST_RISE_M,
    MIN_RAIN_WEIGHT,
    SILENCE_COLUMNS,
    SILENT_H,
    UNEXPLAINED,
    UP_PREFIX,
    USABLE_FLAGS,
)
from forecast.features.crisis import _silence_checks, crisis_level_to_hourly
from forecast.frames import DAILY_VARIABLES, LEVEL, RAIN


def _hourly_index(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    return pd.date_range(start.floor("h"), end.ceil("h"), freq="h", tz="UTC", name="time")


def _step(times: pd.DatetimeIndex) -> pd.Timedelta:
    if len(times) < 2:
        return pd.Timedelta(hours=1)
    return pd.Timedelta(np.median(np.diff(times.asi8)), unit="ns")


def level_to_hourly(series: pd.Series, index: pd.DatetimeIndex | None = None) -> pd.Series:
    """Instantaneous values (level m, release m3/s) at any step -> hourly.

    ``series`` is indexed by UTC time with NaN for unusable readings. The hourly value at T is
    the last non-NaN reading in (T-30 min, T]; NaN when there is none. Returns a Series on
    ``index`` (default: the whole hours spanned by the input).
    """
    s = series.dropna().sort_index()
    s_idx = pd.DatetimeIndex(s.index)
    if index is None:
        if series.empty:
            return pd.Series(dtype="float64")
        index = _hourly_index(series.index.min(), series.index.max())
    if s.empty:
        return pd.Series(np.nan, index=index, dtype="float64")
    pos = s_idx.searchsorted(index, side="right") - 1
    ok = pos >= 0
    vals = np.full(len(index), np.nan)
    taken = s_idx.asi8[np.clip(pos, 0, None)]
    fresh = ok & (index.asi8 - taken < FRESH.value)
    vals[fresh] = s.to_numpy(dtype="float64")[pos[fresh]]
    return pd.Series(vals, index=index, dtype="float64")


def rain_to_hourly(series: pd.Series, index: pd.DatetimeIndex | None = None) -> pd.Series:
    """Rain accumulations (mm over the interval ending at each time) -> mm per hour ending at T.

    The input step is the median spacing of the series (e.g. 10 or 15 min, or 1 h). The hourly
    value is the sum over (T-1 h, T]; NaN unless all 60/step readings are present and usable.
    """
    if index is None:
        if series.empty:
            return pd.Series(dtype="float64")
        index = _hourly_index(series.index.min(), series.index.max())
    step = _step(pd.DatetimeIndex(series.index))
    per_hour = max(1, round(pd.Timedelta(hours=1) / step))
    # Label each reading by the whole hour whose interval (T-1h, T] contains it.
    label = pd.DatetimeIndex(series.index).ceil("h")
    grouped = series.groupby(label)
    sums = grouped.sum(min_count=1)
    counts = grouped.count()
    sums[counts < per_hour] = np.nan
    return sums.reindex(index).astype("float64")


def _selection(obs: pd.DataFrame, code: str, variable: str | None) -> np.ndarray:
    """Boolean mask of one station's rows of ``variable``; ``None``: any variable except the
    daily ones (``frames.DAILY_VARIABLES``), which never reach the hourly river frame."""
    sel = (obs["station_id"] == code).to_numpy(dtype=bool, copy=True)
    if variable is not None:
        return sel & (obs["variable"] == variable).to_numpy()
    rows = np.flatnonzero(sel)          # only this station's variables are looked at
    daily = pd.Series(obs["variable"].to_numpy()[rows]).isin(list(DAILY_VARIABLES)).to_numpy()
    sel[rows[daily]] = False
    return sel


def _station_series(obs: pd.DataFrame, code: str, variable: str | None) -> pd.Series:
    sel = _selection(obs, code, variable)
    rows = obs.loc[sel]
    vals = rows["value"].where(rows["flag"].isin(list(USABLE_FLAGS)))
    s = pd.Series(vals.to_numpy(dtype="float64"), index=pd.DatetimeIndex(rows["time"]))
    return s[~s.index.duplicated(keep="last")].sort_index()


def _station_rows(obs: pd.DataFrame, code: str, variable: str | None) -> pd.DataFrame:
    """``time, value, flag`` rows of one station (any flag), time-sorted, last duplicate kept."""
    sel = _selection(obs, code, variable)
    rows = obs.loc[sel, ["time", "value", "flag"]]
    rows = rows.assign(time=pd.DatetimeIndex(rows["time"]))
    return rows.drop_duplicates("time", keep="last").sort_values("time", kind="stable")


def _gauge_hourly(obs: pd.DataFrame, code: str, variable: str | None, gauge: Gauge | None,
                  index: pd.DatetimeIndex) -> pd.DataFrame:
    """Hourly ``level``, 0/1 ``censored`` and the silence columns of ``crisis_level_to_hourly``
    (all NaN for a telemetry gauge or other instantaneous input) of one level gauge."""
    if gauge is not None and gauge.kind == "crisis" and gauge.start_level_m is not None:
        return crisis_level_to_hourly(_station_rows(obs, code, variable), gauge.start_level_m,
                                      index)
    nan = np.full(len(index), np.nan)
    return pd.DataFrame({"level": level_to_hourly(_station_series(obs, code, variable), index),
                         "censored": 0.0, "silent_h": nan, "last_m": nan, "last_rise_m": nan},
                        index=index)


def catchment_rain(gauges: pd.DataFrame, weights: Sequence[float]) -> pd.Series:
    """Weighted catchment rain (mm/h) from hourly gauge columns (NaN = unusable).

    Weights are renormalised over the gauges present each hour; the hour is NaN when the
    present gauges hold less than ``MIN_RAIN_WEIGHT`` of the total weight.
    """
    w = np.asarray(weights, dtype="float64")
    vals = gauges.to_numpy(dtype="float64")
    present = ~np.isnan(vals)
    wsum = (present * w).sum(axis=1)
    num = np.nansum(np.where(present, vals, 0.0) * w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(wsum >= MIN_RAIN_WEIGHT * w.sum(), num / wsum, np.nan)
    return pd.Series(out, index=gauges.index, dtype="float64", name=RAIN)


def river_hourly(
    obs: pd.DataFrame,
    river: River,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Long observations (``forecast.frames`` columns) -> the hourly river frame.

    Columns: ``level_m`` (m, primary gauge, variable ``level_m``), ``level_censored`` (0/1,
    crisis primary gauge at or below its start level, see module docstring), ``rain_mm`` (mm
    over the hour ending at the index, weighted over ``river.rain_gauges``, variable
    ``rain_mm``), ``up_<code>`` with ``up_<code>_censored`` for each of
    ``river.upstream_gauges`` (any hourly variable; daily series, ``frames.DAILY_VARIABLES``,
    are never read; censoring applies to crisis gauges of this river), then
    ``level_unexplained`` (0/1: censored by a silence nothing explains; the level there is a
    guess), ``level_silent_h`` (h), ``level_last_m`` (m) and ``level_last_rise_m`` (m) -- the
    silence columns of the module docstring, NaN on hours not censored by silence and for
    telemetry gauges. None of the silence columns is a feature.
    Sub-hourly stations are resampled (see module docstring). Index: every whole hour from
    ``start`` to ``end`` (default: span of the river's level observations).
    """
    if start is None or end is None:
        level_raw = _station_series(obs, river.primary_gauge, LEVEL)
        if level_raw.empty:
            raise FrameError(f"river {river.id}: no level_m observations for {river.primary_gauge}")
        start = level_raw.index.min() if start is None else start
        end = level_raw.index.max() if end is None else end
    index = _hourly_index(pd.Timestamp(start), pd.Timestamp(end))
    out = pd.DataFrame(index=index)
    primary = _gauge_hourly(obs, river.primary_gauge, LEVEL, river.gauge, index)
    out[LEVEL], out[CENSORED] = primary["level"], primary["censored"]
    gauges = pd.DataFrame(
        {g.code: rain_to_hourly(_station_series(obs, g.code, RAIN), index)
         for g in river.rain_gauges},
        index=index,
    )
    out[RAIN] = catchment_rain(gauges, [g.weight for g in river.rain_gauges])
    gauges_by_code = {g.code: g for g in river.gauges}
    for code in river.upstream_gauges:
        col = UP_PREFIX + code
        up = _gauge_hourly(obs, code, None, gauges_by_code.get(code), index)
        out[col], out[col + CENSORED_SUFFIX] = up["level"], up["censored"]
    out[SILENT_H] = primary["silent_h"]
    out[LAST_M] = primary["last_m"]
    out[LAST_RISE_M] = primary["last_rise_m"]
    start_m = river.gauge.start_level_m if river.gauge.kind == "crisis" else None
    out[UNEXPLAINED] = _silence_checks(out, start_m).unexplained.astype("float64")
    return out[[c for c in out.columns if c not in SILENCE_COLUMNS] + list(SILENCE_COLUMNS)]
