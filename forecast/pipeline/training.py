"""Training service: stored observations and rain vintages → features → LeadModels → registry.

``train_river`` trains one river on a window of stored data, first judging it with a leak-free
rolling-origin backtest on the last part of the window (``JUDGE_FOLDS`` folds refitted on
everything before each fold; our model against persistence and AR(2); the same folds every time
for the same window, so champion and challenger are comparable), then trains the final model
on the whole window and registers the version with its manifest. ``train_all`` does every river
of a catalogue, recording failures and going on; with ``pooled=True`` it also trains one pooled
model across all rivers (``forecast.modelling.pooled``), judges it on the same folds for each
river with a short record (or whose own model cannot be trained) and registers, per river,
whichever of the two judged better. ``modelling.judging.train_frames`` is the same without
the database (notebooks, benchmarks); ``promote_river`` promotes with both models re-scored on
one hold-out when their judging backtests differ. Stored observations carry their QC flags (the
one store path, ``pipeline.collect``), so training reads exactly what the cycle reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from forecast.catalogue import River
from forecast.errors import ForecastError, InsufficientDataError
from forecast.features import LEADS, FutureRain, build_features, river_hourly, targets
from forecast.frames import LEVEL
from forecast.modelling import registry
from forecast.modelling.backtest import Fold, fold_test_times, fold_train_times
from forecast.modelling.judging import (
    WARMUP_H,
    TrainingRun,
    holdout_evaluator,
    judge_folds,
    judged_section,
    river_threshold,
    train_frames,
)
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.modelling.pooled import PooledLeadModels, add_river_attributes, train_pooled
from forecast.modelling.report import BacktestRun, write_report
from forecast.pipeline import models as champions
from forecast.pipeline.context import Context
from forecast.storage.engine import create_engine, transaction
from forecast.storage.observations import read_observations
from forecast.storage.rain import read_rain_vintages

log = logging.getLogger(__name__)

SHORT_RECORD_H = 365 * 24   # fewer observed level hours than this: judge a pooled model too


@dataclass
class TrainReport:
    """Registered versions per river and the rivers that failed (with the reason)."""

    versions: dict[str, registry.Version] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    # pooled runs: river id -> why its model is the pooled one or its own (with both scores)
    choices: dict[str, str] = field(default_factory=dict)


def load_river(ctx: Context, river: River, start: datetime, end: datetime,
               rain_product: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """The river frame over [start, end] from stored (QC'd) data, its rain vintages, and
    whether any of it is simulated."""
    return _load(ctx.engine, river, start, end, rain_product)


def _load(engine: Engine, river: River, start: datetime, end: datetime,
          rain_product: str | None) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    with transaction(engine, f"reading stored data of {river.id}") as conn:
        obs = read_observations(conn, station_ids=river.station_codes, start=start,
                                end=end + timedelta(seconds=1))
        rain = read_rain_vintages(conn, product=rain_product, issued_after=start,
                                  issued_before=end, catchment_id=river.id)
    hourly = river_hourly(obs, river, start=pd.Timestamp(start), end=pd.Timestamp(end))
    simulated = bool((obs["source"] == "simulated").any()) if len(obs) else False
    return hourly, rain, simulated


def train_river(ctx: Context, river: River, *, end: datetime, days: float,
                settings: LgbmSettings | None = None, judge: bool = True,
                rain_product: str | None = None, report_dir: Path | None = None,
                actor: str = "forecast") -> registry.Version:
    """Train ``river`` on stored data in (end - days, end] and register the version (also in
    the database). ``report_dir``: write the judging backtest's HTML report to
    ``report_dir/<river>/<version>/``."""
    start = end - timedelta(days=days)
    hourly, rain, simulated = load_river(ctx, river, start, end, rain_product)
    run = train_frames(river, hourly, vintages=rain, start=start, end=end, settings=settings,
                       judge=judge, simulated=simulated)
    return _register(ctx, run, report_dir=report_dir, actor=actor)


def _register(ctx: Context, run: TrainingRun, *,
              report_dir: Path | None, actor: str, upstream: Sequence[str] | None = None,
              pooled: Mapping[str, Any] | None = None, data_sha256: str | None = None
              ) -> registry.Version:
    river = run.river
    simulated = run.evaluation.simulated if run.evaluation is not None else False
    version = champions.register(
        ctx, river.id, run.models, window=run.window,
        data_sha256=data_sha256 or run.data_sha256, backtest=run.backtest,
        future_rain=run.future_rain,
        upstream=list(river.upstream_gauges) if upstream is None else list(upstream),
        source="simulated" if simulated else "stored", actor=actor, pooled=pooled)
    if report_dir is not None and run.evaluation is not None:
        write_report(run.evaluation, Path(report_dir) / river.id / version.version)
    return version


def train_all(ctx: Context, *, end: datetime, days: float,
              settings: LgbmSettings | None = None,
              judge: bool = True, rivers: list[str] | None = None,
              progress: Callable[[str], object] | None = None,
              report_dir: Path | None = None, pooled: bool = False,
              short_record_h: int = SHORT_RECORD_H, workers: int = 1) -> TrainReport:
    """Train every river (or ``rivers``); a river that fails is recorded and the rest go on.
    ``progress`` is called with each river id when it is done (trained or failed).
    ``workers`` > 1 trains rivers in that many processes (one LightGBM thread each).

    ``pooled``: also train a pooled model on every river of the catalogue and, for each river
    with fewer than ``short_record_h`` observed level hours in the window or whose own model
    fails, register the pooled model instead when it judged better on the same folds (mean
    event RMSE of leads 3–6 h, or all-hours RMSE when a span held no event); the reason is in
    ``TrainReport.choices``. Needs ``judge``.
    """
    if pooled:
        if not judge:
            raise ValueError("the pooled model is chosen per river by backtest: keep judging on")
        return _train_all_pooled(ctx, end=end, days=days, settings=settings,
                                 rivers=rivers, progress=progress, report_dir=report_dir,
                                 short_record_h=short_record_h)
    report = TrainReport()
    todo = [r for r in ctx.catalogue.rivers if rivers is None or r.id in rivers]
    if workers > 1 and len(todo) > 1:
        _train_parallel(ctx, report, todo, end=end, days=days, settings=settings, judge=judge,
                        progress=progress, report_dir=report_dir, workers=workers)
        return report
    for river in todo:
        try:
            report.versions[river.id] = train_river(
                ctx, river, end=end, days=days, settings=settings, judge=judge,
                report_dir=report_dir)
        except ForecastError as exc:
            log.warning("training %s failed: %s", river.id, exc)
            report.failed[river.id] = str(exc)
        if progress is not None:
            progress(river.id)
    return report


_WORKER_ENGINES: dict[str, Engine] = {}


def _train_job(job: tuple[str, River, datetime, datetime, LgbmSettings | None, bool]
               ) -> TrainingRun | str:
    """One river's reading, judging and training in a worker process (its own engine on the
    same database); a failure comes back as its message (project exceptions with keyword
    arguments do not survive pickling)."""
    url, river, start, end, settings, judge = job
    try:
        engine = _WORKER_ENGINES.get(url)
        if engine is None:
            engine = _WORKER_ENGINES[url] = create_engine(url)
        hourly, rain, simulated = _load(engine, river, start, end, None)
        return train_frames(river, hourly, vintages=rain, start=start, end=end,
                            settings=settings, judge=judge, simulated=simulated)
    except ForecastError as exc:
        return str(exc)


def _train_parallel(ctx: Context, report: TrainReport, todo: Sequence[River], *, end: datetime,
                    days: float, settings: LgbmSettings | None, judge: bool,
                    progress: Callable[[str], object] | None, report_dir: Path | None,
                    workers: int) -> None:
    """``train_all`` over worker processes: each reads its river's stored data and judges and
    trains it (one LightGBM thread each); versions are registered here, one at a time."""
    start = end - timedelta(days=days)
    url = ctx.engine.url.render_as_string(hide_password=False)
    jobs = {river.id: (url, river, start, end, settings, judge) for river in todo}
    # spawn, not fork: a worker inherits no database connection or OpenMP state
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        running = {pool.submit(_train_job, job): rid for rid, job in jobs.items()}
        for done in as_completed(running):
            rid = running[done]
            got = done.result()
            if isinstance(got, str):
                log.warning("training %s failed: %s", rid, got)
                report.failed[rid] = got
            else:
                try:
                    report.versions[rid] = _register(ctx, got, report_dir=report_dir,
                                                     actor="forecast")
                except ForecastError as exc:
                    report.failed[rid] = str(exc)
            if progress is not None:
                progress(rid)


@dataclass
class _Member:
    """One river's rows for the pooled model: raw feature rows and targets at every hour."""

    river: River
    hourly: pd.DataFrame
    X: pd.DataFrame
    Y: pd.DataFrame
    threshold: float

    def part(self, times: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame, float, float]:
        return (self.X.loc[times], self.Y.loc[times], self.river.catchment.area_km2,
                self.threshold)

    def bind(self, models: LeadModels) -> PooledLeadModels:
        return PooledLeadModels.for_river(models, area_km2=self.river.catchment.area_km2,
                                          threshold_m=self.threshold)


def _pool_parts(members: Sequence[_Member], before: pd.Timestamp | None
                ) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, float, float]]:
    """``train_pooled`` input: every member's rows whose targets lie before ``before`` (None:
    the whole window after the warm-up)."""
    parts = {}
    for m in members:
        idx = pd.DatetimeIndex(m.X.index)
        times = (idx[WARMUP_H:-max(LEADS)] if before is None else
                 fold_train_times(m.hourly, Fold("", before, before, before), max(LEADS)))
        parts[m.river.id] = m.part(times)
    return parts


def _judge_pooled(m: _Member, fold_models: Mapping[str, LeadModels], folds: Sequence[Fold],
                  own: TrainingRun | None, future_rain: FutureRain) -> tuple[dict[str, Any],
                                                                             pd.DataFrame]:
    """The pooled model's judging backtest for one river (same folds as its own model's, with
    its own run's baseline forecasts beside it when there is one)."""
    parts = []
    for f in folds:
        t = fold_test_times(m.hourly, f)
        if len(t):
            fc = m.bind(fold_models[f.fold]).predict(m.X.loc[t]).drop(columns=["inputs"])
            parts.append(fc.assign(fold=f.fold, model="lgbm"))
    if not parts:
        raise InsufficientDataError(f"river {m.river.id}: no observed level in the judging "
                                    "span; the pooled model cannot be judged")
    fc = pd.concat(parts, ignore_index=True).assign(river_id=m.river.id)
    fc["valid_at"] = fc["issued_at"] + pd.to_timedelta(fc["horizon_h"], unit="h")
    if own is not None and own.evaluation is not None:
        base = own.evaluation.forecasts
        fc = pd.concat([fc[list(base.columns)], base[base["model"] != "lgbm"]],
                       ignore_index=True)
    models = ("lgbm", *sorted(set(fc["model"]) - {"lgbm"}))
    return judged_section(m.hourly, fc, folds, future_rain, m.threshold, models), fc


def _train_all_pooled(ctx: Context, *, end: datetime, days: float,
                      settings: LgbmSettings | None,
                      rivers: list[str] | None, progress: Callable[[str], object] | None,
                      report_dir: Path | None, short_record_h: int) -> TrainReport:
    report = TrainReport()
    start = end - timedelta(days=days)
    catalogue = ctx.catalogue
    chosen = [r for r in catalogue.rivers if rivers is None or r.id in rivers]
    loaded: dict[str, tuple[pd.DataFrame, pd.DataFrame, bool]] = {}
    for river in catalogue.rivers:   # the pool learns from every river of the catalogue
        try:
            loaded[river.id] = load_river(ctx, river, start, end, None)
        except ForecastError as exc:
            if river in chosen:
                report.failed[river.id] = str(exc)
    own: dict[str, TrainingRun] = {}
    candidates: list[River] = []
    for river in chosen:
        if river.id not in loaded:
            continue
        hourly, rain, simulated = loaded[river.id]
        try:
            own[river.id] = train_frames(river, hourly, vintages=rain, start=start, end=end,
                                         settings=settings, simulated=simulated)
        except ForecastError as exc:
            log.warning("training %s failed: %s", river.id, exc)
            report.failed[river.id] = str(exc)
        if river.id not in own or int(hourly[LEVEL].notna().sum()) < short_record_h:
            candidates.append(river)
        if progress is not None:
            progress(river.id)
    if candidates:
        _pool_candidates(ctx, report, candidates, loaded, own, start=start, end=end,
                         settings=settings, report_dir=report_dir)
    for rid, run in own.items():
        if rid not in report.versions:
            report.versions[rid] = _register(ctx, run, report_dir=report_dir,
                                             actor="forecast")
    return report


def _pool_candidates(ctx: Context, report: TrainReport, candidates: Sequence[River],
                     loaded: Mapping[str, tuple[pd.DataFrame, pd.DataFrame, bool]],
                     own: Mapping[str, TrainingRun], *, start: datetime, end: datetime,
                     settings: LgbmSettings | None, report_dir: Path | None) -> None:
    """Judge the pooled model for each candidate river; register it where it is better."""
    future_rain: FutureRain = "archive"
    members = []
    for rid, (hourly, rain, _) in loaded.items():
        river = ctx.catalogue.river(rid)
        if not hourly[LEVEL].notna().any():
            continue
        idx = pd.DatetimeIndex(hourly.index)
        members.append(_Member(river, hourly,
                               build_features(hourly, idx, future_rain=future_rain,
                                              vintages=rain, catchment_id=rid),
                               targets(hourly, idx), river_threshold(river, hourly)))
    folds = judge_folds(start, end)
    try:
        fold_models = {f.fold: train_pooled(_pool_parts(members, f.train_end), settings=settings)
                       for f in folds}
        final_parts = _pool_parts(members, None)
        final = train_pooled(final_parts, settings=settings)
    except ForecastError as exc:
        for r in candidates:
            report.choices[r.id] = f"pooled model failed: {exc}"
        return
    pool_ids = [m.river.id for m in members]
    data_sha = registry.data_hash(pd.concat([add_river_attributes(X, area_km2=a, threshold_m=t)
                                             for X, _, a, t in final_parts.values()]))
    by_id = {m.river.id: m for m in members}
    for river in candidates:
        m = by_id.get(river.id)
        if m is None:
            continue
        run = own.get(river.id)
        try:
            section, fc = _judge_pooled(m, fold_models, folds, run, future_rain)
        except ForecastError as exc:
            report.choices[river.id] = f"pooled model not judged: {exc}"
            continue
        if run is None:
            a, basis = registry.judged_score(section)
            report.choices[river.id] = (f"pooled model: {basis} 3–6 h pooled {_m(a)}; "
                                        "the river's own model failed")
        else:
            a, b, basis = registry.compare_backtests(section, run.backtest)
            if a is None or b is None or a >= b:
                report.choices[river.id] = (f"own model: {basis} 3–6 h own {_m(b)}, pooled "
                                            f"{_m(a)}")
                continue
            report.choices[river.id] = f"pooled model: {basis} 3–6 h pooled {_m(a)}, own {_m(b)}"
        hourly, _, simulated = loaded[river.id]
        bound = m.bind(final)
        pooled_run = TrainingRun(
            river, hourly, m.X, bound, (start, end), future_rain, section,
            BacktestRun(river=river, hourly=hourly, forecasts=fc, threshold_m=m.threshold,
                        future_rain=future_rain, simulated=simulated))
        report.versions[river.id] = _register(
            ctx, pooled_run, report_dir=report_dir,
            actor="forecast", upstream=[], data_sha256=data_sha,
            pooled={"rivers": pool_ids, "attributes": bound.attributes,
                    "choice": report.choices[river.id]})
        report.failed.pop(river.id, None)


def _m(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f} m"


def promote_river(ctx: Context, river: River, version: str, *, end: datetime | None = None,
                  days: float | None = None, force: bool = False,
                  rain_product: str | None = None, actor: str = "forecast") -> str:
    """Promote ``version`` (champion–challenger: ``registry.promotion_note``), re-scoring both
    models on the hold-out of (end - days, end] of stored data when their judging backtests
    differ (default: the challenger's training window). Recorded and audited by
    ``pipeline.models.promote``; returns its message."""
    challenger, _ = registry.load_version(ctx.models_root, river.id, version)
    w0, w1 = (datetime.fromisoformat(t) for t in challenger.manifest["training_window"])
    end = end or w1
    start = end - (timedelta(days=days) if days else w1 - w0)
    built: list[registry.Evaluator] = []

    def evaluate(models: LeadModels) -> Mapping[str, Mapping[str, float | None]]:
        # the hold-out is read only when the registry needs it (backtests differ)
        if not built:
            hourly, rain, _ = load_river(ctx, river, start, end, rain_product)
            built.append(holdout_evaluator(river, hourly, vintages=rain, start=start, end=end))
        return built[0](models)

    return champions.promote(ctx, river.id, version, force=force, evaluate=evaluate,
                             actor=actor)
