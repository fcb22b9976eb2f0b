"""Training service: stored observations and rain vintages → features → LeadModels → registry.

``train_river`` trains one river on a window of stored data, first judging it with a leak-free
rolling-origin backtest on the last part of the window (``JUDGE_FOLDS`` folds refitted on
everything before each fold; our model against persistence and AR(2); the same folds every time
for the same window, so champion and challenger are comparable), then trains the final model
on the whole window and registers the version with its manifest. ``train_all`` does every river
of a catalogue, recording failures and going on. ``train_frames`` is the same without the
database (notebooks, benchmarks); ``promote_river`` promotes with both models re-scored on one
hold-out when their judging backtests differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue, River
from forecast.errors import ForecastError, InsufficientDataError
from forecast.features import FutureRain, build_features, river_hourly, targets
from forecast.frames import LEVEL
from forecast.modelling import registry
from forecast.modelling.backtest import Fold, backtest_river
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.modelling.metrics import attach_observed, event_threshold, event_windows, lead_scores
from forecast.modelling.report import BacktestRun, write_report
from forecast.storage import repository
from forecast.storage.observations import read_observations

log = logging.getLogger(__name__)

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


@dataclass
class TrainReport:
    """Registered versions per river and the rivers that failed (with the reason)."""

    versions: dict[str, registry.Version] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


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
    threshold = event_threshold(hourly[LEVEL], river.thresholds.ladder()[0][1]
                                if river.thresholds.ladder() else None)
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
        level = hourly[LEVEL]
        events = event_windows(level, threshold)
        scores = lead_scores(attach_observed(fc, level), events, threshold)
        backtest = {"spec": {"folds": [[f.train_end.isoformat(), f.test_end.isoformat()]
                                       for f in folds],
                             "future_rain": future_rain, "event_threshold_m": threshold,
                             "models": list(models)},
                    "n_events": int(events[events > 0].nunique()),
                    **_scores_section(scores, models)}
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


def _load(engine: Engine, river: River, start: datetime, end: datetime,
          rain_product: str | None) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    obs = read_observations(engine, station_ids=river.station_codes, start=start,
                            end=end + timedelta(seconds=1))
    rain = repository.read_rain_vintages(engine, product=rain_product, issued_after=start,
                                         issued_before=end, catchment_id=river.id)
    hourly = river_hourly(obs, river, start=pd.Timestamp(start), end=pd.Timestamp(end))
    simulated = bool((obs["source"] == "simulated").any()) if len(obs) else False
    return hourly, rain, simulated


def train_river(engine: Engine, river: River, *, end: datetime, days: float, models_root: Path,
                now: datetime, settings: LgbmSettings | None = None, judge: bool = True,
                rain_product: str | None = None, report_dir: Path | None = None,
                actor: str = "forecast") -> registry.Version:
    """Train ``river`` on stored data in (end - days, end] and register the version (also in
    the database). ``report_dir``: write the judging backtest's HTML report to
    ``report_dir/<river>/<version>/``."""
    start = end - timedelta(days=days)
    hourly, rain, simulated = _load(engine, river, start, end, rain_product)
    run = train_frames(river, hourly, vintages=rain, start=start, end=end, settings=settings,
                       judge=judge, simulated=simulated)
    version = registry.register(
        models_root, river.id, run.models, created_at=now, window=(start, end),
        data_sha256=run.data_sha256, backtest=run.backtest, future_rain=run.future_rain,
        upstream=list(river.upstream_gauges), source="simulated" if simulated else "stored",
        engine=engine, actor=actor)
    if report_dir is not None and run.evaluation is not None:
        write_report(run.evaluation, Path(report_dir) / river.id / version.version)
    return version


def train_all(engine: Engine, catalogue: Catalogue, *, end: datetime, days: float,
              models_root: Path, now: datetime, settings: LgbmSettings | None = None,
              judge: bool = True, rivers: list[str] | None = None,
              progress: Callable[[str], object] | None = None,
              report_dir: Path | None = None) -> TrainReport:
    """Train every river (or ``rivers``); a river that fails is recorded and the rest go on.
    ``progress`` is called with each river id when it is done (trained or failed)."""
    report = TrainReport()
    for river in catalogue.rivers:
        if rivers is not None and river.id not in rivers:
            continue
        try:
            report.versions[river.id] = train_river(
                engine, river, end=end, days=days, models_root=models_root, now=now,
                settings=settings, judge=judge, report_dir=report_dir)
        except ForecastError as exc:
            log.warning("training %s failed: %s", river.id, exc)
            report.failed[river.id] = str(exc)
        if progress is not None:
            progress(river.id)
    return report


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
        scores = lead_scores(attach_observed(fc, hourly[LEVEL]), events, threshold)
        return {c: _per_lead(scores, "lgbm", c) for c in ("rmse", "rmse_event")}

    return evaluate


def promote_river(engine: Engine, river: River, version: str, *, end: datetime, days: float,
                  models_root: Path, now: datetime, force: bool = False,
                  rain_product: str | None = None, actor: str = "forecast") -> str:
    """Promote ``version`` (champion–challenger; see ``registry.promote``), re-scoring both
    models on the hold-out of (end - days, end] when their judging backtests differ. Mirrors
    the promotion into the database; returns the registry's message."""
    start = end - timedelta(days=days)
    hourly, rain, _ = _load(engine, river, start, end, rain_product)
    ev = holdout_evaluator(river, hourly, vintages=rain, start=start, end=end)
    return registry.promote(models_root, river.id, version, at=now, force=force, evaluate=ev,
                            engine=engine, actor=actor)
