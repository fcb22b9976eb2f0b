"""The forecast cycle: the one place that composes stored inputs → features → predict → store.

``run_cycle`` forecasts every river of the catalogue for one issue time T, using only data
with observation time ≤ T (and rain vintages issued ≤ T), and stores each forecast with its
lineage (model version and variant, input cut-off, which inputs were used or missing). A river
that fails (no model, no recent level, a broken model) is recorded in the cycle's outcomes and
the other rivers go on. A crisis gauge at or below its start level is no missing level: the
river frame gives it the start level (``features`` module docstring), the forecast is issued
and its lineage says ``level_censored: yes``. The scheduler, the CLI and the demo/replay all
call this function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue, River
from forecast.errors import CycleError, ForecastError
from forecast.features import CENSORED, build_features, river_hourly
from forecast.modelling.lgbm import LeadModels
from forecast.storage import repository
from forecast.storage.observations import read_observations

log = logging.getLogger(__name__)

ModelProvider = Callable[[str], tuple[str, LeadModels] | None]
"""river id → (model version, trained models), or None when the river has no model."""

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
    issued_at: datetime
    outcomes: list[RiverOutcome] = field(default_factory=list)
    forecasts: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def status(self) -> str:
        failed = sum(o.status in ("failed", "skipped") for o in self.outcomes)
        if failed == len(self.outcomes):
            return "failed"
        return "partial" if failed else "ok"


def _forecast_one(river: River, obs: pd.DataFrame, vintages: pd.DataFrame, issued: pd.Timestamp,
                  version: str, models: LeadModels) -> tuple[pd.DataFrame, str, dict[str, str]]:
    mine = obs.loc[obs["station_id"].isin(river.station_codes)]
    hourly = river_hourly(mine, river, start=issued - pd.Timedelta(LOOKBACK), end=issued)
    valid = hourly.index[hourly["level_m"].notna().to_numpy()]
    last_level = valid.max() if len(valid) else None
    if last_level is None or issued - last_level > STALE_LEVEL:
        raise CycleError(f"river {river.id}: no usable level at {river.primary_gauge} in the "
                         f"{STALE_LEVEL} before {issued:%Y-%m-%d %H:%M}Z")
    X = build_features(hourly, [issued], future_rain="archive", vintages=vintages,
                       catchment_id=river.id)
    if not np.isfinite(X["level_m"].iloc[0]):
        kind = (" (crisis gauge: silent without a recent reading near or below its start "
                "level, so not read as low water)") if river.gauge.kind == "crisis" else ""
        raise CycleError(f"river {river.id}: no level reading at {river.primary_gauge} in the "
                         f"30 min before {issued:%Y-%m-%d %H:%M}Z{kind}")
    pred = models.predict(X)
    if pred[["level", "q10", "q50", "q90"]].isna().any().any():
        raise CycleError(f"river {river.id}: the model gave no forecast for {issued}")
    variant = str(pred["model_variant"].iloc[0])
    inputs = {
        "used": str(pred["inputs"].iloc[0]),
        "forecast_rain": "ok" if X.filter(like="rain_fc_").notna().all(axis=None) else "missing",
        "rain_gauges": "ok" if np.isfinite(X["rain_1h"].iloc[0]) else "missing",
        "level_at": last_level.isoformat(),
        # a crisis gauge at or below its start level: the level used is that start level
        "level_censored": "yes" if X[CENSORED].iloc[0] > 0 else "no",
    }
    fc = pred.assign(
        river_id=river.id, issued_at=issued, model_version=version,
        valid_at=issued + pd.to_timedelta(pred["horizon_h"], unit="h"),
    )
    return fc, variant, inputs


def run_cycle(engine: Engine, catalogue: Catalogue, issued_at: datetime, *,
              models: ModelProvider, now: datetime, trigger: str = "cli",
              rain_product: str | None = None) -> CycleReport:
    """Forecast every river for issue time ``issued_at`` (a whole UTC hour) and store it.

    ``now`` is the wall-clock time of the run (lineage only: the data cut-off is
    ``issued_at``). ``rain_product`` selects the rain-vintage product (None: any).
    """
    issued = pd.Timestamp(issued_at).tz_convert("UTC")
    if issued != issued.floor("h"):
        raise CycleError(f"issue time must be a whole hour, got {issued}")
    cycle_id = repository.start_cycle(engine, issued_at=issued.to_pydatetime(), started_at=now,
                                      trigger=trigger)
    report = CycleReport(cycle_id=cycle_id, issued_at=issued.to_pydatetime())
    stations = sorted({s for r in catalogue.rivers for s in r.station_codes})
    obs = read_observations(engine, station_ids=stations,
                            start=(issued - pd.Timedelta(LOOKBACK)).to_pydatetime(),
                            end=(issued + pd.Timedelta(seconds=1)).to_pydatetime())
    vintages = repository.read_rain_vintages(
        engine, product=rain_product, issued_before=issued.to_pydatetime(),
        issued_after=(issued - pd.Timedelta(RAIN_VINTAGE_AGE)).to_pydatetime())
    stored: list[pd.DataFrame] = []
    for river in catalogue.rivers:
        try:
            got = models(river.id)
            if got is None:
                report.outcomes.append(RiverOutcome(river.id, "skipped",
                                                    message="no trained model"))
                continue
            version, lead_models = got
            fc, variant, inputs = _forecast_one(river, obs, vintages, issued, version,
                                                lead_models)
            degraded = variant != "full"
            repository.save_forecast(engine, fc, model_variant=variant,
                                     input_cutoff=issued.to_pydatetime(), degraded=degraded,
                                     inputs=inputs, created_at=now, cycle_id=cycle_id)
            stored.append(fc)
            report.outcomes.append(RiverOutcome(
                river.id, "degraded" if degraded else "ok", version,
                f"model variant {variant}" if degraded else None))
        except ForecastError as exc:
            log.warning("cycle %s: river %s failed: %s", cycle_id, river.id, exc)
            report.outcomes.append(RiverOutcome(river.id, "failed", message=str(exc)))
    if stored:
        report.forecasts = pd.concat(stored, ignore_index=True)
    repository.finish_cycle(
        engine, cycle_id, finished_at=now, status=report.status,
        outcomes=[{"river_id": o.river_id, "status": o.status,
                   "model_version": o.model_version, "message": o.message}
                  for o in report.outcomes])
    return report
