"""Judging a river model: rolling-origin folds, training from a river frame, backtest sections
for manifests and a fixed hold-out evaluator for promotion.

No database: everything takes frames (``features.river_hourly``) and returns frames, models or
manifest sections, so notebooks, benchmarks and ``pipeline.training`` share it.
``train_frames`` judges (optional) and trains one river; ``holdout_evaluator`` scores fixed
models on one hold-out (the champion–challenger re-score).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from forecast.catalogue import River
from forecast.errors import InsufficientDataError
from forecast.features import CENSORED, FutureRain, build_features, targets
from forecast.frames import LEVEL
from forecast.modelling import registry
from forecast.modelling.backtest import Fold, backtest_river
from forecast.modelling.lgbm import LeadModels, LgbmSettings, with_transform
from forecast.modelling.metrics import attach_observed, event_threshold, event_windows, lead_scores
from forecast.modelling.report import BacktestRun

JUDGE_FRACTION = 0.2   # the last 20 % of the window is the judging backtest's test span
JUDGE_FOLDS = 2        # rolling-origin folds inside it (each refits on everything before it)
WARMUP_H = 48          # rain_48h needs two days of history before the first training row
BASELINES: tuple[str, ...] = ("persistence", "ar2")


@dataclass
class TrainingRun:
    """A trained (not yet registered) river model with what judged it.

    ``hourly``: the river frame (``features.river_hourly``); ``X``: the training feature rows;
    ``backtest``: the manifest's backtest section (spec, per-lead scores); ``evaluation``: the
    judging backtest's forecasts for reports (None when not judged).
    """

    river: River
    hourly: pd.DataFrame
    X: pd.DataFrame
    models: LeadModels
    window: tuple[datetime, datetime]
    future_rain: FutureRain
    backtest: dict[str, Any]
    evaluation: BacktestRun | None = None

    @property
    def data_sha256(self) -> str:
        """sha256 of the training feature rows."""
        return registry.data_hash(self.X)


def judge_folds(start: datetime, end: datetime, n_folds: int = JUDGE_FOLDS) -> list[Fold]:
    """Consecutive test folds covering the last ``JUDGE_FRACTION`` of [start, end), on whole
    hours; each trains on everything before its own start (expanding window)."""
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    span = (t1 - t0) * JUDGE_FRACTION / n_folds
    edges = [(t1 - span * (n_folds - i)).floor("h") for i in range(n_folds)] + [t1]
    return [Fold(f"judge{i + 1}", edges[i], edges[i], edges[i + 1]) for i in range(n_folds)]


def _per_lead(scores: pd.DataFrame, model: str, col: str) -> dict[str, float | None]:
    s = scores[scores["model"] == model].set_index("horizon_h")
    if col not in s.columns:
        return {}
    return {str(h): (None if pd.isna(v) else float(v)) for h, v in s[col].items()}


def _scores_section(scores: pd.DataFrame, models: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {c: _per_lead(scores, "lgbm", c) for c in
                           ("rmse", "rmse_event", "skill", "skill_event", "nse_event",
                            "coverage_high")}
    out["baselines"] = {m: {c: _per_lead(scores, m, c) for c in ("rmse", "rmse_event")}
                        for m in models if m != "lgbm"}
    return out


def river_threshold(river: River, hourly: pd.DataFrame) -> float:
    """Level (m) defining flood events and high water: the river's lowest threshold (or a
    high quantile of its record when it has none; ``metrics.event_threshold``)."""
    ladder = river.thresholds.ladder()
    return event_threshold(hourly[LEVEL], ladder[0][1] if ladder else None)


def judged_section(hourly: pd.DataFrame, fc: pd.DataFrame, folds: Sequence[Fold],
            future_rain: FutureRain, threshold: float, models: Sequence[str]) -> dict[str, Any]:
    """The manifest's backtest section of judging forecasts ``fc`` (``model`` column)."""
    level = hourly[LEVEL]
    events = event_windows(level, threshold)
    scores = lead_scores(attach_observed(fc, level, hourly.get(CENSORED)), events, threshold)
    return {"spec": {"folds": [[f.train_end.isoformat(), f.test_end.isoformat()] for f in folds],
                     "future_rain": future_rain, "event_threshold_m": threshold,
                     "models": list(models)},
            "n_events": int(events[events > 0].nunique()),
            **_scores_section(scores, models)}


def train_frames(river: River, hourly: pd.DataFrame, *, vintages: pd.DataFrame | None,
                 start: datetime, end: datetime, settings: LgbmSettings | None = None,
                 judge: bool = True, future_rain: FutureRain = "archive",
                 baselines: Sequence[str] = BASELINES, n_folds: int = JUDGE_FOLDS,
                 folds: Sequence[Fold] | None = None, simulated: bool = False) -> TrainingRun:
    """Judge (optional) and train one river from its hourly frame.

    ``hourly``: river frame over [start, end] (``level_m`` m, ``rain_mm`` mm/h, ``up_*``);
    ``vintages``: rain-vintage frame for ``future_rain="archive"`` (catchment id = river id).
    ``folds`` replaces the default judging folds (``judge_folds``), e.g. to put a known flood
    in the test span. The event threshold is the river's lowest threshold (m). Raises
    ``InsufficientDataError`` when the window has too little clean data.
    """
    settings = with_transform(settings, river.target_transform)
    threshold = river_threshold(river, hourly)
    if future_rain == "archive" and vintages is None:
        future_rain = "none"
    backtest: dict[str, Any] = {}
    evaluation = None
    if judge:
        folds = list(folds) if folds is not None else judge_folds(start, end, n_folds)
        models = ("lgbm", *baselines)
        fc = backtest_river(hourly, folds, river_id=river.id, high_water_m=threshold,
                            future_rain=future_rain, vintages=vintages, settings=settings,
                            models=models)
        backtest = judged_section(hourly, fc, folds, future_rain, threshold, models)
        evaluation = BacktestRun(river=river, hourly=hourly, forecasts=fc,
                                 threshold_m=threshold, future_rain=future_rain,
                                 simulated=simulated)
    times = pd.DatetimeIndex(hourly.index[WARMUP_H:-6])
    if not len(times):
        raise InsufficientDataError(f"river {river.id}: window too short to train")
    X = build_features(hourly, times, future_rain=future_rain, vintages=vintages,
                       catchment_id=river.id)
    models_ = LeadModels.train(X, targets(hourly, times), high_water_m=threshold,
                               settings=settings, name=f"river {river.id}")
    return TrainingRun(river, hourly, X, models_, (start, end), future_rain, backtest,
                       evaluation)


def holdout_evaluator(river: River, hourly: pd.DataFrame, *, vintages: pd.DataFrame | None,
                      start: datetime, end: datetime,
                      future_rain: FutureRain = "archive") -> registry.Evaluator:
    """Scores a fixed model on the last ``JUDGE_FRACTION`` of [start, end): every whole hour
    with an observed level is an issue time; returns per-lead ``rmse`` and ``rmse_event`` (m)."""
    split = judge_folds(start, end, 1)[0].test_start
    if future_rain == "archive" and vintages is None:
        future_rain = "none"
    idx = pd.DatetimeIndex(hourly.index)
    times = idx[(idx >= split) & hourly[LEVEL].notna().to_numpy()]
    X = build_features(hourly, times, future_rain=future_rain, vintages=vintages,
                       catchment_id=river.id)
    ladder = river.thresholds.ladder()
    threshold = event_threshold(hourly[LEVEL], ladder[0][1] if ladder else None)
    events = event_windows(hourly[LEVEL], threshold)

    def evaluate(models: LeadModels) -> Mapping[str, Mapping[str, float | None]]:
        fc = models.predict(X).assign(model="lgbm")
        fc["valid_at"] = fc["issued_at"] + pd.to_timedelta(fc["horizon_h"], unit="h")
        scores = lead_scores(attach_observed(fc, hourly[LEVEL], hourly.get(CENSORED)), events,
                             threshold)
        return {c: _per_lead(scores, "lgbm", c) for c in ("rmse", "rmse_event")}

    return evaluate
