"""Training service: stored observations and rain vintages → features → LeadModels → registry.

``train_river`` trains one river on a window of stored data, optionally judges it first with a
leak-free backtest on the last part of the window (our model against persistence, same folds
every time so champion and challenger are comparable), and registers the version with its
manifest. ``train_all`` does every river of a catalogue, recording failures and going on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue, River
from forecast.errors import ForecastError
from forecast.features import build_features, river_hourly, targets
from forecast.modelling import registry
from forecast.modelling.backtest import Fold, backtest_river
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.modelling.metrics import (
    attach_observed,
    event_threshold,
    event_windows,
    lead_scores,
)
from forecast.storage import repository
from forecast.storage.observations import read_observations

log = logging.getLogger(__name__)

JUDGE_FRACTION = 0.2   # the last 20 % of the window is the judging backtest's test span


@dataclass
class TrainReport:
    """Registered versions per river and the rivers that failed (with the reason)."""

    versions: dict[str, registry.Version] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _judge(hourly: pd.DataFrame, river: River, rain: pd.DataFrame, threshold: float,
           settings: LgbmSettings | None, start: datetime, end: datetime) -> dict[str, Any]:
    split = pd.Timestamp(start + (end - start) * (1 - JUDGE_FRACTION)).floor("h")
    fold = Fold("judge", train_end=split, test_start=split, test_end=pd.Timestamp(end))
    fc = backtest_river(hourly, [fold], river_id=river.id, high_water_m=threshold,
                        future_rain="archive", vintages=rain, settings=settings,
                        models=("lgbm", "persistence"))
    level = hourly["level_m"]
    scores = lead_scores(attach_observed(fc, level), event_windows(level, threshold), threshold)
    ours = scores[scores["model"] == "lgbm"].set_index("horizon_h")

    def as_dict(col: str) -> dict[str, float | None]:
        return {str(h): (None if pd.isna(v) else float(v)) for h, v in ours[col].items()}

    return {"spec": {"train_end": split.isoformat(), "test_end": pd.Timestamp(end).isoformat(),
                     "future_rain": "archive", "event_threshold_m": threshold},
            "rmse": as_dict("rmse"), "rmse_event": as_dict("rmse_event"),
            "skill_event": as_dict("skill_event"), "coverage_high": as_dict("coverage_high")}


def train_river(engine: Engine, river: River, *, end: datetime, days: float, models_root: Path,
                now: datetime, settings: LgbmSettings | None = None, judge: bool = True,
                rain_product: str | None = None) -> registry.Version:
    """Train ``river`` on stored data in (end - days, end] and register the version."""
    start = end - timedelta(days=days)
    obs = read_observations(engine, station_ids=river.station_codes, start=start,
                            end=end + timedelta(seconds=1))
    rain = repository.read_rain_vintages(engine, product=rain_product, issued_after=start,
                                         issued_before=end, catchment_id=river.id)
    hourly = river_hourly(obs, river, start=pd.Timestamp(start), end=pd.Timestamp(end))
    threshold = event_threshold(hourly["level_m"], river.thresholds.ladder()[0][1])
    backtest = _judge(hourly, river, rain, threshold, settings, start, end) if judge else {}
    times = pd.DatetimeIndex(hourly.index[48:-6])
    X = build_features(hourly, times, future_rain="archive", vintages=rain,
                       catchment_id=river.id)
    models = LeadModels.train(X, targets(hourly, times), high_water_m=threshold,
                              settings=settings, name=f"river {river.id}")
    return registry.register(models_root, river.id, models, created_at=now,
                             window=(start, end), data_sha256=registry.data_hash(X),
                             backtest=backtest)


def train_all(engine: Engine, catalogue: Catalogue, *, end: datetime, days: float,
              models_root: Path, now: datetime, settings: LgbmSettings | None = None,
              judge: bool = True, rivers: list[str] | None = None,
              progress: Callable[[str], object] | None = None) -> TrainReport:
    """Train every river (or ``rivers``); a river that fails is recorded and the rest go on."""
    report = TrainReport()
    for river in catalogue.rivers:
        if rivers is not None and river.id not in rivers:
            continue
        try:
            report.versions[river.id] = train_river(
                engine, river, end=end, days=days, models_root=models_root, now=now,
                settings=settings, judge=judge)
        except ForecastError as exc:
            log.warning("training %s failed: %s", river.id, exc)
            report.failed[river.id] = str(exc)
        if progress is not None:
            progress(river.id)
    return report
