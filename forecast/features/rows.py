"""Feature rows known at the issue time T, and targets (rules in the package docstring,
``forecast.features``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecast.errors import FrameError
from forecast.features.columns import (
    API_DECAY_PER_H,
    CENSORED,
    CENSORED_SUFFIX,
    EXTRA_CHANGE_H,
    FC_RAIN_FEATURES,
    FUTURE_RAIN_MODES,
    JST_OFFSET_H,
    LEADS,
    LEVEL_CHANGE_H,
    PAST_RAIN_FEATURES,
    RAIN_SUM_H,
    UNEXPLAINED,
    UP_PREFIX,
    FutureRain,
    censored_column,
    extra_columns,
)
from forecast.frames import LEVEL, RAIN


def decayed_sum(x: np.ndarray, decay: float) -> np.ndarray:
    """``y[t] = x[t] + decay * y[t - 1]`` with ``y[-1] = 0``, down the first axis (the
    antecedent precipitation index). The same floating-point operations, in the same order, as
    ``scipy.signal.lfilter([1], [1, -decay], x)``, so the same bits, without importing SciPy;
    a 2-D ``x`` (hours x series) runs the recursion on every column at once."""
    x = np.asarray(x, dtype="float64")
    if x.ndim == 1:
        steps = itertools.accumulate(x.tolist(), lambda y, v: v + decay * y, initial=0.0)
        return np.fromiter(steps, dtype="float64", count=len(x) + 1)[1:]
    out = np.empty_like(x)
    y = np.zeros(x.shape[1:])
    for i in range(len(x)):
        y = x[i] + decay * y
        out[i] = y
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
    iss = _ns(v["issued_at"])
    val = _ns(v["valid_at"])
    value = v["value"].to_numpy(dtype="float64")
    keep = (iss != _NAT) & (val != _NAT)          # a row without both times is in no group
    iss, val, value = iss[keep], val[keep], value[keep]
    if not len(iss):
        return out
    # one value per (issued_at, valid_at): its last non-missing one (NaN if none)
    order = np.lexsort((val, iss))
    iss, val, value = iss[order], val[order], value[order]
    first = np.ones(len(iss), dtype=bool)
    first[1:] = (iss[1:] != iss[:-1]) | (val[1:] != val[:-1])
    starts = np.flatnonzero(first)
    last_ok = np.maximum.reduceat(np.where(np.isnan(value), -1, np.arange(len(value))), starts)
    g_iss, g_val = iss[starts], val[starts]
    g_value = np.where(last_ok >= starts, value[np.clip(last_ok, 0, None)], np.nan)
    issued = np.unique(g_iss)
    it = _ns(issue_times)
    pos = issued.searchsorted(it, side="right") - 1   # the latest vintage issued <= T
    vals = np.unique(g_val)
    g_key = issued.searchsorted(g_iss) * len(vals) + vals.searchsorted(g_val)  # sorted
    hourly = np.full((len(issue_times), len(LEADS)), np.nan)
    for j, h in enumerate(LEADS):
        target = it + pd.Timedelta(hours=h).value
        r = np.clip(vals.searchsorted(target), 0, len(vals) - 1)
        key = np.clip(pos, 0, None) * len(vals) + r
        loc = np.clip(g_key.searchsorted(key), 0, len(g_key) - 1)
        got = (pos >= 0) & (vals[r] == target) & (g_key[loc] == key)
        hourly[got, j] = g_value[loc[got]]
    # NaN propagates to longer sums
    return pd.DataFrame(np.cumsum(hourly, axis=1), index=issue_times,
                        columns=list(FC_RAIN_FEATURES))


_NAT = np.iinfo(np.int64).min


def _ns(times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch (UTC) of tz-aware times, whatever their unit."""
    return np.asarray(pd.DatetimeIndex(times).as_unit("ns").asi8)


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
    return build_features_many([hourly], issue_times, future_rain=future_rain,
                               vintages=vintages, catchment_ids=[catchment_id])[0]


def build_features_many(
    hourlies: Sequence[pd.DataFrame],
    issue_times: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    *,
    future_rain: FutureRain = "none",
    vintages: pd.DataFrame | None = None,
    catchment_ids: Sequence[str] | None = None,
) -> list[pd.DataFrame]:
    """``build_features`` of several river frames at the same issue times (``catchment_ids``:
    each frame's catchment for ``archive`` rain): the same frames, in order. Frames on the same
    hourly index are computed together, one column per river, by the same column-wise
    operations (shifts, rolling sums, the API recursion), so the values are the same bits."""
    if future_rain not in FUTURE_RAIN_MODES:
        raise FrameError(f"future_rain must be one of {FUTURE_RAIN_MODES}, got {future_rain!r}")
    idxs = [_check_hourly(h) for h in hourlies]
    it = _as_issue_index(issue_times)
    ids = list(catchment_ids) if catchment_ids is not None else [""] * len(hourlies)
    out: list[pd.DataFrame | None] = [None] * len(hourlies)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, idx in enumerate(idxs):
        groups.setdefault((int(idx.asi8[0]) if len(idx) else 0, len(idx)), []).append(i)
    by_catchment: dict[str, pd.DataFrame] = {}
    none_of_them = vintages
    if future_rain == "archive" and vintages is not None and len(hourlies) > 1 and len(vintages):
        # each river's archive_rain then filters its own catchment's rows, not every row
        by_catchment = {str(k): vintages.iloc[v] for k, v in
                        vintages.groupby("catchment_id", sort=False).indices.items()}
        none_of_them = vintages.iloc[:0]
    for members in groups.values():
        idx = idxs[members[0]]
        for i, cols in zip(members, _feature_columns([hourlies[i] for i in members], idx, it),
                           strict=True):
            own = by_catchment.get(ids[i], none_of_them) if by_catchment else vintages
            out[i] = _finish(cols, hourlies[i], it, future_rain, own, ids[i])
    return [f for f in out if f is not None]


def _feature_columns(hourlies: Sequence[pd.DataFrame], idx: pd.DatetimeIndex,
                     it: pd.DatetimeIndex) -> list[dict[str, np.ndarray]]:
    """The past-looking feature columns at the issue times ``it`` of river frames sharing the
    hourly index ``idx``: every operation runs once on a frame with one column per river."""
    n = len(hourlies)
    pos = idx.get_indexer(it)
    outside = pos < 0

    def at(values: np.ndarray) -> np.ndarray:   # rows at the issue times (reindex)
        values = np.asarray(values, dtype="float64")
        if not len(values):
            return np.full((len(it), *values.shape[1:]), np.nan)
        got = values[np.clip(pos, 0, None)]
        got[outside] = np.nan
        return got

    def wide(column: str) -> pd.DataFrame:
        return pd.DataFrame({i: h[column].astype("float64").to_numpy()
                             for i, h in enumerate(hourlies)}, index=idx)

    level, rain = wide(LEVEL), wide(RAIN)
    cols: list[dict[str, np.ndarray]] = [
        {"level_m": lv, CENSORED: at(censored_column(h, CENSORED).to_numpy())}
        for lv, h in zip(at(level.to_numpy()).T, hourlies, strict=True)]
    for k in LEVEL_CHANGE_H:
        d = at((level - level.shift(k)).to_numpy())
        for i in range(n):
            cols[i][f"d_level_{k}h"] = d[:, i]
    sums = {}
    for k in RAIN_SUM_H:
        sums[k] = rain.rolling(k, min_periods=max(1, int(0.75 * k))).sum().to_numpy()
        got = at(sums[k])
        for i in range(n):
            cols[i][f"rain_{k}h"] = got[:, i]
    # API treats a missing hour as dry, so mask it where recent rain is mostly unknown.
    filled = rain.fillna(0.0).to_numpy()
    api = (decayed_sum(filled[:, 0], API_DECAY_PER_H)[:, None] if n == 1
           else decayed_sum(filled, API_DECAY_PER_H))
    api = at(np.where(np.isnan(sums[24]), np.nan, api))
    for i in range(n):
        cols[i]["api"] = api[:, i]
    extras = [(i, c) for i, h in enumerate(hourlies) for c in extra_columns(h)]
    if extras:
        x = pd.DataFrame({j: hourlies[i][c].astype("float64").to_numpy()
                          for j, (i, c) in enumerate(extras)}, index=idx)
        changes = {k: at((x - x.shift(k)).to_numpy()) for k in EXTRA_CHANGE_H}
        now = at(x.to_numpy())
        for j, (i, c) in enumerate(extras):
            cols[i][c] = now[:, j]
            cols[i][c + CENSORED_SUFFIX] = at(
                censored_column(hourlies[i], c + CENSORED_SUFFIX).to_numpy())
            for k in EXTRA_CHANGE_H:
                cols[i][f"d_{c}_{k}h"] = changes[k][:, j]
    doy = it.dayofyear.to_numpy(dtype="float64")
    calendar = {"doy_sin": np.sin(2 * np.pi * doy / 365.25),
                "doy_cos": np.cos(2 * np.pi * doy / 365.25),
                "hour_jst": ((it.hour + JST_OFFSET_H) % 24).to_numpy().astype("float64")}
    for river_cols in cols:
        river_cols.update(calendar)
    return cols


def _finish(cols: dict[str, np.ndarray], hourly: pd.DataFrame, it: pd.DatetimeIndex,
            future_rain: FutureRain, vintages: pd.DataFrame | None, catchment_id: str
            ) -> pd.DataFrame:
    """The feature frame: the past-looking columns, then the forecast-rain ones."""
    rain: pd.DataFrame | None = None
    if future_rain == "perfect":
        rain = perfect_rain(hourly, it)
    elif future_rain == "archive":
        if vintages is None:
            raise FrameError("future_rain='archive' needs a rain-vintage frame")
        rain = archive_rain(vintages, catchment_id, it)
    if rain is None:
        feats = pd.DataFrame(cols, index=it)
    elif it.is_unique:   # a join on the same unique index appends the columns
        feats = pd.DataFrame({**cols, **{c: rain[c].to_numpy() for c in rain.columns}},
                             index=it)
    else:
        feats = pd.DataFrame(cols, index=it).join(rain)
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
    target = level.where(censored_column(hourly, UNEXPLAINED) == 0.0)
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
