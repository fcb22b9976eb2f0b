"""Small helpers shared by the tests (on the path through pytest's ``pythonpath``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue
from forecast.clock import FixedClock
from forecast.pipeline.context import Context
from forecast.storage.engine import transaction

T = TypeVar("T")


def run(engine: Engine, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call one repository function in its own transaction."""
    with transaction(engine) as conn:
        return fn(conn, *args, **kwargs)


def context(engine: Engine, catalogue: Catalogue, at: datetime,
            models_root: Path = Path("models")) -> Context:
    """A pipeline context on a test database with a fixed clock at ``at``."""
    return Context.of(engine, catalogue, clock=FixedClock(at), models_root=models_root)


def tick_world() -> tuple[Catalogue, Any, dict[str, Any]]:
    """Three simulated rivers (June–20 July 2023), their replay feed (name ``simulated``) and
    small trained models per river: the world of the tick tests."""
    from datetime import UTC

    import pandas as pd

    from forecast.features import build_features, river_hourly, targets
    from forecast.ingest.replay import Replay
    from forecast.modelling.lgbm import LeadModels, LgbmSettings
    from forecast.simulate import simulate
    from forecast.simulate.demo_catalogue import synthetic_catalogue

    cat = synthetic_catalogue(3, seed=4, crisis_share=0.0)
    sim = simulate(cat, datetime(2023, 6, 1, tzinfo=UTC), datetime(2023, 7, 20, tzinfo=UTC),
                   seed=11)
    obs = sim.observations.drop(columns=["received_at"])
    train_end = pd.Timestamp("2023-07-01", tz="UTC")
    models = {}
    for river in cat.rivers:
        hourly = river_hourly(obs, river, end=train_end)
        times = hourly.index[48:-6]
        X = build_features(hourly, times, future_rain="archive", vintages=sim.rain_forecasts,
                           catchment_id=river.id)
        models[river.id] = LeadModels.train(
            X, targets(hourly, times), high_water_m=river.thresholds.ladder()[0][1],
            settings=LgbmSettings(num_rounds=30, fallbacks=True), name=river.id)
    return cat, Replay.of(sim.observations, sim.rain_forecasts, name="simulated"), models


def rising_world(d: Path, *, ticks: int, env: dict[str, str] | None = None) -> Context:
    """Two synthetic rivers with their catalogue in ``d/rivers.yaml`` and SQLite in ``d``; the
    first rises through standby and caution (``test_notify_stage._path``), the second's gauge
    is never heard from. ``ticks`` half-hourly ticks from ``T0`` with persistence forecasts
    and the real notification stage. ``env``: more ``FORECAST_*`` settings. A CLI test also
    sets ``FORECAST_DATA_DIR`` and ``FORECAST_CATALOGUE`` to ``d`` and ``d/rivers.yaml``."""
    from datetime import timedelta

    import yaml
    from test_notify_stage import T0, _path

    from forecast.ingest.replay import Replay
    from forecast.pipeline.demo import init_db
    from forecast.pipeline.tick import Feeds, run_tick
    from forecast.settings import load_settings
    from forecast.simulate.demo_catalogue import synthetic_catalogue
    from forecast.storage.engine import create_engine

    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    (d / "rivers.yaml").write_text(yaml.safe_dump(cat.model_dump(mode="json",
                                                                 exclude_none=True),
                                                  allow_unicode=True), encoding="utf-8")
    settings = load_settings({"FORECAST_DATA_DIR": str(d),
                              "FORECAST_CATALOGUE": str(d / "rivers.yaml"), **(env or {})})
    clock = FixedClock(T0)
    ctx = Context.of(create_engine(settings.db_url), cat, clock=clock, settings=settings)
    init_db(ctx)
    obs, _ = _path(cat)
    feeds = Feeds(replay=Replay.of(obs, name="simulated"))
    for k in range(ticks):
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        run_tick(ctx, t, feeds=feeds, models=lambda r: None)
    return ctx
