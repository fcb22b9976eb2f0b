"""Feature rows for the lead-time models: one row per (river, issue time T), known at T.

Pure and vectorised: no clock, no I/O. Three steps:

1. ``river_hourly(obs, river)`` turns the long observations frame (``forecast.frames``) into a
   regular hourly *river frame* (index: hourly UTC ``DatetimeIndex``; columns ``level_m`` at the
   primary gauge and its 0/1 ``level_censored``, ``rain_mm`` = weighted catchment rain over the
   hour ending at the index, and one ``up_<code>`` column (with ``up_<code>_censored``) per
   upstream input such as an upstream level or a dam release).
   Values whose QC flag is not GOOD/FILLED/DOUBTFUL become NaN before anything else, except
   left-censored crisis-gauge hours (below).
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

Crisis-management gauges (危機管理型水位計, ``Gauge.kind == "crisis"``) measure only above their
observation start level (観測開始水位, ``Gauge.start_level_m``): below it they send a heartbeat
about once a day or nothing, and the store may hold ``Flag.BELOW_START`` rows
(``forecast.ingest.crisis.censor_below_start``). Such an hour is *left-censored* -- the level is
known to be at or below the start level -- not missing. The river frame gives it the start level
(an upper bound) and marks it in a 0/1 column (``level_censored`` for the primary gauge,
``up_<code>_censored`` for an upstream crisis gauge; 0 for telemetry gauges). An hour is censored
when the freshest evidence at or before it says "below start": a ``BELOW_START`` row or a usable
reading below the start level in (T-30 min, T] (readings below the start level are not trusted
as measurements: they become the start level too), or, with no usable reading in that half hour,
a below-start reading, a reading less than ``CRISIS_NEAR_START_M`` above the start level (the
gauge goes quiet as the level falls through it) or a ``BELOW_START`` row, at most
``CRISIS_MAX_SILENCE`` old with nothing (no row of any flag) after it. Anything else without a
reading -- the gauge went silent well above its start level, a MISSING/UNRELIABLE row, a
longer silence -- stays NaN (a gap). (``censor_below_start`` in ingest is stricter: silence
after any reading at or above the start level is MISSING there.)
Every rule looks back only, so features at T still read only data <= T.

Issue times must be whole hours (UTC): the JMA half-hourly rain vintages are still used as
issued, since the vintage chosen is the latest one issued at or before T.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from forecast.catalogue import Gauge, River
from forecast.errors import FrameError
from forecast.frames import DAILY_VARIABLES, LEVEL, RAIN, Flag

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
CENSORED: Final = "level_censored"     # 0/1: primary level left-censored at the start level
CENSORED_SUFFIX: Final = "_censored"   # ``up_<code>_censored``: same for an upstream gauge
CRISIS_MAX_SILENCE: Final = pd.Timedelta(hours=36)
"""Longest silence after a below-start crisis reading still read as low water; the same value
as ``forecast.ingest.crisis.MAX_SILENCE`` (features may not import ingest)."""
CRISIS_NEAR_START_M: Final = 0.10
"""A crisis gauge silent right after a reading less than this above its start level has fallen
below it (the usual way it goes quiet on a recession); after a higher reading silence is a gap."""
FRESH: Final = pd.Timedelta(minutes=30)  # an instantaneous reading is used for half an hour
JST_OFFSET_H: Final = 9

PAST_RAIN_FEATURES: Final = (*(f"rain_{k}h" for k in RAIN_SUM_H), "api")
FC_RAIN_FEATURES: Final = tuple(f"rain_fc_{h}h" for h in LEADS)
LEVEL_FEATURES: Final = ("level_m", CENSORED, *(f"d_level_{k}h" for k in LEVEL_CHANGE_H))
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


def crisis_level_to_hourly(rows: pd.DataFrame, start_level_m: float,
                           index: pd.DatetimeIndex,
                           max_silence: pd.Timedelta = CRISIS_MAX_SILENCE,
                           near_start_m: float = CRISIS_NEAR_START_M) -> pd.DataFrame:
    """One crisis gauge's rows (``time, value, flag``; any flag) -> hourly level and censoring.

    Returns columns ``level`` (m; ``start_level_m`` where censored, NaN for gaps) and
    ``censored`` (0/1) on ``index``; the rules are in the module docstring. Looks only back:
    the values at T depend on rows with time <= T.
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
    return pd.DataFrame({"level": level, "censored": censored.astype("float64")}, index=index)


def _gauge_hourly(obs: pd.DataFrame, code: str, variable: str | None, gauge: Gauge | None,
                  index: pd.DatetimeIndex) -> tuple[pd.Series, pd.Series]:
    """Hourly value and 0/1 censoring of one level gauge (or other instantaneous input)."""
    if gauge is not None and gauge.kind == "crisis" and gauge.start_level_m is not None:
        got = crisis_level_to_hourly(_station_rows(obs, code, variable), gauge.start_level_m,
                                     index)
        return got["level"], got["censored"]
    return (level_to_hourly(_station_series(obs, code, variable), index),
            pd.Series(0.0, index=index))


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
    ``rain_mm``), and ``up_<code>`` with ``up_<code>_censored`` for each of
    ``river.upstream_gauges`` (any hourly variable; daily series, ``frames.DAILY_VARIABLES``,
    are never read; censoring applies to crisis gauges of this river).
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
    out[LEVEL], out[CENSORED] = _gauge_hourly(obs, river.primary_gauge, LEVEL, river.gauge, index)
    gauges = pd.DataFrame(
        {g.code: rain_to_hourly(_station_series(obs, g.code, RAIN), index)
         for g in river.rain_gauges},
        index=index,
    )
    out[RAIN] = catchment_rain(gauges, [g.weight for g in river.rain_gauges])
    gauges_by_code = {g.code: g for g in river.gauges}
    for code in river.upstream_gauges:
        col = UP_PREFIX + code
        out[col], out[col + CENSORED_SUFFIX] = _gauge_hourly(obs, code, None,
                                                             gauges_by_code.get(code), index)
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
    """The ``up_<code>`` input columns of a river frame (not their ``_censored`` markers)."""
    return [c for c in hourly.columns
            if str(c).startswith(UP_PREFIX) and not str(c).endswith(CENSORED_SUFFIX)]


def _censored(hourly: pd.DataFrame, column: str) -> pd.Series:
    """A 0/1 censoring column of a river frame; all 0 when the frame has none (telemetry)."""
    if column in hourly.columns:
        return hourly[column].fillna(0.0).astype("float64")
    return pd.Series(0.0, index=hourly.index)


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

    Columns (units): ``level_m`` (m), ``level_censored`` (0/1; 0 when the frame has no such
    column) and ``d_level_{1,2,3,6}h`` (m change to T); ``rain_{1,3,6,
    12,24,48}h`` (mm over the hours ending at T) and ``api`` (mm, decay 0.95/h, NaN when the
    last 24 h of rain are mostly missing); ``rain_fc_{h}h`` (mm over (T, T+h], modes
    ``archive``/``perfect`` only); ``up_<code>`` with ``up_<code>_censored`` (0/1) and
    ``d_up_<code>_{1,3}h``; ``doy_sin``,
    ``doy_cos`` and ``hour_jst``. Rows for issue times outside the frame are all NaN.
    """
    if future_rain not in FUTURE_RAIN_MODES:
        raise FrameError(f"future_rain must be one of {FUTURE_RAIN_MODES}, got {future_rain!r}")
    idx = _check_hourly(hourly)
    it = _as_issue_index(issue_times)
    level = hourly[LEVEL].astype("float64")
    rain = hourly[RAIN].astype("float64")
    cols: dict[str, pd.Series] = {"level_m": level, CENSORED: _censored(hourly, CENSORED)}
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
        cols[c + CENSORED_SUFFIX] = _censored(hourly, c + CENSORED_SUFFIX)
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
