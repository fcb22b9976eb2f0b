"""A small world for the page's tests: two synthetic rivers, the first rising through its
ladder to above 避難判断 (in flood) with rain on its catchment and a forecast-rain vintage,
replayed tick by tick through ``run_tick`` (persistence forecasts: ``models=lambda r: None``)
so that forecasts and notifications exist; the second river's gauge is never heard from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.catalogue import AlertLevel, Catalogue
from forecast.clock import FixedClock
from forecast.ingest.replay import Replay
from forecast.pipeline.access import dev_issuer
from forecast.pipeline.collect import store_observations
from forecast.pipeline.context import Context
from forecast.pipeline.tick import Feeds, run_tick
from forecast.settings import load_settings
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage.engine import create_engine, migrate

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
TICKS = 22   # 11 h of half-hourly ticks


@dataclass
class World:
    ctx: Context
    cat: Catalogue
    flooded: str
    quiet: str

    def token(self, *roles: str, name: str = "suzuki@pref.mie.example") -> str:
        return dev_issuer(self.ctx).mint(subject=f"u-{name}", name=name, roles=list(roles),
                                         minutes=60)


def _inputs(cat: Catalogue) -> tuple[pd.DataFrame, pd.DataFrame]:
    river = cat.rivers[0]
    ladder = [(AlertLevel.from_key(n), v) for n, v in river.thresholds.ladder()]
    low = ladder[0][1] - 0.6
    crest = dict(ladder)[AlertLevel.EVACUATION] + 0.15
    times = pd.date_range(T0 - timedelta(days=2), T0 + timedelta(hours=12), freq="10min")
    hours = (times - pd.Timestamp(T0)) / pd.Timedelta(hours=1)
    rise = np.clip((hours - 4) / 6.5, 0.0, 1.0)   # 04:00 to 10:30 (the last tick), then held
    wobble = 0.04 * np.sin(hours * 2.1) + np.random.default_rng(4).normal(0, 0.015, len(hours))
    level = low + (crest - low) * rise + wobble
    obs = [pd.DataFrame({"station_id": river.primary_gauge, "variable": "level_m",
                         "time": times, "value": level, "flag": 0, "qc_rule": None,
                         "provisional": False})]
    rain_mm = np.where((hours > 1) & (hours < 9), 2.5 + 1.5 * np.sin(hours), 0.0)   # per 10 min
    for g in river.rain_gauges:
        obs.append(pd.DataFrame({"station_id": g.code, "variable": "rain_mm", "time": times,
                                 "value": rain_mm, "flag": 0, "qc_rule": None,
                                 "provisional": False}))
    vint = []
    for k in range(TICKS):
        issued = T0 + timedelta(minutes=30 * k)
        for h in range(1, 7):
            vint.append({"product": "simulated", "catchment_id": river.id,
                         "issued_at": issued, "valid_at": issued + timedelta(hours=h),
                         "value": max(0.0, 12.0 - 2.0 * h)})
    rain = pd.DataFrame(vint)
    for c in ("issued_at", "valid_at"):
        rain[c] = pd.to_datetime(rain[c], utc=True)
    return pd.concat(obs, ignore_index=True), rain


def build_world(tmp: Path) -> World:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    engine = create_engine(f"sqlite:///{tmp / 'web.db'}")
    migrate(engine)
    clock = FixedClock(T0)
    settings = load_settings({"FORECAST_AUTH_DEV": "true", "FORECAST_DATA_DIR": str(tmp),
                              "FORECAST_PUBLIC_URL": "http://127.0.0.1:8000"})
    ctx = Context.of(engine, cat, clock=clock, settings=settings)
    obs, rain = _inputs(cat)
    # the history before the first tick, stored as a collect would have (the persistence
    # forecast's band comes from the level changes of the last days)
    store_observations(ctx, obs[obs["time"] < T0], source="simulated", now=T0)
    feeds = Feeds(replay=Replay.of(obs, rain, name="simulated"))
    for k in range(TICKS):
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        run_tick(ctx, t, feeds=feeds, models=lambda r: None)
    return World(ctx=ctx, cat=cat, flooded=cat.rivers[0].id, quiet=cat.rivers[1].id)
