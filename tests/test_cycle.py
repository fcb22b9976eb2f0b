"""One full cycle end to end on stored simulated data: features from storage, predict, store
with lineage; a river without a model or with broken inputs is recorded and the others go on;
data after the issue time never changes the forecast."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue
from forecast.cycle import run_cycle
from forecast.features import build_features, river_hourly, targets
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.simulate import simulate
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage import repository
from forecast.storage.observations import read_observations, upsert_observations

START = datetime(2023, 5, 1, tzinfo=UTC)
END = datetime(2023, 7, 20, tzinfo=UTC)
T = datetime(2023, 7, 15, 6, tzinfo=UTC)
NOW = datetime(2023, 7, 15, 6, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> tuple[Catalogue, pd.DataFrame, pd.DataFrame, dict[str, LeadModels]]:
    cat = synthetic_catalogue(3, seed=4, crisis_share=0.0)
    sim = simulate(cat, START, END, seed=11)
    obs = sim.observations.drop(columns=["received_at"])
    train_end = pd.Timestamp("2023-07-01", tz="UTC")
    models = {}
    for river in cat.rivers[:2]:   # the third river deliberately has no model
        hourly = river_hourly(obs, river, end=train_end)
        times = hourly.index[48:-6]
        X = build_features(hourly, times, future_rain="archive", vintages=sim.rain_forecasts,
                           catchment_id=river.id)
        Y = targets(hourly, times)
        models[river.id] = LeadModels.train(
            X, Y, high_water_m=river.thresholds.ladder()[0][1],
            settings=LgbmSettings(num_rounds=40, fallbacks=True), name=river.id)
    return cat, obs, sim.rain_forecasts, models


def _store(engine: Engine, obs: pd.DataFrame, rain: pd.DataFrame) -> None:
    upsert_observations(engine, obs, source="simulated", now=NOW)
    repository.upsert_rain_vintages(engine, rain, now=NOW)


def test_cycle_stores_forecasts_with_lineage_and_goes_on(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    window = obs["time"] >= pd.Timestamp("2023-07-05", tz="UTC")
    _store(engine, obs.loc[window], rain.loc[rain["issued_at"] >= pd.Timestamp("2023-07-14",
                                                                               tz="UTC")])
    report = run_cycle(engine, cat, T, models=lambda r: ("v1", models[r]) if r in models else None,
                       now=NOW, trigger="test", rain_product="simulated_forecast")
    status = {o.river_id: o.status for o in report.outcomes}
    assert status[cat.rivers[2].id] == "skipped"
    assert all(status[r.id] in ("ok", "degraded") for r in cat.rivers[:2])
    assert report.status == "partial"
    latest = repository.latest_forecasts(engine)
    assert set(latest["river_id"]) == {r.id for r in cat.rivers[:2]}
    assert (latest["issued_at"] == pd.Timestamp(T)).all()
    assert sorted(latest["horizon_h"].unique()) == [1, 2, 3, 4, 5, 6]
    assert (latest["q10"] <= latest["q50"]).all() and (latest["q50"] <= latest["q90"]).all()
    assert (latest["input_cutoff"] == pd.Timestamp(T)).all()
    assert set(latest["model_variant"]) == {"full"}


def test_future_data_does_not_change_the_forecast(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    provider = lambda r: ("v1", models[r]) if r in models else None  # noqa: E731
    recent = obs["time"] >= pd.Timestamp("2023-07-05", tz="UTC")
    upto = recent & (obs["time"] <= pd.Timestamp(T))
    rain_now = rain.loc[(rain["issued_at"] <= pd.Timestamp(T))
                        & (rain["issued_at"] >= pd.Timestamp("2023-07-14", tz="UTC"))]
    _store(engine, obs.loc[upto], rain_now)
    first = run_cycle(engine, cat, T, models=provider, now=NOW).forecasts
    later = obs.loc[recent & ~upto].assign(value=lambda d: d["value"] + 3.0)
    upsert_observations(engine, later, source="simulated", now=NOW)
    second = run_cycle(engine, cat, T, models=provider, now=NOW).forecasts
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))


def test_missing_level_fails_one_river_only(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    gauge0 = cat.rivers[0].primary_gauge
    keep = (obs["time"] >= pd.Timestamp("2023-07-05", tz="UTC")) & (obs["station_id"] != gauge0)
    _store(engine, obs.loc[keep], rain.loc[rain["issued_at"] >= pd.Timestamp("2023-07-14",
                                                                             tz="UTC")])
    report = run_cycle(engine, cat, T, models=lambda r: ("v1", models[r]) if r in models else None,
                       now=NOW)
    status = {o.river_id: o.status for o in report.outcomes}
    assert status[cat.rivers[0].id] == "failed"
    assert status[cat.rivers[1].id] in ("ok", "degraded")
    assert not read_observations(engine, station_ids=[gauge0]).shape[0]
