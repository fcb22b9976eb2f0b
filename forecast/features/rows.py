"""Feature rows known at the issue time T, and targets (rules in the package docstring,
``forecast.features``)."""

from __future__ import annotations

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

_DECAY_BLOCK = 128   # decay**-127 stays below 1e3 for API_DECAY_PER_H: no loss of precision


def decayed_sum(x: np.ndarray, decay: float) -> np.ndarray:
    """``y[t] = x[t] + decay * y[t - 1]`` with ``y[-1] = 0`` (the antecedent precipitation index;
    what ``scipy.signal.lfilter([1], [1, -decay], x)`` computes, without importing SciPy).

    Block by block: inside a block starting at ``s``, ``y[s + k] = decay**k * (decay * y[s - 1]
    + sum_{j <= k} x[s + j] * decay**-j)``, a cumulative sum, so the Python loop runs once per
    ``_DECAY_BLOCK`` hours."""
    x = np.asarray(x, dtype="float64")
    out = np.empty(len(x))
    k = np.arange(_DECAY_BLOCK, dtype="float64")
    up, down = decay ** k, decay ** -k
    prev = 0.0
    for s in range(0, len(x), _DECAY_BLOCK):
        m = min(_DECAY_BLOCK, len(x) - s)
        y = up[:m] * (decay * prev + np.cumsum(x[s:s + m] * down[:m]))
        out[s:s + m] = y
        prev = float(y[-1])
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
    cols: dict[str, pd.Series] = {"level_m": level, CENSORED: censored_column(hourly, CENSORED)}
    for k in LEVEL_CHANGE_H:
        cols[f"d_level_{k}h"] = level - level.shift(k)
    for k in RAIN_SUM_H:
        cols[f"rain_{k}h"] = rain.rolling(k, min_periods=max(1, int(0.75 * k))).sum()
    # API treats a missing hour as dry, so mask it where recent rain is mostly unknown.
    api = decayed_sum(rain.fillna(0.0).to_numpy(), API_DECAY_PER_H)
    cols["api"] = pd.Series(api, index=idx).where(cols["rain_24h"].notna())
    for c in extra_columns(hourly):
        x = hourly[c].astype("float64")
        cols[c] = x
        cols[c + CENSORED_SUFFIX] = censored_column(hourly, c + CENSORED_SUFFIX)
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
