"""Feature rows for the lead-time models: one row per (river, issue time T), known at T.

Pure and vectorised: no clock, no I/O. Three steps:

1. ``river_hourly(obs, river)`` turns the long observations frame (``forecast.frames``) into a
   regular hourly *river frame* (index: hourly UTC ``DatetimeIndex``; columns ``level_m`` at the
   primary gauge, ``rain_mm`` = weighted catchment rain over the hour ending at the index, and one
   ``up_<code>`` column per upstream input such as an upstream level or a dam release).
   Values whose QC flag is not GOOD/FILLED/DOUBTFUL become NaN before anything else.
2. ``build_features(hourly, issue_times, future_rain=..., vintages=...)`` computes the feature
   rows. Every past-looking feature is a causal rolling/shift of the river frame, so a row at T
   reads only hours <= T; forecast rain comes from the latest vintage issued at or before T
   (``archive``), from observed rain after T (``perfect``, an upper bound for backtests only) or
   is left out (``none``).
3. ``targets(hourly, issue_times)`` gives the level change ``level(T+h) - level(T)`` (m).

Resampling (sub-hourly input -> hourly): a level (or any instantaneous value such as a dam
release) is the *last reading in (T-30 min, T]* -- the freshest value an operator has at T, and
no older than half an hour; rain is the *sum over the hour (T-1 h, T]*, NaN unless every
expected sub-interval reading is present. Gaps stay NaN: nothing is interpolated here (QC decides
what may be filled, and marks it FILLED).

Issue times must be whole hours (UTC): the JMA half-hourly rain vintages are still used as
issued, since the vintage chosen is the latest one issued at or before T.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from forecast.catalogue import River
from forecast.errors import FrameError
from forecast.frames import LEVEL, RAIN, Flag

FutureRain = Literal["archive", "perfect", "none"]
FUTURE_RAIN_MODES: Final = ("archive", "perfect", "none")
LEADS: Final = (1, 2, 3, 4, 5, 6)
USABLE_FLAGS: Final = frozenset({int(Flag.GOOD), int(Flag.FILLED), int(Flag.DOUBTFUL)})

LEVEL_CHANGE_H: Final = (1, 2, 3, 6)
RAIN_SUM_H: Final = (1, 3, 6, 12, 24, 48)
EXTRA_CHANGE_H: Final = (1, 3)
API_DECAY_PER_H: Final = 0.95  # antecedent precipitation index decay (half-life ~13.5 h)
MIN_RAIN_WEIGHT: Final = 0.5   # catchment rain needs gauges holding >= half the weight
UP_PREFIX: Final = "up_"
JST_OFFSET_H: Final = 9

PAST_RAIN_FEATURES: Final = (*(f"rain_{k}h" for k in RAIN_SUM_H), "api")
FC_RAIN_FEATURES: Final = tuple(f"rain_fc_{h}h" for h in LEADS)
LEVEL_FEATURES: Final = ("level_m", *(f"d_level_{k}h" for k in LEVEL_CHANGE_H))
CALENDAR_FEATURES: Final = ("doy_sin", "doy_cos", "hour_jst")


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
    fresh = ok & (index.asi8 - taken < pd.Timedelta(minutes=30).value)
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


def _station_series(obs: pd.DataFrame, code: str, variable: str | None) -> pd.Series:
    sel = obs["station_id"] == code
    if variable is not None:
        sel &= obs["variable"] == variable
    rows = obs.loc[sel]
    vals = rows["value"].where(rows["flag"].isin(list(USABLE_FLAGS)))
    s = pd.Series(vals.to_numpy(dtype="float64"), index=pd.DatetimeIndex(rows["time"]))
    return s[~s.index.duplicated(keep="last")].sort_index()


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

    Columns: ``level_m`` (m, primary gauge, variable ``level_m``), ``rain_mm`` (mm over the hour
    ending at the index, weighted over ``river.rain_gauges``, variable ``rain_mm``) and
    ``up_<code>`` for each of ``river.upstream_gauges`` (any variable). Sub-hourly stations are
    resampled (see module docstring). Index: every whole hour from ``start`` to ``end``
    (default: span of the river's level observations).
    """
    level_raw = _station_series(obs, river.primary_gauge, LEVEL)
    if start is None or end is None:
        if level_raw.empty:
            raise FrameError(f"river {river.id}: no level_m observations for {river.primary_gauge}")
        start = level_raw.index.min() if start is None else start
        end = level_raw.index.max() if end is None else end
    index = _hourly_index(pd.Timestamp(start), pd.Timestamp(end))
    out = pd.DataFrame(index=index)
    out[LEVEL] = level_to_hourly(level_raw, index)
    gauges = pd.DataFrame(
        {g.code: rain_to_hourly(_station_series(obs, g.code, RAIN), index)
         for g in river.rain_gauges},
        index=index,
    )
    out[RAIN] = catchment_rain(gauges, [g.weight for g in river.rain_gauges])
    for code in river.upstream_gauges:
        out[UP_PREFIX + code] = level_to_hourly(_station_series(obs, code, None), index)
    return out


def _check_hourly(hourly: pd.DataFrame) -> pd.DatetimeIndex:
    idx = hourly.index
    if not isinstance(idx, pd.DatetimeIndex) or str(idx.tz) != "UTC":
        raise FrameError("river frame needs a tz-aware UTC DatetimeIndex")
    if len(idx) > 1 and not (np.diff(idx.asi8) == pd.Timedelta(hours=1).value).all():
        raise FrameError("river frame index must be regular hourly (use river_hourly)")
    if LEVEL not in hourly.columns or RAIN not in hourly.columns:
        raise FrameError(f"river frame needs columns {LEVEL!r} and {RAIN!r}")
    return idx


def _as_issue_index(issue_times: Sequence[pd.Timestamp] | pd.DatetimeIndex) -> pd.DatetimeIndex:
    it = pd.DatetimeIndex(list(issue_times) if not isinstance(issue_times, pd.DatetimeIndex)
                          else issue_times)
    if it.tz is None or str(it.tz) != "UTC":
        raise FrameError("issue times must be tz-aware UTC")
    if len(it) and (it != it.floor("h")).any():
        raise FrameError("issue times must be whole hours")
    return it


def extra_columns(hourly: pd.DataFrame) -> list[str]:
    """The ``up_<code>`` columns of a river frame."""
    return [c for c in hourly.columns if str(c).startswith(UP_PREFIX)]


def archive_rain(
    vintages: pd.DataFrame, catchment_id: str, issue_times: pd.DatetimeIndex
) -> pd.DataFrame:
    """Forecast rain as issued: cumulative sums (mm) over (T, T+h] for h in ``LEADS``.

    ``vintages`` is a rain-vintage frame (``forecast.frames.RAIN_VINTAGE_COLUMNS``). For each T
    the latest vintage with ``issued_at <= T`` is used; an hour that vintage does not cover makes
    that sum and all longer ones NaN.
    """
    v = vintages.loc[vintages["catchment_id"] == catchment_id]
    out = pd.DataFrame(np.nan, index=issue_times, columns=list(FC_RAIN_FEATURES))
    if v.empty or not len(issue_times):
        return out
    table = v.groupby(["issued_at", "valid_at"])["value"].last()
    issued = pd.DatetimeIndex(table.index.get_level_values(0).unique()).sort_values()
    pos = issued.searchsorted(issue_times, side="right") - 1
    vint = issued[np.clip(pos, 0, None)]
    hourly = np.full((len(issue_times), len(LEADS)), np.nan)
    for j, h in enumerate(LEADS):
        keys = pd.MultiIndex.from_arrays([vint, issue_times + pd.Timedelta(hours=h)])
        loc = table.index.get_indexer(keys)
        got = (loc >= 0) & (pos >= 0)
        hourly[got, j] = table.to_numpy()[loc[got]]
    out.loc[:, :] = np.cumsum(hourly, axis=1)  # NaN propagates to longer sums
    return out


def perfect_rain(hourly: pd.DataFrame, issue_times: pd.DatetimeIndex) -> pd.DataFrame:
    """Observed future rain used as the forecast: sums (mm) over (T, T+h]. Backtests only."""
    rain = hourly[RAIN]
    shifted = np.column_stack([rain.shift(-h).to_numpy() for h in LEADS])
    cum = pd.DataFrame(np.cumsum(shifted, axis=1), index=hourly.index,
                       columns=list(FC_RAIN_FEATURES))
    return cum.reindex(issue_times)


def build_features(
    hourly: pd.DataFrame,
    issue_times: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    *,
    future_rain: FutureRain = "none",
    vintages: pd.DataFrame | None = None,
    catchment_id: str = "",
) -> pd.DataFrame:
    """Feature rows (index = issue time T, UTC) from a river frame, using data known at T.

    Columns (units): ``level_m`` (m) and ``d_level_{1,2,3,6}h`` (m change to T); ``rain_{1,3,6,
    12,24,48}h`` (mm over the hours ending at T) and ``api`` (mm, decay 0.95/h, NaN when the
    last 24 h of rain are mostly missing); ``rain_fc_{h}h`` (mm over (T, T+h], modes
    ``archive``/``perfect`` only); ``up_<code>`` with ``d_up_<code>_{1,3}h``; ``doy_sin``,
    ``doy_cos`` and ``hour_jst``. Rows for issue times outside the frame are all NaN.
    """
    if future_rain not in FUTURE_RAIN_MODES:
        raise FrameError(f"future_rain must be one of {FUTURE_RAIN_MODES}, got {future_rain!r}")
    idx = _check_hourly(hourly)
    it = _as_issue_index(issue_times)
    level = hourly[LEVEL].astype("float64")
    rain = hourly[RAIN].astype("float64")
    cols: dict[str, pd.Series] = {"level_m": level}
    for k in LEVEL_CHANGE_H:
        cols[f"d_level_{k}h"] = level - level.shift(k)
    for k in RAIN_SUM_H:
        cols[f"rain_{k}h"] = rain.rolling(k, min_periods=max(1, int(0.75 * k))).sum()
    # API treats a missing hour as dry, so mask it where recent rain is mostly unknown.
    api = lfilter([1.0], [1.0, -API_DECAY_PER_H], rain.fillna(0.0).to_numpy())
    cols["api"] = pd.Series(api, index=idx).where(cols["rain_24h"].notna())
    for c in extra_columns(hourly):
        x = hourly[c].astype("float64")
        cols[c] = x
        for k in EXTRA_CHANGE_H:
            cols[f"d_{c}_{k}h"] = x - x.shift(k)
    feats = pd.DataFrame(cols, index=idx).reindex(it)
    doy = it.dayofyear.to_numpy(dtype="float64")
    feats["doy_sin"] = np.sin(2 * np.pi * doy / 365.25)
    feats["doy_cos"] = np.cos(2 * np.pi * doy / 365.25)
    feats["hour_jst"] = ((it.hour + JST_OFFSET_H) % 24).astype("float64")
    if future_rain == "perfect":
        feats = feats.join(perfect_rain(hourly, it))
    elif future_rain == "archive":
        if vintages is None:
            raise FrameError("future_rain='archive' needs a rain-vintage frame")
        feats = feats.join(archive_rain(vintages, catchment_id, it))
    feats.index.name = "issued_at"
    return feats


def targets(hourly: pd.DataFrame, issue_times: Sequence[pd.Timestamp] | pd.DatetimeIndex,
            leads: Sequence[int] = LEADS) -> pd.DataFrame:
    """Training targets: level change (m) ``dh_{h}h = level(T+h) - level(T)`` per lead.

    Uses data after T by definition: never pass these to ``build_features``.
    """
    _check_hourly(hourly)
    it = _as_issue_index(issue_times)
    level = hourly[LEVEL].astype("float64")
    out = pd.DataFrame({f"dh_{h}h": level.shift(-h) - level for h in leads}).reindex(it)
    out.index.name = "issued_at"
    return out


def feature_groups(columns: Sequence[str]) -> dict[str, list[str]]:
    """Split feature names into groups a fallback model may drop.

    ``fc`` = forecast rain, ``rain`` = past rain, ``upstream`` = ``up_*`` inputs, ``base`` =
    level and calendar features (always present).
    """
    groups: dict[str, list[str]] = {"base": [], "rain": [], "fc": [], "upstream": []}
    for c in columns:
        if c in FC_RAIN_FEATURES:
            groups["fc"].append(c)
        elif c in PAST_RAIN_FEATURES:
            groups["rain"].append(c)
        elif c.startswith(UP_PREFIX) or c.startswith("d_" + UP_PREFIX):
            groups["upstream"].append(c)
        else:
            groups["base"].append(c)
    return groups
