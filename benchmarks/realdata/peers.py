"""Peer libraries on the same folds and hourly inputs: Nixtla mlforecast and skforecast.

Both use LightGBM with the direct strategy (one model per lead 1..6 h) on the hourly river frame
of ``forecast.features.river_hourly`` (the very inputs our model gets). Each library runs in two
configurations:

* ``doc``: as the documentation suggests: raw level target, lags 1..24 h; in ``perfect`` mode
  the hourly rain at the valid time is an exogenous input (its future values are given), in
  ``none`` mode there is no exogenous input.
* ``strong``: what a competent user would reach: the target differenced once (mlforecast
  ``target_transforms=[Differences([1])]``, skforecast ``differentiation=1``), lags 1..24 h and
  rain sums as exogenous inputs. Both libraries read an exogenous value *at the valid time*
  T+h (checked for mlforecast 1.1.0 and skforecast 0.26.0). In ``perfect`` mode the inputs are
  rain sums over 1/3/6/12/24 h ending at the valid time (future rain taken from the
  observations); in ``none`` mode they are sums over 6/12/24/48 h ending 6 h before the valid
  time, so for every lead <= 6 h they only use rain known at the issue time T.

Gaps in the level are forward-filled (causal) because neither library accepts NaN in the target
history; missing rain counts as 0 (as in our SARIMAX baseline). Each fold fits on the hours
before ``train_end`` and forecasts from every test issue time using only the history up to it:

* mlforecast: one ``predict(h, new_df=..., X_df=...)`` call in which every issue time is its own
  series holding the last ``WINDOW_H`` hours (the library's documented way to forecast from new
  history without refitting);
* skforecast: the predictors for every issue time are the library's own
  ``create_train_X_y`` rows on the full series (row of origin T for step k), fed to the fitted
  per-step estimators and, when differenced, integrated like ``predict`` does. This equals
  ``predict(steps, last_window=..., exog=...)`` at each issue time (checked on sampled issue times
  by ``check_skforecast``) but runs in one pass instead of ~20 ms per call.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from forecast.features import LEADS
from forecast.frames import LEVEL, RAIN
from forecast.modelling.backtest import Fold, fold_test_times

PEERS = ("mlforecast_doc", "mlforecast_strong", "skforecast_doc", "skforecast_strong")
LAGS = 24
WINDOW_H = LAGS + 2
SUM_PERFECT_H = (1, 3, 6, 12, 24)
SUM_NONE_H = (6, 12, 24, 48)
NONE_SHIFT_H = max(LEADS)


def _estimator() -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(random_state=0, verbose=-1, n_jobs=1)


def peer_inputs(hourly: pd.DataFrame, config: str, mode: str) -> tuple[pd.Series, pd.DataFrame]:
    """Level (m, forward-filled) and the exogenous frame (values at each hour as valid time).

    Both are indexed by naive UTC hours and padded by ``max(LEADS)`` hours past the end (level
    repeated, rain 0) so forecasts can be issued up to the last observed hour.
    """
    idx = pd.DatetimeIndex(hourly.index).tz_convert("UTC").tz_localize(None)
    pad = pd.date_range(idx[-1] + pd.Timedelta(hours=1), periods=max(LEADS), freq="h")
    full = pd.DatetimeIndex(idx.append(pad), freq="h")  # skforecast wants a regular freq
    level = pd.Series(hourly[LEVEL].to_numpy(dtype="float64"), index=idx).reindex(full).ffill()
    rain = pd.Series(np.nan_to_num(hourly[RAIN].to_numpy(dtype="float64")), index=idx
                     ).reindex(full, fill_value=0.0)
    ex: dict[str, pd.Series] = {}
    if config == "doc" and mode == "perfect":
        ex["rain"] = rain
    elif config == "strong":
        if mode == "perfect":
            for w in SUM_PERFECT_H:
                ex[f"rain_sum_{w}h"] = rain.rolling(w, min_periods=1).sum()
        else:
            for w in SUM_NONE_H:
                ex[f"rain_sum_{w}h_lag{NONE_SHIFT_H}"] = (
                    rain.rolling(w, min_periods=1).sum().shift(NONE_SHIFT_H).fillna(0.0))
    exog = pd.DataFrame(ex, index=full)
    return level.set_axis(full), exog


def _frame(issued: pd.DatetimeIndex, point: np.ndarray, leads: Sequence[int]) -> pd.DataFrame:
    n, m = point.shape
    out = pd.DataFrame({"issued_at": issued.repeat(m),
                        "horizon_h": np.tile(np.asarray(leads, dtype="int64"), n),
                        "level": point.ravel()})
    out["valid_at"] = out["issued_at"] + pd.to_timedelta(out["horizon_h"], unit="h")
    out["q50"] = out["level"]
    out["q10"] = np.nan
    out["q90"] = np.nan
    return out


# ------------------------------------------------------------------------ mlforecast
def mlforecast_fold(level: pd.Series, exog: pd.DataFrame, train_end: pd.Timestamp,
                    issue: pd.DatetimeIndex, config: str, leads: Sequence[int] = LEADS
                    ) -> np.ndarray:
    """Fit on hours < ``train_end`` (naive UTC) and forecast from each issue time (naive UTC).

    Returns levels (m), shape (len(issue), len(leads)).
    """
    from mlforecast import MLForecast
    from mlforecast.target_transforms import Differences

    hmax = max(leads)
    df = pd.DataFrame({"unique_id": "r", "ds": level.index, "y": level.to_numpy()})
    df = pd.concat([df, exog.reset_index(drop=True)], axis=1)
    train = df[(df["ds"] < train_end) & df["y"].notna()]
    fc = MLForecast(models={"m": _estimator()}, freq="h", lags=list(range(1, LAGS + 1)),
                    target_transforms=[Differences([1])] if config == "strong" else None)
    fc.fit(train, max_horizon=hmax, static_features=[])
    pos = level.index.get_indexer(issue)
    hist = pos[:, None] + np.arange(-WINDOW_H + 1, 1)[None, :]
    fut = pos[:, None] + np.arange(1, hmax + 1)[None, :]
    uid = np.repeat(np.arange(len(issue)).astype(str), WINDOW_H)
    new_df = pd.DataFrame({"unique_id": uid, "ds": level.index[hist.ravel()],
                           "y": level.to_numpy()[hist.ravel()]})
    x_df = None
    if exog.shape[1]:
        new_df = pd.concat([new_df, exog.iloc[hist.ravel()].reset_index(drop=True)], axis=1)
        x_df = exog.iloc[fut.ravel()].reset_index(drop=True)
        x_df.insert(0, "ds", level.index[fut.ravel()])
        x_df.insert(0, "unique_id", np.repeat(np.arange(len(issue)).astype(str), hmax))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = fc.predict(hmax, new_df=new_df, X_df=x_df)
    pred["k"] = pred["unique_id"].astype(int)
    pred = pred.sort_values(["k", "ds"])
    point = pred["m"].to_numpy(dtype="float64").reshape(len(issue), hmax)
    return np.asarray(point[:, [h - 1 for h in leads]], dtype="float64")


# ------------------------------------------------------------------------ skforecast
def skforecast_fit(level: pd.Series, exog: pd.DataFrame, train_end: pd.Timestamp,
                   config: str, steps: int = max(LEADS)) -> object:
    """A fitted ``ForecasterDirect`` (LightGBM) on hours < ``train_end`` (naive UTC)."""
    from skforecast.direct import ForecasterDirect

    y = level[level.index < train_end]
    first = y.first_valid_index()
    y = y.loc[first:]
    f = ForecasterDirect(estimator=_estimator(), steps=steps, lags=LAGS,
                         differentiation=1 if config == "strong" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f.fit(y, exog=exog.loc[y.index] if exog.shape[1] else None, suppress_warnings=True)
    return f


def skforecast_predict_all(f: object, level: pd.Series, exog: pd.DataFrame,
                           issue: pd.DatetimeIndex, leads: Sequence[int] = LEADS) -> np.ndarray:
    """Forecasts (m), shape (len(issue), len(leads)), from every issue time (naive UTC) with
    the history up to it, via the library's training-matrix rows (see module docstring)."""
    steps = max(leads)
    first = level.first_valid_index()
    y = level.loc[first:]
    ex = exog.loc[y.index] if exog.shape[1] else None
    diff = getattr(f, "differentiation", None) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, Y = f.create_train_X_y(y, exog=ex, suppress_warnings=True)  # type: ignore[attr-defined]
        step_pred = np.full((len(issue), steps), np.nan)
        for k in range(1, steps + 1):
            Xk, _ = f.filter_train_X_y_for_step(k, X, Y)  # type: ignore[attr-defined]
            est = f.estimators_[k]  # type: ignore[attr-defined]
            # row of step k is indexed by its target time T + k
            rows = Xk.index.get_indexer(issue + pd.Timedelta(hours=k))
            ok = rows >= 0
            step_pred[ok, k - 1] = est.predict(Xk.iloc[rows[ok]])
    if diff:
        base = y.reindex(issue).to_numpy(dtype="float64")
        point = base[:, None] + np.cumsum(step_pred, axis=1)
    else:
        point = step_pred
    return np.asarray(point[:, [h - 1 for h in leads]], dtype="float64")


def check_skforecast(f: object, level: pd.Series, exog: pd.DataFrame,
                     issue: pd.DatetimeIndex, fast: np.ndarray, n: int = 3) -> float:
    """Largest |difference| (m) between ``skforecast_predict_all`` rows and the library's own
    ``predict(last_window=..., exog=...)`` at ``n`` evenly spaced issue times."""
    steps = max(LEADS)
    worst = 0.0
    for i in np.linspace(0, len(issue) - 1, n).astype(int):
        T = issue[i]
        lw = level.loc[:T].iloc[-(LAGS + 1):]
        ex = exog.loc[T + pd.Timedelta(hours=1):].iloc[:steps] if exog.shape[1] else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = f.predict(steps, last_window=lw, exog=ex,  # type: ignore[attr-defined]
                          suppress_warnings=True).to_numpy()
        worst = max(worst, float(np.nanmax(np.abs(p - fast[i]))))
    return worst


def run_peers(hourly: pd.DataFrame, folds: Sequence[Fold], mode: str, *, river_id: str,
              peers: Sequence[str] = PEERS, leads: Sequence[int] = LEADS,
              check: bool = True) -> pd.DataFrame:
    """Forecasts of every peer config for every fold, issued at ``fold_test_times``.

    Returns ``river_id, fold, model, issued_at, valid_at (UTC), horizon_h, level, q10, q50,
    q90`` (m; q10/q90 NaN: the peers give no band here).
    """
    out = []
    for name in peers:
        lib, config = name.split("_")
        level, exog = peer_inputs(hourly, config, mode)
        for fold in folds:
            t_test = fold_test_times(hourly, fold)
            issue = pd.DatetimeIndex(t_test).tz_convert("UTC").tz_localize(None)
            issue = issue[level.index.get_indexer(issue) >= WINDOW_H]
            te = fold.train_end.tz_convert("UTC").tz_localize(None)
            if lib == "mlforecast":
                point = mlforecast_fold(level, exog, te, issue, config, leads)
            else:
                f = skforecast_fit(level, exog, te, config)
                point = skforecast_predict_all(f, level, exog, issue, leads)
                if check:
                    gap = check_skforecast(f, level, exog, issue, point)
                    if gap > 1e-6:
                        raise AssertionError(f"skforecast fast path differs by {gap:.2e} m")
            fc = _frame(issue.tz_localize("UTC"), point, leads)
            fc.insert(0, "model", name)
            fc.insert(0, "fold", fold.fold)
            out.append(fc)
    res = pd.concat(out, ignore_index=True)
    res.insert(0, "river_id", river_id)
    return res[["river_id", "fold", "model", "issued_at", "valid_at", "horizon_h", "level",
                "q10", "q50", "q90"]]
