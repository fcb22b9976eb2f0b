"""Rolling-origin backtest of one river: refit per fold, forecast from every test issue time.

Leak-free by construction:

* **Training rows** of a fold are issue times T whose inputs and targets all lie strictly
  before ``train_end``: T + max lead < ``train_end`` (in ``perfect`` mode the future-rain
  features then also end before it). Baselines are fitted on hours before ``train_end``.
* **Test issue times** are the whole hours in [``test_start``, ``test_end``) at which the
  river's level is observed; a left-censored crisis-gauge hour (``level_censored`` = 1, level
  at or below the start level) counts as observed, as it does for the live cycle. Its
  features come from ``forecast.features``, whose rows at T read only data up to T
  (property-tested in ``tests/test_features.py``); the model was trained on data before
  ``train_end`` <= ``test_start``. A censored *target* is no measurement: scoring passes the
  frame's ``level_censored`` to ``metrics.attach_observed``, which leaves those pairs unscored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.errors import InsufficientDataError, ModelError
from forecast.features import LEADS, FutureRain, build_features, targets
from forecast.frames import LEVEL
from forecast.modelling.baselines import AR2, SarimaxRain, persistence
from forecast.modelling.lgbm import LeadModels, LgbmSettings

MODELS = ("lgbm", "persistence", "ar2", "sarimax")


@dataclass(frozen=True)
class Fold:
    """One rolling-origin fold (times UTC)."""

    fold: str
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def fold_test_times(hourly: pd.DataFrame, fold: Fold) -> pd.DatetimeIndex:
    """Whole hours in [test_start, test_end) with an observed (or left-censored) level."""
    idx = pd.DatetimeIndex(hourly.index)
    sel = (idx >= fold.test_start) & (idx < fold.test_end) & hourly[LEVEL].notna().to_numpy()
    return idx[sel]


def fold_train_times(hourly: pd.DataFrame, fold: Fold, max_lead_h: int) -> pd.DatetimeIndex:
    """Issue times whose targets (up to T + max lead) lie strictly before train_end."""
    idx = pd.DatetimeIndex(hourly.index)
    return idx[idx + pd.Timedelta(hours=max_lead_h) < fold.train_end]


def backtest_river(
    hourly: pd.DataFrame,
    folds: Sequence[Fold],
    *,
    river_id: str,
    high_water_m: float,
    future_rain: FutureRain = "none",
    vintages: pd.DataFrame | None = None,
    settings: LgbmSettings | None = None,
    models: Sequence[str] = MODELS,
    leads: Sequence[int] = LEADS,
) -> pd.DataFrame:
    """Forecasts of every requested model for every fold.

    ``hourly`` is the river frame (``forecast.features.river_hourly``). Returns a long frame:
    ``river_id, fold, model, issued_at, valid_at, horizon_h, level, q10, q50, q90,
    model_variant``. Raises ``InsufficientDataError`` naming the river when a fold has too
    little clean training data.
    """
    s = settings or LgbmSettings(leads=tuple(leads))
    idx = pd.DatetimeIndex(hourly.index)
    feats = build_features(hourly, idx, future_rain=future_rain, vintages=vintages,
                           catchment_id=river_id)
    tgt = targets(hourly, idx, leads)
    out = []
    for fold in folds:
        t_train = fold_train_times(hourly, fold, max(leads))
        t_test = fold_test_times(hourly, fold)
        if not len(t_test):
            raise InsufficientDataError(
                f"river {river_id}: fold {fold.fold} has no observed level in its test span")
        X_test = feats.loc[t_test]
        hist = hourly.loc[hourly.index < fold.train_end]
        for model in models:
            try:
                fc = _one_model(model, feats.loc[t_train], tgt.loc[t_train], X_test, hist,
                                hourly, high_water_m, s, f"river {river_id} fold {fold.fold}")
            except InsufficientDataError:
                raise
            except ModelError as exc:
                raise ModelError(f"river {river_id} fold {fold.fold} {model}: {exc}") from exc
            fc.insert(0, "model", model)
            fc.insert(0, "fold", fold.fold)
            out.append(fc)
    res = pd.concat(out, ignore_index=True)
    res.insert(0, "river_id", river_id)
    res["valid_at"] = res["issued_at"] + pd.to_timedelta(res["horizon_h"], unit="h")
    cols = ["river_id", "fold", "model", "issued_at", "valid_at", "horizon_h", "level", "q10",
            "q50", "q90", "model_variant"]
    return res[cols]


def _one_model(model: str, X_train: pd.DataFrame, Y_train: pd.DataFrame, X_test: pd.DataFrame,
               hist: pd.DataFrame, hourly: pd.DataFrame, high_water_m: float,
               settings: LgbmSettings, name: str) -> pd.DataFrame:
    leads = settings.leads
    if model == "lgbm":
        lm = LeadModels.train(X_train, Y_train, high_water_m=high_water_m, settings=settings,
                              name=name)
        return lm.predict(X_test).drop(columns=["inputs"])
    if model == "persistence":
        return persistence(X_test, leads)
    if model == "ar2":
        return AR2().fit(hist).predict(hourly, pd.DatetimeIndex(X_test.index), leads)
    if model == "sarimax":
        return SarimaxRain().fit(hist).predict(hourly, X_test, leads)
    raise ModelError(f"unknown model {model!r}; choose from {MODELS}")


def rolling_folds(start: pd.Timestamp, end: pd.Timestamp, n_folds: int,
                  test_days: float) -> list[Fold]:
    """``n_folds`` consecutive test spans of ``test_days`` ending at ``end``; each trains on
    everything before its own test start (expanding window)."""
    span = pd.Timedelta(days=test_days)
    starts = [end - span * (n_folds - i) for i in range(n_folds)]
    if starts[0] <= start:
        raise ModelError("folds start before the data; use fewer or shorter folds")
    return [Fold(str(i + 1), t0, t0, t0 + span) for i, t0 in enumerate(starts)]


def summary_table(scores: pd.DataFrame, leads: Sequence[int] = (1, 3, 6)) -> str:
    """Plain-text table of RMSE (all/event) and skill per model at the given leads."""
    cols = ["model", "horizon_h", "rmse", "rmse_event", "skill", "skill_event", "nse_event",
            "coverage_high"]
    t = scores[scores["horizon_h"].isin(list(leads))]
    t = t[[c for c in cols if c in t.columns]]
    return str(t.to_string(index=False, float_format=lambda v: f"{v:.3f}"
                           if np.isfinite(v) else "nan"))
