"""Feature rows for the lead-time models: one row per (river, issue time T), known at T.

Pure and vectorised: no clock, no I/O. Three steps:

1. ``river_hourly(obs, river)`` turns the long observations frame (``forecast.frames``) into a
   regular hourly *river frame* (index: hourly UTC ``DatetimeIndex``; columns ``level_m`` at the
   primary gauge and its 0/1 ``level_censored``, ``rain_mm`` = weighted catchment rain over the
   hour ending at the index, one ``up_<code>`` column (with ``up_<code>_censored``) per
   upstream input such as an upstream level or a dam release, and last the primary gauge's
   silence columns ``level_unexplained``, ``level_silent_h``, ``level_last_m`` and
   ``level_last_rise_m`` (below); these are not features).
   Values whose QC flag is not GOOD/FILLED/DOUBTFUL become NaN before anything else, except
   left-censored crisis-gauge hours (below).
2. ``build_features(hourly, issue_times, future_rain=..., vintages=...)`` computes the feature
   rows. Every past-looking feature is a causal rolling/shift of the river frame, so a row at T
   reads only hours <= T; forecast rain comes from the latest vintage issued at or before T
   (``archive``), from observed rain after T (``perfect``, an upper bound for backtests only) or
   is left out (``none``).
3. ``targets(hourly, issue_times)`` gives the level change ``level(T+h) - level(T)`` (m); NaN
   when the level at T+h is a guess (``level_unexplained`` = 1), so nothing learns from it.

Resampling (sub-hourly input -> hourly): a level (or any instantaneous value such as a dam
release) is the *last reading in (T-30 min, T]* -- the freshest value an operator has at T, and
no older than half an hour; rain is the *sum over the hour (T-1 h, T]*, NaN unless every
expected sub-interval reading is present. Gaps stay NaN: nothing is interpolated here (QC decides
what may be filled, and marks it FILLED).

Crisis-management gauges (危機管理型水位計, ``Gauge.kind == "crisis"``) measure only above their
observation start level (観測開始水位, ``Gauge.start_level_m``): below it they send a heartbeat
about once a day or nothing, and the store may hold ``Flag.BELOW_START`` rows
(``forecast.ingest.crisis.censor_below_start``, or the source's own status). Such an hour is
*left-censored* -- the level is at or below the start level -- not missing. The river frame
gives it the start level (an upper bound) and marks it in a 0/1 column (``level_censored`` for
the primary gauge, ``up_<code>_censored`` for an upstream crisis gauge; 0 for telemetry gauges).
An hour is censored when the freshest evidence at or before it says "below start": a
``BELOW_START`` row or a usable reading below the start level in (T-30 min, T] (readings below
the start level are not trusted as measurements: they become the start level too), or, with no
usable reading in that half hour (*censored by silence*), a below-start reading, a reading less
than ``CRISIS_NEAR_START_M`` above the start level (the gauge goes quiet as the level falls
through it) or a ``BELOW_START`` row, at most ``CRISIS_MAX_SILENCE`` old with nothing (no row of
any flag) after it. Anything else without a reading -- the gauge went silent well above its
start level, a MISSING/UNRELIABLE row, a longer silence -- stays NaN (a gap).
(``censor_below_start`` in ingest is stricter: silence after any reading at or above the start
level is MISSING there.)

Silence is not low water without evidence: an outage (the source or the whole feed down, or a
gauge that stops in a flood) is silent too. So every hour of the *primary* gauge censored by
silence is also classified, from what is known at T, as *explained* (really below the start
level) or *unexplained*. It is explained only when all of these hold:

* the last evidence says below or near the start level (the censoring rule above) and the
  level was not rising into the silence: ``level_last_rise_m`` -- the last reading minus the
  mean of the usable readings in the ``CRISIS_TREND_WINDOW`` (1 h) before it, or minus the
  start level when there is none (the gauge was quiet, so the level came up from below it; a
  below-start heartbeat gives a negative value; NaN for a ``BELOW_START`` row, which counts as
  not rising) -- is at most ``CRISIS_RISE_M`` (0.02 m, twice the gauges' ~1 cm noise);
* the catchment rain over the hours since the last evidence (every hour of the frame in
  (last evidence, T]; hours before the frame count as unknown) is known -- ``rain_mm`` present
  for at least ``CRISIS_RAIN_KNOWN`` (75 %) of them and for the hour ending at T itself; if the
  rain gauges are silent too, now or for long, it is an outage -- and small: below
  ``CRISIS_SILENCE_RAIN_MM`` (10 mm, see that constant);
* the river's other inputs (every ``up_<code>`` column) have a value at T: none is silent too.

An unexplained hour keeps ``level_m`` = start level and ``level_censored`` = 1 (the live cycle
can still issue a forecast, marked low-confidence) and gets ``level_unexplained`` = 1;
``targets`` gives NaN there and backtests already skip censored targets, so a guessed level is
never learnt from nor scored. ``silence_reason(hourly, river, at)`` gives operators the reason
in one line (None for a reading or an explained hour). ``level_unexplained`` is 0 for telemetry
gauges, readings, freshly censored hours and gaps (a gap is NaN already). The silence columns
``level_silent_h`` (hours since the last evidence), ``level_last_m`` (its reading, m; NaN for a
``BELOW_START`` row) and ``level_last_rise_m`` (m) are set on the hours censored by silence only
(NaN elsewhere) and let ``silence_reason`` re-derive the verdict from the river frame alone.
Upstream crisis gauges are censored but not classified; for the check above an upstream input
is silent when its column is NaN (an upstream crisis gauge censored at its start level is not).
Every rule looks back only, so features and silence columns at T still read only data <= T.

Issue times must be whole hours (UTC): the JMA half-hourly rain vintages are still used as
issued, since the vintage chosen is the latest one issued at or before T.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, NamedTuple

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
UNEXPLAINED: Final = "level_unexplained"  # 0/1: censored by silence that nothing explains
SILENT_H: Final = "level_silent_h"      # h since the primary crisis gauge's last evidence
LAST_M: Final = "level_last_m"          # m, that evidence's reading (NaN: a BELOW_START row)
LAST_RISE_M: Final = "level_last_rise_m"  # m, trend into the silence (NaN: no earlier reading)
SILENCE_COLUMNS: Final = (UNEXPLAINED, SILENT_H, LAST_M, LAST_RISE_M)
CRISIS_MAX_SILENCE: Final = pd.Timedelta(hours=36)
"""Longest silence after a below-start crisis reading still read as low water; the same value
as ``forecast.ingest.crisis.MAX_SILENCE`` (features may not import ingest)."""
CRISIS_NEAR_START_M: Final = 0.10
"""A crisis gauge silent right after a reading less than this above its start level has fallen
below it (the usual way it goes quiet on a recession); after a higher reading silence is a gap."""
CRISIS_SILENCE_RAIN_MM: Final = 10.0
"""Catchment rain (mm) since a crisis gauge's last evidence below which its silence is still read
as low water. 10 mm is one hour at the bottom of JMA's やや強い雨 class (10-20 mm/h) over the
whole silence: on the small catchments crisis gauges watch (a few to a few tens of km2) that can
start a rise. In a simulated year (2023, seed 3) every rise through the start level came after
at least 18 mm in the 24 h before it (鹿化川, 7 km2: 18-36 mm; 板屋川, 25 km2: 99-132 mm). A
low value errs the safe way: more silences are shown as a data problem (about 7 % of 板屋川's
and 2 % of 鹿化川's hours in the tests' simulation), none as safe. One value for every river
until per-river values come from the catalogue."""
CRISIS_RAIN_KNOWN: Final = 0.75
"""Share of the hours since the last evidence that must have catchment rain: fewer, and the rain
is not known (the rain gauges are silent too: an outage). The same share the rain-sum features
need (``min_periods`` = 75 % of the window)."""
CRISIS_TREND_WINDOW: Final = pd.Timedelta(hours=1)
"""The trend into a silence is the last reading minus the mean of the usable readings in the
hour before it (above its start level a crisis gauge reports every 10 min: up to 6 readings)."""
CRISIS_RISE_M: Final = 0.02
"""A trend above this (m) is a rise into the silence: twice the ~1 cm surface fluctuation and
reporting resolution of these gauges, so noise on a flat or falling level is not a rise."""
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
    silent = np.isfinite(silent_h) & (_censored(hourly, CENSORED).to_numpy() > 0)
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


def silence_reason(hourly: pd.DataFrame, river: River, at: pd.Timestamp) -> str | None:
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
    when = (ts + pd.Timedelta(hours=JST_OFFSET_H)).strftime("%Y-%m-%d %H:%M JST")
    if ts not in hourly.index:
        return f"{who}: the river frame has no row for {when}"
    frame = hourly.loc[:ts]
    i = len(frame) - 1
    if not np.isfinite(float(frame[LEVEL].iloc[i])):
        return f"{who}: no usable level at {when} (a gap, not read as low water)"
    start = gauge.start_level_m if gauge.kind == "crisis" else None
    censored = float(_censored(frame, CENSORED).iloc[i]) > 0
    if censored and (start is None or SILENT_H not in frame.columns):
        return (f"{who}: level censored at {when} but the river frame has no silence columns "
                "(not built by river_hourly), so it is not read as low water")
    got = _silence_checks(frame, start)
    if not (got.unexplained[i] or float(_censored(frame, UNEXPLAINED).iloc[i]) > 0):
        return None
    hours = float(frame[SILENT_H].iloc[i])
    since = ts - pd.Timedelta(seconds=round(hours * 3600))
    since_jst = (since + pd.Timedelta(hours=JST_OFFSET_H)).strftime("%Y-%m-%d %H:%M JST")
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
            + "; ".join(why) + f"; not read as low water (level held at the start level "
            f"{start:.2f} m is a guess)")


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
    # a target hour whose level is a guess (unexplained silence) is not a target
    target = level.where(_censored(hourly, UNEXPLAINED) == 0.0)
    out = pd.DataFrame({f"dh_{h}h": target.shift(-h) - level for h in leads}).reindex(it)
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
