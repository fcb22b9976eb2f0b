"""The forecast cycle: stored inputs → features → predict → store, for one issue time.

``run_cycle`` forecasts every river of the catalogue for issue time T (a whole or half UTC
hour), using only data with observation time ≤ T and rain vintages issued ≤ T, and stores each
forecast with its lineage (model version and variant, input cut-off, inputs used or missing,
low-confidence reasons). The scheduler, the CLI, the demo and replays all call it.

* Each run of T is a new, immutable revision (``cycle_runs.revision``; each river's forecast a
  new ``forecast_runs`` revision): re-running T never overwrites what an earlier run said.
* The issue-time lock (``storage.cycles.issue_lock``) lets one process run T at a time.
* A river that fails, for any reason, is recorded in ``cycle_river_outcomes`` and the others
  go on; the run is always closed with its real start and finish times (``finally``).
* A river's forecast and its outcome row commit in one transaction.
* Low confidence: a degraded model variant, a primary level flagged DOUBTFUL or FILLED, or a
  crisis gauge whose silence the data cannot explain (``features.silence_reason``).

Half-hour issue times: the hourly river frame is built on hours ending at T (every input time
shifted by the half hour for the feature computation), so rain sums and the level at T keep
their meaning; a rain vintage is used when its valid times line up with T's hours.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from forecast.catalogue import River
from forecast.errors import CycleError
from forecast.features import (
    CENSORED,
    build_features,
    build_features_many,
    river_hourly,
    rivers_hourly,
    silence_reason,
)
from forecast.frames import LEVEL, Flag
from forecast.modelling.baselines import persistence_banded
from forecast.modelling.lgbm import LeadModels
from forecast.pipeline.context import Context
from forecast.pipeline.models import ModelProvider, champion_models
from forecast.qc.freshness import (
    PRODUCT_STALE,
    latest_usable,
    product_freshness,
    stale_reasons,
    station_freshness,
)
from forecast.storage.cycles import (
    abandon_running,
    finish_cycle,
    issue_lock,
    record_outcome,
    start_cycle,
)
from forecast.storage.engine import transaction
from forecast.storage.forecasts import save_forecast
from forecast.storage.observations import ObservationWindow
from forecast.storage.rain import read_rain_vintages

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=8)   # covers the 48 h rain sums and lets the API index settle
RAIN_VINTAGE_AGE = timedelta(hours=6)
STALE_LEVEL = timedelta(hours=2)


@dataclass(frozen=True)
class RiverOutcome:
    """How one river fared in a cycle."""

    river_id: str
    status: str                  # ok | degraded | failed | skipped
    model_version: str | None = None
    message: str | None = None


@dataclass
class CycleReport:
    """What a cycle did; ``forecasts`` is the forecast frame of every stored river."""

    cycle_id: int
    revision: int
    issued_at: datetime
    outcomes: list[RiverOutcome] = field(default_factory=list)
    forecasts: pd.DataFrame = field(default_factory=pd.DataFrame)
    low_confidence: dict[str, list[str]] = field(default_factory=dict)
    run_ids: dict[str, int] = field(default_factory=dict)   # river → its stored forecast run

    @property
    def status(self) -> str:
        failed = sum(o.status in ("failed", "skipped") for o in self.outcomes)
        if not self.outcomes or failed == len(self.outcomes):
            return "failed"
        return "partial" if failed else "ok"


def issue_time(at: datetime) -> pd.Timestamp:
    """``at`` as a UTC issue time; ``CycleError`` unless on a whole or half hour."""
    if at.tzinfo is None:
        raise CycleError(f"issue time {at} has no UTC offset")
    t = pd.Timestamp(at).tz_convert("UTC")
    if t != t.floor("30min"):
        raise CycleError(f"issue time must be on a whole or half hour (UTC), got {t}")
    return t


def _level_reasons(obs: pd.DataFrame, river: River, issued: pd.Timestamp) -> list[str]:
    """Low-confidence reasons from the QC flag of the primary reading used at T."""
    t = pd.DatetimeIndex(obs["time"]).as_unit("ns").asi8
    at = issued.as_unit("ns").value
    mine = ((obs["station_id"].to_numpy() == river.primary_gauge)
            & (obs["variable"].to_numpy() == LEVEL) & (t <= at)
            & (t > at - pd.Timedelta(minutes=30).value))
    rows = np.flatnonzero(mine)
    if not len(rows):
        return []
    last = obs.iloc[rows[np.argmax(t[rows])]]   # the newest reading (times are unique)
    flag = int(last["flag"])
    if flag in (int(Flag.DOUBTFUL), int(Flag.FILLED)):
        return [f"level at {river.primary_gauge} is {Flag(flag).name} "
                f"({last['qc_rule'] or 'no rule'}) at {last['time']:%H:%M}Z"]
    return []


PERSISTENCE = "persistence"
"""The last step of the fallback chain: no model could run (none promoted, or it failed)."""


@dataclass(frozen=True)
class Inputs:
    """What the forecast stage reads once for all rivers: observations of the look-back, rain
    vintages, and the freshness of every station (``qc.freshness``)."""

    obs: pd.DataFrame
    vintages: pd.DataFrame
    freshness: pd.DataFrame
    # row positions per station / catchment / river, built on first use: each river then
    # takes its own rows instead of filtering every frame of every river
    _positions: dict[str, dict[str, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def _index(self, name: str) -> dict[str, np.ndarray]:
        got = self._positions.get(name)
        if got is None:
            if name in ("freshness", "stale"):
                lists: dict[str, list[int]] = {}
                keep = (self.freshness["status"].isin(["stale", "never"]).to_numpy()
                        if name == "stale" else np.ones(len(self.freshness), dtype=bool))
                for i, ids in enumerate(self.freshness["river_ids"]):
                    if keep[i]:
                        for r in ids:
                            lists.setdefault(str(r), []).append(i)
                got = {k: np.asarray(v, dtype=np.intp) for k, v in lists.items()}
            else:
                frame, column = ((self.obs, "station_id") if name == "obs"
                                 else (self.vintages, "catchment_id"))
                got = ({str(k): np.asarray(v)
                        for k, v in frame.groupby(column, sort=False).indices.items()}
                       if len(frame) else {})
            self._positions[name] = got
        return got

    def _rows(self, name: str, frame: pd.DataFrame, keys: Iterable[str]) -> pd.DataFrame:
        index = self._index(name)
        parts = [index[k] for k in dict.fromkeys(keys) if k in index]
        pos = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.intp)
        return frame.iloc[pos]

    def station_rows(self, codes: Iterable[str]) -> pd.DataFrame:
        """The observations of these stations, in the frame's order (with its index)."""
        return self._rows("obs", self.obs, codes)

    def catchment_vintages(self, catchment_id: str) -> pd.DataFrame:
        """The rain vintages of one catchment, in the frame's order."""
        return self._rows("vintages", self.vintages, [catchment_id])

    def river_freshness(self, river_id: str, *, stale_only: bool = False) -> pd.DataFrame:
        """The freshness rows of the stations one river reads (``stale_only``: those that
        are stale or never seen, the only ones ``qc.freshness.stale_reasons`` reports)."""
        return self._rows("stale" if stale_only else "freshness", self.freshness, [river_id])


def _forecast_rain_reason(vintages: pd.DataFrame, river: River, issued: pd.Timestamp
                          ) -> str | None:
    mine = vintages[vintages["catchment_id"] == river.id]
    if mine.empty:
        return None
    # the newest vintage of any product decides: fresh, nothing to say (the usual case)
    newest_at = pd.DatetimeIndex(mine["issued_at"]).max()
    age_min = (pd.Timestamp(issued).tz_convert("UTC") - newest_at).total_seconds() / 60.0
    if not age_min > PRODUCT_STALE.total_seconds() / 60.0:
        return None
    newest_per_product = mine.groupby("product")["issued_at"].max().reset_index()
    fresh = product_freshness(newest_per_product, issued)
    newest = fresh.sort_values("issued_at").iloc[-1]
    if newest["status"] != "stale":
        return None
    return (f"forecast rain {newest['product']}: newest vintage issued "
            f"{newest['issued_at']:%H:%M}Z, {newest['age_min']:.0f} min old (stale after "
            f"{PRODUCT_STALE.total_seconds() / 60:.0f} min)")


Prepared = dict[str, tuple[pd.DataFrame, pd.DataFrame]]
"""River id -> (hourly river frame, feature row at T), built for all rivers at once."""


def _prepare(rivers: Sequence[River], inputs: Inputs, issued: pd.Timestamp) -> Prepared:
    """Every river's hourly frame and feature row at ``issued`` in one pass
    (``features.rivers_hourly`` / ``build_features_many``: the same frames as river by river).
    Empty if that fails: each river is then built on its own, so a failure stays its own."""
    shift = issued - issued.floor("h")
    t0 = issued - shift
    obs, vint = inputs.obs, inputs.vintages
    if shift:
        obs = obs.assign(time=obs["time"] - shift)
        vint = vint.assign(issued_at=vint["issued_at"] - shift,
                           valid_at=vint["valid_at"] - shift)
    try:
        hourly = rivers_hourly(obs, rivers, start=t0 - pd.Timedelta(LOOKBACK), end=t0)
        frames = [hourly[r.id] for r in rivers]
        X = build_features_many(frames, [t0], future_rain="archive", vintages=vint,
                                catchment_ids=[r.id for r in rivers])
    except Exception:   # the rivers are built one by one instead
        log.warning("building the inputs of all rivers at once failed; river by river",
                    exc_info=True)
        return {}
    return {r.id: (h, x) for r, h, x in zip(rivers, frames, X, strict=True)}


def _forecast_one(river: River, inputs: Inputs, issued: pd.Timestamp,
                  model: tuple[str, LeadModels] | None, model_problem: str | None = None,
                  prepared: tuple[pd.DataFrame, pd.DataFrame] | None = None
                  ) -> tuple[pd.DataFrame, str, dict[str, str], list[str]]:
    """One river's forecast at ``issued``: (frame of every lead, variant, lineage, reasons).

    ``model`` None: persistence with an empirical band (``model_problem`` says why).
    ``prepared``: this river's hourly frame and feature row from ``_prepare``."""
    obs = inputs.station_rows([river.primary_gauge])   # the primary gauge's rows
    # Work on hours ending at T: shift a half-hour issue time (and every input) onto the grid.
    shift = issued - issued.floor("h")
    t0 = issued - shift
    if prepared is not None:
        hourly, X = prepared
    else:
        mine = inputs.station_rows(river.station_codes)
        mine = mine.assign(time=mine["time"] - shift) if shift else mine
        hourly = river_hourly(mine, river, start=t0 - pd.Timedelta(LOOKBACK), end=t0)
    valid = hourly.index[hourly[LEVEL].notna().to_numpy()]
    last_level = valid.max() if len(valid) else None
    if last_level is None or t0 - last_level > STALE_LEVEL:
        raw = obs.loc[(obs["station_id"] == river.primary_gauge) & obs["value"].notna(), "time"]
        seen = (f"latest reading {raw.max():%Y-%m-%d %H:%M}Z" if len(raw)
                else "no reading in the last 8 days")
        raise CycleError(f"river {river.id}: no usable level at {river.primary_gauge} in the "
                         f"{STALE_LEVEL.total_seconds() / 3600:g} h before "
                         f"{issued:%Y-%m-%d %H:%M}Z ({seen}); is the gauge's data feed running?")
    if prepared is None:
        vintages = inputs.catchment_vintages(river.id)
        vint = vintages.assign(issued_at=vintages["issued_at"] - shift,
                               valid_at=vintages["valid_at"] - shift) if shift else vintages
        X = build_features(hourly, [t0], future_rain="archive", vintages=vint,
                           catchment_id=river.id)
    if not np.isfinite(X[LEVEL].iloc[0]):
        kind = (" (crisis gauge: silent without a recent reading near or below its start "
                "level, so not read as low water)") if river.gauge.kind == "crisis" else ""
        raise CycleError(f"river {river.id}: no level reading at {river.primary_gauge} in the "
                         f"30 min before {issued:%Y-%m-%d %H:%M}Z{kind}")
    reasons: list[str] = []
    if model is not None:
        version, lead_models = model
        pred = lead_models.predict(X)
        if np.isnan(pred[["level", "q10", "q50", "q90"]].to_numpy(dtype="float64")).any():
            raise CycleError(f"river {river.id}: the model gave no forecast for {issued}")
    else:
        version = PERSISTENCE
        pred = persistence_banded(X, hourly[LEVEL])
        pred["inputs"] = LEVEL
        reasons.append(f"{model_problem or 'no model'}: persistence forecast (the level at "
                       "T held, band from the level changes of the last 8 days)")
    variant = str(pred["model_variant"].iloc[0])
    reasons += _level_reasons(obs, river, issued)
    silence = silence_reason(hourly, river, t0, shift=shift)
    if silence is not None:
        reasons.append(silence)
    if variant not in ("full", PERSISTENCE):
        reasons.append(f"model variant {variant} (inputs missing)")
    stale = inputs.river_freshness(river.id, stale_only=True)
    if len(stale):
        reasons += stale_reasons(stale, river.id)
    fc_cols = [c for c in X.columns if "rain_fc_" in str(c)]
    has_fc = not np.isnan(X[fc_cols].to_numpy(dtype="float64")).any()
    if has_fc and variant in ("full", "no_upstream"):
        stale_fc = _forecast_rain_reason(inputs.catchment_vintages(river.id), river, issued)
        if stale_fc is not None:
            reasons.append(stale_fc)
    lineage = {
        "used": str(pred["inputs"].iloc[0]),
        "forecast_rain": "ok" if has_fc else "missing",
        "rain_gauges": "ok" if np.isfinite(X["rain_1h"].iloc[0]) else "missing",
        "level_at": (last_level + shift).isoformat(),
        # a crisis gauge at or below its start level: the level used is that start level
        "level_censored": "yes" if X[CENSORED].iloc[0] > 0 else "no",
        # ... and the silence that put it there is not explained (a guess, low-confidence)
        "level_unexplained": "yes" if silence is not None else "no",
    }
    fc = pred.assign(
        river_id=river.id, issued_at=issued, model_version=version,
        valid_at=issued + pd.to_timedelta(pred["horizon_h"], unit="h"),
    )
    return fc, variant, lineage, reasons


_WINDOWS: weakref.WeakKeyDictionary[Engine, ObservationWindow] = weakref.WeakKeyDictionary()
_WINDOWS_LOCK = threading.Lock()


def _window(engine: Engine) -> ObservationWindow:
    """This process's look-back window of one database (kept between cycles: the next cycle
    reads only what changed, ``storage.observations.ObservationWindow``)."""
    with _WINDOWS_LOCK:
        got = _WINDOWS.get(engine)
        if got is None:
            got = _WINDOWS[engine] = ObservationWindow()
        return got


def _read_inputs(ctx: Context, issued: pd.Timestamp, rain_product: str | None) -> Inputs:
    stations = sorted({s for r in ctx.catalogue.rivers for s in r.station_codes})
    with transaction(ctx.engine, "reading the cycle's inputs") as conn:
        obs = _window(ctx.engine).read(
            conn, station_ids=stations, start=(issued - pd.Timedelta(LOOKBACK)).to_pydatetime(),
            end=(issued + pd.Timedelta(seconds=1)).to_pydatetime())
        vintages = read_rain_vintages(
            conn, product=rain_product, issued_before=issued.to_pydatetime(),
            issued_after=(issued - pd.Timedelta(RAIN_VINTAGE_AGE)).to_pydatetime())
    fresh = station_freshness(latest_usable(obs), ctx.catalogue, issued.to_pydatetime())
    return Inputs(obs, vintages, fresh)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CycleError) else f"{type(exc).__name__}: {exc}"


@dataclass
class _Forecast:
    """One river's forecast, computed and not yet stored."""

    river: River
    fc: pd.DataFrame
    variant: str
    lineage: dict[str, str]
    reasons: list[str]

    @property
    def version(self) -> str:
        return str(self.fc["model_version"].iloc[0])

    @property
    def degraded(self) -> bool:
        return self.variant != "full"

    @property
    def outcome(self) -> RiverOutcome:
        status = "degraded" if self.degraded or self.reasons else "ok"
        return RiverOutcome(self.river.id, status, self.version,
                            "; ".join(self.reasons) or None)


def _compute_river(report: CycleReport, river: River, inputs: Inputs, issued: pd.Timestamp,
                   models: ModelProvider,
                   prepared: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> _Forecast:
    problem: str | None = None
    try:
        got = models(river.id)
        if got is None:
            problem = "no champion model"
    except Exception as exc:   # a model that cannot be loaded: fall back, say why
        log.exception("cycle %s: loading the model of %s failed", report.cycle_id, river.id)
        got, problem = None, f"model not loaded ({_describe(exc)})"
    try:
        fc, variant, lineage, reasons = _forecast_one(river, inputs, issued, got, problem,
                                                      prepared)
    except CycleError:
        raise
    except Exception as exc:   # the model failed on these inputs: persistence, say why
        if got is None:
            raise
        log.exception("cycle %s: the model of %s failed", report.cycle_id, river.id)
        fc, variant, lineage, reasons = _forecast_one(
            river, inputs, issued, None, f"model {got[0]} failed ({_describe(exc)})", prepared)
    return _Forecast(river, fc, variant, lineage, reasons)


def _write(ctx: Context, conn: Connection, report: CycleReport, f: _Forecast,
           issued: pd.Timestamp) -> tuple[RiverOutcome, int]:
    """A river's six leads and its outcome row (in the caller's transaction); returns the
    outcome and the forecast run's id."""
    outcome = f.outcome
    run_id = save_forecast(conn, f.fc, model_variant=f.variant, input_cutoff=issued.to_pydatetime(),
                  degraded=f.degraded, inputs=f.lineage, created_at=ctx.clock.now(),
                  cycle_id=report.cycle_id, low_confidence=bool(f.reasons), reasons=f.reasons)
    record_outcome(conn, report.cycle_id, river_id=f.river.id, status=outcome.status,
                   model_version=outcome.model_version, message=outcome.message)
    return outcome, run_id


def _log_failure(report: CycleReport, river_id: str, exc: BaseException) -> RiverOutcome:
    if isinstance(exc, CycleError):
        log.warning("cycle %s: river %s failed: %s", report.cycle_id, river_id, exc)
    else:   # unexpected: keep the traceback in the log
        log.error("cycle %s: river %s failed unexpectedly", report.cycle_id, river_id,
                  exc_info=exc)
    return RiverOutcome(river_id, "failed", message=_describe(exc))


Result = _Forecast | Exception
"""A river's computed forecast, or why it has none."""


def _store(ctx: Context, report: CycleReport, river: River, res: Result,
           issued: pd.Timestamp, frames: list[pd.DataFrame]) -> None:
    """Store one river's forecast and outcome in their own transaction as soon as it is
    computed (a stopped process keeps the rivers it finished), or record why it has none."""
    try:
        if isinstance(res, Exception):
            raise res
        with transaction(ctx.engine, f"storing the forecast of {river.id}") as conn:
            outcome, run_id = _write(ctx, conn, report, res, issued)
        report.run_ids[river.id] = run_id
        _report(report, outcome, res, frames)
    except Exception as exc:   # any failure of one river: record, go on
        _record_failure(ctx, report, river.id, exc)


def _report(report: CycleReport, outcome: RiverOutcome, f: _Forecast | None,
            frames: list[pd.DataFrame]) -> None:
    """Add a stored river to the report (its forecast frame to ``frames``, joined once at the
    end of the stage: ``_join_forecasts``)."""
    if f is not None:
        frames.append(f.fc)
        if f.reasons:
            report.low_confidence[f.river.id] = f.reasons
    report.outcomes.append(outcome)


def _join_forecasts(report: CycleReport, frames: list[pd.DataFrame]) -> None:
    """``report.forecasts`` with ``frames`` appended: one concat for the whole stage, the same
    frame as one concat per river."""
    parts = ([report.forecasts] if len(report.forecasts) else []) + frames
    if len(parts) == 1:
        report.forecasts = parts[0]
    elif parts:
        report.forecasts = pd.concat(parts, ignore_index=True)


def forecast_stage(ctx: Context, report: CycleReport, *, models: ModelProvider | None = None,
                   rain_product: str | None = None) -> Inputs:
    """Forecast every river of the catalogue for ``report.issued_at`` into the open run
    ``report.cycle_id`` (the caller holds the issue-time lock and closes the run). Per-river
    failures are recorded, never raised; returns the inputs read (with their freshness).

    The inputs are read once, and every river's hourly frame and feature row are built in one
    pass (``_prepare``; the same frames as river by river); then each river is forecast and
    stored (its six leads and its outcome in one transaction) in turn."""
    issued = pd.Timestamp(report.issued_at)
    inputs = _read_inputs(ctx, issued, rain_product)
    provider = models if models is not None else champion_models(ctx)
    rivers = ctx.catalogue.rivers
    prepared = _prepare(rivers, inputs, issued)
    frames: list[pd.DataFrame] = []
    try:
        for river in rivers:
            res: Result
            try:
                res = _compute_river(report, river, inputs, issued, provider,
                                     prepared.get(river.id))
            except Exception as exc:   # any failure of one river: record, go on
                res = exc
            _store(ctx, report, river, res, issued, frames)
    finally:
        _join_forecasts(report, frames)
    return inputs


def open_run(ctx: Context, issued: pd.Timestamp, *, trigger: str, kind: str) -> CycleReport:
    """Start a run of ``issued`` (holding its lock): runs of it a stopped process left
    "running" are closed as interrupted first."""
    with transaction(ctx.engine, "starting a cycle") as conn:
        abandon_running(conn, issued.to_pydatetime(), finished_at=ctx.clock.now())
        cycle_id, revision = start_cycle(conn, issued_at=issued.to_pydatetime(),
                                         started_at=ctx.clock.now(), trigger=trigger,
                                         owner=ctx.owner, kind=kind)
    return CycleReport(cycle_id=cycle_id, revision=revision, issued_at=issued.to_pydatetime())


def run_cycle(ctx: Context, issued_at: datetime, *, models: ModelProvider | None = None,
              trigger: str = "cli", rain_product: str | None = None) -> CycleReport:
    """Forecast every river for ``issued_at`` (whole or half UTC hour) and store a new revision.

    ``models``: river id → (version, models); default the champions (``pipeline.models``).
    ``rain_product`` selects the rain-vintage product (None: any). Raises ``CycleError`` when
    the time is not an issue time or another process is running it; per-river failures are
    recorded in the report and the database, never raised.
    """
    issued = issue_time(issued_at)
    with issue_lock(ctx.engine, issued.to_pydatetime(), owner=ctx.owner, now=ctx.clock.now()):
        report = open_run(ctx, issued, trigger=trigger, kind="cycle")
        status: str = "failed"
        message: str | None = "aborted before any river was forecast"
        try:
            forecast_stage(ctx, report, models=models, rain_product=rain_product)
            status, message = report.status, None
        except Exception as exc:
            message = _describe(exc)
            raise
        finally:
            close_run(ctx, report.cycle_id, status, message)
    return report


def _record_failure(ctx: Context, report: CycleReport, river_id: str, exc: Exception) -> None:
    outcome = _log_failure(report, river_id, exc)
    report.outcomes.append(outcome)
    try:
        with transaction(ctx.engine, f"recording {river_id}") as conn:
            record_outcome(conn, report.cycle_id, river_id=river_id, status="failed",
                           message=outcome.message)
    except Exception:   # the database itself failing: the report still says so
        log.exception("cycle %s: recording the failure of %s failed", report.cycle_id,
                      river_id)


def close_run(ctx: Context, cycle_id: int, status: str, message: str | None, *,
              stages: dict[str, float] | None = None) -> None:
    """Close a run; a database that fails here is logged (the run then shows as running
    until the next run of its issue time closes it as interrupted)."""
    try:
        with transaction(ctx.engine, "closing a cycle") as conn:
            finish_cycle(conn, cycle_id, finished_at=ctx.clock.now(), status=status,
                         message=message, stages=stages)
    except Exception:
        log.exception("cycle %s could not be closed", cycle_id)

