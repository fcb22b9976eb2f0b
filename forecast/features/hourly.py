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


def _fresh_last(t: np.ndarray, v: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per ``at`` (ns): the last of the sorted readings (``t`` ns, ``v``) in (at - 30 min, at];
    NaN when there is none."""
    vals = np.full(len(at), np.nan)
    if not len(t):
        return vals
    pos = t.searchsorted(at, side="right") - 1
    taken = t[np.clip(pos, 0, None)]
    fresh = (pos >= 0) & (at - taken < FRESH.value)
    vals[fresh] = v[pos[fresh]]
    return vals


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
    vals = _fresh_last(_ns(s_idx), s.to_numpy(dtype="float64"), _ns(index))
    return pd.Series(vals, index=index, dtype="float64")


def _ns(times: pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch (UTC for tz-aware times), whatever the index's unit."""
    return np.asarray(times.as_unit("ns").asi8)


_HOUR_NS = pd.Timedelta(hours=1).value


def _rain_hours(parts: Sequence[tuple[np.ndarray, np.ndarray]], index: pd.DatetimeIndex
                ) -> np.ndarray:
    """``rain_to_hourly`` of several series at once: one row per ``(times ns, values)`` part
    (in the series' own order), one column per hour of ``index``. One pandas group-by for all
    of them: each hour's sum is the same sum, of the same values in the same order, as a
    group-by of that series alone."""
    out = np.full((len(parts), len(index)), np.nan)
    if not parts or not len(index):
        return out
    need = np.empty(len(parts))
    for i, (t, _) in enumerate(parts):
        step = _step(pd.DatetimeIndex(t.view("M8[ns]")))
        need[i] = max(1, round(pd.Timedelta(hours=1) / step))
    t_all = np.concatenate([t for t, _ in parts]).astype(np.int64, copy=False)
    v_all = np.concatenate([v for _, v in parts]).astype("float64", copy=False)
    if not len(t_all):
        return out
    # each reading belongs to the whole hour whose interval (T-1h, T] contains it (ceil)
    label = -((-t_all) // _HOUR_NS) * _HOUR_NS
    labels, hour_of = np.unique(label, return_inverse=True)
    part_of = np.repeat(np.arange(len(parts)), [len(t) for t, _ in parts])
    key = part_of * len(labels) + hour_of
    grouped = pd.Series(v_all).groupby(key, sort=False)
    sums, counts = grouped.sum(min_count=1), grouped.count()
    keys = sums.index.to_numpy()
    vals = sums.to_numpy(dtype="float64").copy()
    part, lab = keys // len(labels), labels[keys % len(labels)]
    vals[counts.reindex(sums.index).to_numpy() < need[part]] = np.nan
    at = _ns(index)
    for i in range(len(parts)):
        mine = part == i
        pos = pd.Index(lab[mine]).get_indexer(at)
        got = pos >= 0
        out[i, got] = vals[mine][pos[got]]
    return out


def rain_to_hourly(series: pd.Series, index: pd.DatetimeIndex | None = None) -> pd.Series:
    """Rain accumulations (mm over the interval ending at each time) -> mm per hour ending at T.

    The input step is the median spacing of the series (e.g. 10 or 15 min, or 1 h). The hourly
    value is the sum over (T-1 h, T]; NaN unless all 60/step readings are present and usable.
    """
    if index is None:
        if series.empty:
            return pd.Series(dtype="float64")
        index = _hourly_index(series.index.min(), series.index.max())
    parts = [(_ns(pd.DatetimeIndex(series.index)), series.to_numpy(dtype="float64"))]
    return pd.Series(_rain_hours(parts, index)[0], index=index, dtype="float64",
                     name=series.name)


class _Stations:
    """An observations frame split by station once, so each station is looked at once however
    many rivers read it. Rows of a station keep the frame's order."""

    def __init__(self, obs: pd.DataFrame) -> None:
        self.obs = obs
        self._pos: dict[object, np.ndarray] = (
            {k: np.asarray(v) for k, v in obs.groupby("station_id", sort=False).indices.items()}
            if len(obs) else {})
        self._time = _ns(pd.DatetimeIndex(obs["time"])) if len(obs) else np.zeros(0, np.int64)
        self._value = obs["value"].to_numpy(dtype="float64")
        self._flag = obs["flag"].to_numpy()
        self._variable = obs["variable"].to_numpy()
        self._series: dict[tuple[str, str | None], tuple[np.ndarray, np.ndarray]] = {}

    def _rows(self, code: str, variable: str | None) -> np.ndarray:
        """Positions of one station's rows of ``variable``; ``None``: any variable except the
        daily ones (``frames.DAILY_VARIABLES``), which never reach the hourly river frame."""
        pos = self._pos.get(code)
        if pos is None:
            return np.zeros(0, dtype=np.intp)
        var = self._variable[pos]
        if variable is not None:
            return np.asarray(pos[var == variable])
        daily = pd.Series(var).isin(list(DAILY_VARIABLES)).to_numpy(dtype=bool)
        return np.asarray(pos[~daily])

    def _dedup(self, pos: np.ndarray) -> np.ndarray:
        """Time-sorted positions, the last row of a repeated time kept."""
        t = self._time[pos]
        order = np.argsort(t, kind="stable")
        pos, t = pos[order], t[order]
        last = np.ones(len(pos), dtype=bool)
        last[:-1] = t[1:] != t[:-1]
        return pos[last]

    def series(self, code: str, variable: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Times (ns, sorted, unique) and values (NaN where the flag is not usable)."""
        key = (code, variable)
        got = self._series.get(key)
        if got is None:
            pos = self._dedup(self._rows(code, variable))
            usable = pd.Series(self._flag[pos]).isin(list(USABLE_FLAGS)).to_numpy()
            got = self._series[key] = (self._time[pos],
                                       np.where(usable, self._value[pos], np.nan))
        return got

    def rain_parts(self, code: str) -> tuple[np.ndarray, np.ndarray]:
        return self.series(code, RAIN)

    def rows(self, code: str, variable: str | None) -> pd.DataFrame:
        """``time, value, flag`` rows of one station (any flag), time-sorted, last duplicate
        kept."""
        pos = self._dedup(self._rows(code, variable))
        return pd.DataFrame({
            "time": pd.DatetimeIndex(self._time[pos].view("M8[ns]")).tz_localize("UTC"),
            "value": self._value[pos], "flag": self._flag[pos]})


def _gauge_hourly(stations: _Stations, code: str, variable: str | None, gauge: Gauge | None,
                  index: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Hourly ``level``, 0/1 ``censored`` and the silence columns of ``crisis_level_to_hourly``
    (all NaN for a telemetry gauge or other instantaneous input) of one level gauge."""
    if gauge is not None and gauge.kind == "crisis" and gauge.start_level_m is not None:
        got = crisis_level_to_hourly(stations.rows(code, variable), gauge.start_level_m, index)
        return {c: got[c].to_numpy(dtype="float64") for c in got.columns}
    t, v = stations.series(code, variable)
    ok = ~np.isnan(v)
    nan = np.full(len(index), np.nan)
    return {"level": _fresh_last(t[ok], v[ok], _ns(index)), "censored": np.zeros(len(index)),
            "silent_h": nan, "last_m": nan, "last_rise_m": nan}


def catchment_rain(gauges: pd.DataFrame, weights: Sequence[float]) -> pd.Series:
    """Weighted catchment rain (mm/h) from hourly gauge columns (NaN = unusable).

    Weights are renormalised over the gauges present each hour; the hour is NaN when the
    present gauges hold less than ``MIN_RAIN_WEIGHT`` of the total weight.
    """
    out = _weighted_rain(gauges.to_numpy(dtype="float64"), weights)
    return pd.Series(out, index=gauges.index, dtype="float64", name=RAIN)


def _weighted_rain(vals: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype="float64")
    present = ~np.isnan(vals)
    wsum = (present * w).sum(axis=1)
    num = np.nansum(np.where(present, vals, 0.0) * w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(wsum >= MIN_RAIN_WEIGHT * w.sum(), num / wsum, np.nan))


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
    return rivers_hourly(obs, [river], start=start, end=end)[river.id]


def rivers_hourly(obs: pd.DataFrame, rivers: Sequence[River], *,
                  start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
                  ) -> dict[str, pd.DataFrame]:
    """``river_hourly`` of several rivers from one observations frame: river id -> its hourly
    river frame, the same frame ``river_hourly`` gives. The frame is split by station once
    and a station read by several rivers (a shared rain gauge) is resampled once."""
    stations = _Stations(obs)
    out: dict[str, pd.DataFrame] = {}
    indexes: dict[tuple[pd.Timestamp, pd.Timestamp], pd.DatetimeIndex] = {}
    gauges_done: dict[tuple[object, ...], dict[str, np.ndarray]] = {}
    rivers = list(rivers)
    spans: dict[str, pd.DatetimeIndex] = {}
    for river in rivers:
        r_start, r_end = start, end
        if r_start is None or r_end is None:
            t, _ = stations.series(river.primary_gauge, LEVEL)
            if not len(t):
                raise FrameError(f"river {river.id}: no level_m observations for "
                                 f"{river.primary_gauge}")
            r_start = pd.Timestamp(int(t[0]), tz="UTC") if r_start is None else r_start
            r_end = pd.Timestamp(int(t[-1]), tz="UTC") if r_end is None else r_end
        span = (pd.Timestamp(r_start), pd.Timestamp(r_end))
        if span not in indexes:
            indexes[span] = _hourly_index(*span)
        spans[river.id] = indexes[span]
    # every rain gauge of every river on each index: one group-by per index
    rain: dict[tuple[int, str], np.ndarray] = {}
    for index in {id(i): i for i in spans.values()}.values():
        codes = list(dict.fromkeys(g.code for r in rivers if spans[r.id] is index
                                   for g in r.rain_gauges))
        sums = _rain_hours([stations.rain_parts(c) for c in codes], index)
        for c, row in zip(codes, sums, strict=True):
            rain[(id(index), c)] = row
    for river in rivers:
        index = spans[river.id]

        def gauge(code: str, variable: str | None, g: Gauge | None,
                  index: pd.DatetimeIndex = index) -> dict[str, np.ndarray]:
            crisis = (g.kind, g.start_level_m) if g is not None else None
            k = (id(index), code, variable, crisis)
            if k not in gauges_done:
                gauges_done[k] = _gauge_hourly(stations, code, variable, g, index)
            return gauges_done[k]

        primary = gauge(river.primary_gauge, LEVEL, river.gauge)
        cols: dict[str, np.ndarray] = {LEVEL: primary["level"], CENSORED: primary["censored"]}
        codes = list(dict.fromkeys(g.code for g in river.rain_gauges))
        gauges = (np.column_stack([rain[(id(index), c)] for c in codes]) if codes
                  else np.empty((len(index), 0)))
        cols[RAIN] = _weighted_rain(gauges, [g.weight for g in river.rain_gauges])
        gauges_by_code = {g.code: g for g in river.gauges}
        for code in river.upstream_gauges:
            col = UP_PREFIX + code
            up = gauge(code, None, gauges_by_code.get(code))
            cols[col], cols[col + CENSORED_SUFFIX] = up["level"], up["censored"]
        silence = {UNEXPLAINED: np.zeros(len(index)),   # set below for a crisis gauge
                   SILENT_H: primary["silent_h"], LAST_M: primary["last_m"],
                   LAST_RISE_M: primary["last_rise_m"]}
        cols.update({c: silence[c] for c in SILENCE_COLUMNS})   # the silence columns last
        frame = pd.DataFrame(cols, index=index)
        start_m = river.gauge.start_level_m if river.gauge.kind == "crisis" else None
        # without a start level nothing is censored by silence: nothing to explain
        if start_m is not None:
            frame[UNEXPLAINED] = _silence_checks(frame, start_m).unexplained.astype("float64")
        out[river.id] = frame
    return out
