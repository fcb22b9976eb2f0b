"""Training service: stored observations and rain vintages → features → LeadModels → registry.

``train_river`` trains one river on a window of stored data, first judging it with a leak-free
rolling-origin backtest on the last part of the window (``JUDGE_FOLDS`` folds refitted on
everything before each fold; our model against persistence and AR(2); the same folds every time
for the same window, so champion and challenger are comparable), then trains the final model
on the whole window and registers the version with its manifest. ``train_all`` does every river
of a catalogue, recording failures and going on; with ``pooled=True`` it also trains one pooled
model across all rivers (``forecast.modelling.pooled``), judges it on the same folds for each
river with a short record (or whose own model cannot be trained) and registers, per river,
whichever of the two judged better. ``train_frames`` is the same without the database
(notebooks, benchmarks); ``promote_river`` promotes with both models re-scored on one hold-out
when their judging backtests differ.
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
from forecast.features import CENSORED, LEADS, FutureRain, build_features, river_hourly, targets
from forecast.frames import LEVEL
from forecast.modelling import registry
from forecast.modelling.backtest import Fold, backtest_river, fold_test_times, fold_train_times
from forecast.modelling.lgbm import LeadModels, LgbmSettings, with_transform
from forecast.modelling.metrics import attach_observed, event_threshold, event_windows, lead_scores
from forecast.modelling.pooled import PooledLeadModels, add_river_attributes, train_pooled
from forecast.modelling.report import BacktestRun, write_report
from forecast.storage import repository
from forecast.storage.observations import read_observations

log = logging.getLogger(__name__)

JUDGE_FRACTION = 0.2   # the last 20 % of the window is the judging backtest's test span
JUDGE_FOLDS = 2        # rolling-origin folds inside it (each refits on everything before it)
WARMUP_H = 48          # rain_48h needs two days of history before the first training row
BASELINES: tuple[str, ...] = ("persistence", "ar2")
SHORT_RECORD_H = 365 * 24   # fewer observed level hours than this: judge a pooled model too


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
    # pooled runs: river id -> why its model is the pooled one or its own (with both scores)
    choices: dict[str, str] = field(default_factory=dict)


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


def _judged(hourly: pd.DataFrame, fc: pd.DataFrame, folds: Sequence[Fold],
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
        backtest = _judged(hourly, fc, folds, future_rain, threshold, models)
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
    return _register(engine, run, models_root=models_root, now=now, report_dir=report_dir,
                     actor=actor)


def _register(engine: Engine, run: TrainingRun, *, models_root: Path, now: datetime,
              report_dir: Path | None, actor: str, upstream: Sequence[str] | None = None,
              pooled: Mapping[str, Any] | None = None, data_sha256: str | None = None
              ) -> registry.Version:
    river = run.river
    simulated = run.evaluation.simulated if run.evaluation is not None else False
    version = registry.register(
        models_root, river.id, run.models, created_at=now, window=run.window,
        data_sha256=data_sha256 or run.data_sha256, backtest=run.backtest,
        future_rain=run.future_rain,
        upstream=list(river.upstream_gauges) if upstream is None else list(upstream),
        source="simulated" if simulated else "stored", engine=engine, actor=actor,
        pooled=pooled)
    if report_dir is not None and run.evaluation is not None:
        write_report(run.evaluation, Path(report_dir) / river.id / version.version)
    return version


def train_all(engine: Engine, catalogue: Catalogue, *, end: datetime, days: float,
              models_root: Path, now: datetime, settings: LgbmSettings | None = None,
              judge: bool = True, rivers: list[str] | None = None,
              progress: Callable[[str], object] | None = None,
              report_dir: Path | None = None, pooled: bool = False,
              short_record_h: int = SHORT_RECORD_H) -> TrainReport:
    """Train every river (or ``rivers``); a river that fails is recorded and the rest go on.
    ``progress`` is called with each river id when it is done (trained or failed).

    ``pooled``: also train a pooled model on every river of the catalogue and, for each river
    with fewer than ``short_record_h`` observed level hours in the window or whose own model
    fails, register the pooled model instead when it judged better on the same folds (mean
    event RMSE of leads 3–6 h, or all-hours RMSE when a span held no event); the reason is in
    ``TrainReport.choices``. Needs ``judge``.
    """
    if pooled:
        if not judge:
            raise ValueError("the pooled model is chosen per river by backtest: keep judging on")
        return _train_all_pooled(engine, catalogue, end=end, days=days,
                                 models_root=models_root, now=now, settings=settings,
                                 rivers=rivers, progress=progress, report_dir=report_dir,
                                 short_record_h=short_record_h)
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
    return _judged(m.hourly, fc, folds, future_rain, m.threshold, models), fc


def _train_all_pooled(engine: Engine, catalogue: Catalogue, *, end: datetime, days: float,
                      models_root: Path, now: datetime, settings: LgbmSettings | None,
                      rivers: list[str] | None, progress: Callable[[str], object] | None,
                      report_dir: Path | None, short_record_h: int) -> TrainReport:
    report = TrainReport()
    start = end - timedelta(days=days)
    chosen = [r for r in catalogue.rivers if rivers is None or r.id in rivers]
    loaded: dict[str, tuple[pd.DataFrame, pd.DataFrame, bool]] = {}
    for river in catalogue.rivers:   # the pool learns from every river of the catalogue
        try:
            loaded[river.id] = _load(engine, river, start, end, None)
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
        _pool_candidates(engine, report, candidates, catalogue, loaded, own, start=start,
                         end=end, settings=settings, models_root=models_root, now=now,
                         report_dir=report_dir)
    for rid, run in own.items():
        if rid not in report.versions:
            report.versions[rid] = _register(engine, run, models_root=models_root, now=now,
                                             report_dir=report_dir, actor="forecast")
    return report


def _pool_candidates(engine: Engine, report: TrainReport, candidates: Sequence[River],
                     catalogue: Catalogue,
                     loaded: Mapping[str, tuple[pd.DataFrame, pd.DataFrame, bool]],
                     own: Mapping[str, TrainingRun], *, start: datetime, end: datetime,
                     settings: LgbmSettings | None, models_root: Path, now: datetime,
                     report_dir: Path | None) -> None:
    """Judge the pooled model for each candidate river; register it where it is better."""
    future_rain: FutureRain = "archive"
    members = []
    for rid, (hourly, rain, _) in loaded.items():
        river = catalogue.river(rid)
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
            engine, pooled_run, models_root=models_root, now=now, report_dir=report_dir,
            actor="forecast", upstream=[], data_sha256=data_sha,
            pooled={"rivers": pool_ids, "attributes": bound.attributes,
                    "choice": report.choices[river.id]})
        report.failed.pop(river.id, None)


def _m(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f} m"


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


def promote_river(engine: Engine, river: River, version: str, *, end: datetime, days: float,
                  models_root: Path, now: datetime, force: bool = False,
                  rain_product: str | None = None, actor: str = "forecast") -> str:
    """Promote ``version`` (champion–challenger; see ``registry.promote``), re-scoring both
    models on the hold-out of (end - days, end] when their judging backtests differ. Mirrors
    the promotion into the database; returns the registry's message."""
    start = end - timedelta(days=days)
    built: list[registry.Evaluator] = []

    def evaluate(models: LeadModels) -> Mapping[str, Mapping[str, float | None]]:
        # the hold-out is read only when the registry needs it (backtests differ)
        if not built:
            hourly, rain, _ = _load(engine, river, start, end, rain_product)
            built.append(holdout_evaluator(river, hourly, vintages=rain, start=start, end=end))
        return built[0](models)

    return registry.promote(models_root, river.id, version, at=now, force=force,
                            evaluate=evaluate, engine=engine, actor=actor)
