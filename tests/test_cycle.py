"""One full cycle end to end on stored simulated data: features from storage, predict, store
with lineage. The forecast values equal an independent feature build + predict; a river
without a model, with broken inputs or whose model raises is recorded and the others go on;
the run is always closed; re-runs add revisions; one process per issue time; half-hour issue
times; data after the issue time never changes the forecast."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from helpers import context, run
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue
from forecast.errors import CycleError, StorageError
from forecast.features import build_features, river_hourly, targets
from forecast.frames import Flag
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.pipeline import cycle as cycle_mod
from forecast.pipeline.context import Context
from forecast.pipeline.cycle import run_cycle
from forecast.simulate import simulate
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage import cycles, forecasts
from forecast.storage.cycles import issue_lock
from forecast.storage.observations import read_observations, upsert_observations
from forecast.storage.rain import upsert_rain_vintages

START = datetime(2023, 5, 1, tzinfo=UTC)
END = datetime(2023, 7, 20, tzinfo=UTC)
T = datetime(2023, 7, 15, 6, tzinfo=UTC)
NOW = datetime(2023, 7, 15, 6, 5, tzinfo=UTC)


class TickingClock:
    """Each reading is one second after the previous (real start and finish times)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


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
    run(engine, upsert_observations, obs, source="simulated", now=NOW)
    run(engine, upsert_rain_vintages, rain, now=NOW)


def _recent(obs: pd.DataFrame, rain: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (obs.loc[obs["time"] >= pd.Timestamp("2023-07-05", tz="UTC")],
            rain.loc[rain["issued_at"] >= pd.Timestamp("2023-07-14", tz="UTC")])


def _provider(models: dict[str, LeadModels]):  # type: ignore[no-untyped-def]
    return lambda r: ("v1", models[r]) if r in models else None


def test_cycle_stores_the_models_forecast_with_lineage(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    o, r = _recent(obs, rain)
    _store(engine, o, r)
    ctx = context(engine, cat, NOW)
    report = run_cycle(ctx, T, models=_provider(models), trigger="test",
                       rain_product="simulated_forecast")
    status = {o.river_id: o.status for o in report.outcomes}
    # the river without a model gets the chain's last step: persistence, degraded, with why
    assert status[cat.rivers[2].id] == "degraded"
    assert report.status == "ok" and report.revision == 1
    assert "no champion model: persistence" in report.low_confidence[cat.rivers[2].id][0]
    everything = run(engine, forecasts.latest_forecasts)
    held = everything[everything["river_id"] == cat.rivers[2].id].sort_values("horizon_h")
    assert set(held["model_version"]) == {"persistence"}
    assert set(held["model_variant"]) == {"persistence"}
    assert held["q50"].nunique() == 1   # the level at T, carried forward
    assert (held["q10"] <= held["q50"]).all() and (held["q90"] >= held["q50"]).all()
    assert held["q90"].iloc[-1] - held["q10"].iloc[-1] >= held["q90"].iloc[0] - held["q10"].iloc[0]
    latest = everything[everything["river_id"] != cat.rivers[2].id]
    assert set(latest["river_id"]) == {r.id for r in cat.rivers[:2]}
    assert (latest["issued_at"] == pd.Timestamp(T)).all()
    assert (latest["input_cutoff"] == pd.Timestamp(T)).all()
    # independent check: the same features built from the stored rows, the same models
    stored = run(engine, read_observations, end=T + timedelta(seconds=1))
    for river in cat.rivers[:2]:
        hourly = river_hourly(stored[stored["station_id"].isin(river.station_codes)], river,
                              start=pd.Timestamp(T) - pd.Timedelta(days=8), end=pd.Timestamp(T))
        X = build_features(hourly, [pd.Timestamp(T)], future_rain="archive",
                           vintages=r[r["issued_at"] <= pd.Timestamp(T)], catchment_id=river.id)
        want = models[river.id].predict(X).sort_values("horizon_h")
        got = latest[latest["river_id"] == river.id].sort_values("horizon_h")
        assert got["horizon_h"].tolist() == [1, 2, 3, 4, 5, 6]
        np.testing.assert_allclose(got["q50"], want["q50"], rtol=1e-9)
        np.testing.assert_allclose(got["q90"], want["q90"], rtol=1e-9)
        assert (got["valid_at"] == pd.Timestamp(T) + pd.to_timedelta(got["horizon_h"], "h")).all()
        assert set(got["model_variant"]) == {str(want["model_variant"].iloc[0])}
        assert got["inputs"].iloc[0]["level_censored"] == "no"
    assert run(engine, cycles.read_outcomes, report.cycle_id)[2]["status"] == "degraded"


def test_future_data_does_not_change_the_forecast(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    recent = obs["time"] >= pd.Timestamp("2023-07-05", tz="UTC")
    upto = recent & (obs["time"] <= pd.Timestamp(T))
    rain_now = rain.loc[(rain["issued_at"] <= pd.Timestamp(T))
                        & (rain["issued_at"] >= pd.Timestamp("2023-07-14", tz="UTC"))]
    _store(engine, obs.loc[upto], rain_now)
    ctx = context(engine, cat, NOW)
    first = run_cycle(ctx, T, models=_provider(models)).forecasts
    assert len(first) == 18   # two rivers by their models, one by persistence (no model)
    later = obs.loc[recent & ~upto].assign(value=lambda d: d["value"] + 3.0)
    run(engine, upsert_observations, later, source="simulated", now=NOW)
    second = run_cycle(ctx, T, models=_provider(models))
    assert second.revision == 2
    pd.testing.assert_frame_equal(first.reset_index(drop=True),
                                  second.forecasts.reset_index(drop=True))
    # both revisions stay readable
    arch = run(engine, forecasts.forecast_archive, cat.rivers[0].id, T)
    assert sorted(arch["revision"].unique()) == [1, 2]


def test_missing_level_fails_one_river_only(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    o, r = _recent(obs, rain)
    gauge0 = cat.rivers[0].primary_gauge
    _store(engine, o[o["station_id"] != gauge0], r)
    report = run_cycle(context(engine, cat, NOW), T, models=_provider(models))
    status = {o.river_id: o.status for o in report.outcomes}
    msg = {o.river_id: o.message for o in report.outcomes}
    assert status[cat.rivers[0].id] == "failed"
    assert "no usable level" in str(msg[cat.rivers[0].id])
    assert "data feed" in str(msg[cat.rivers[0].id])
    assert status[cat.rivers[1].id] in ("ok", "degraded")


class Exploding:
    """A model that fails with an error that is not a ForecastError."""

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        raise RuntimeError("segfault in the model library")


def test_a_model_that_fails_falls_back_to_persistence_and_says_why(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    _store(engine, *_recent(obs, rain))
    boom = cat.rivers[0].id
    provider = lambda r: ("bad", Exploding()) if r == boom else _provider(models)(r)  # noqa: E731
    ctx = Context.of(engine, cat, clock=TickingClock(NOW))
    report = run_cycle(ctx, T, models=provider)
    status = {o.river_id: (o.status, o.message) for o in report.outcomes}
    assert status[boom][0] == "degraded"
    assert str(status[boom][1]).startswith(
        "model bad failed (RuntimeError: segfault in the model library): persistence")
    assert status[cat.rivers[1].id][0] in ("ok", "degraded")
    runs = run(engine, cycles.read_cycles, issued_at=T)
    assert runs["status"].tolist() == ["ok"]
    assert (runs["finished_at"] > runs["started_at"]).all()
    latest = run(engine, forecasts.latest_forecasts, boom)
    assert set(latest["model_variant"]) == {"persistence"} and len(latest) == 6


def test_any_error_in_one_river_is_recorded_and_the_run_is_closed(  # type: ignore[no-untyped-def]
        engine: Engine, world, monkeypatch) -> None:
    cat, obs, rain, models = world
    _store(engine, *_recent(obs, rain))
    boom = cat.rivers[0].id
    real = cycle_mod.save_forecast

    def save(conn, fc, **kw):  # type: ignore[no-untyped-def]
        if fc["river_id"].iloc[0] == boom:
            raise RuntimeError("disk on fire")
        return real(conn, fc, **kw)

    monkeypatch.setattr(cycle_mod, "save_forecast", save)
    ctx = Context.of(engine, cat, clock=TickingClock(NOW))
    report = run_cycle(ctx, T, models=_provider(models))
    status = {o.river_id: (o.status, o.message) for o in report.outcomes}
    assert status[boom] == ("failed", "RuntimeError: disk on fire")
    assert status[cat.rivers[1].id][0] in ("ok", "degraded")
    runs = run(engine, cycles.read_cycles, issued_at=T)
    assert runs["status"].tolist() == ["partial"]
    assert (runs["finished_at"] > runs["started_at"]).all()
    assert {o["river_id"]: o["status"] for o in run(engine, cycles.read_outcomes,
                                                    report.cycle_id)}[boom] == "failed"
    assert boom not in set(run(engine, forecasts.latest_forecasts)["river_id"])


def test_a_failure_outside_the_rivers_closes_the_run_as_failed(
        engine: Engine, world, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    cat, _, _, models = world

    def broken(*_a, **_k):  # type: ignore[no-untyped-def]
        raise StorageError("reading the cycle's inputs failed: server closed the connection")

    monkeypatch.setattr(cycle_mod, "_read_inputs", broken)
    with pytest.raises(StorageError):
        run_cycle(context(engine, cat, NOW), T, models=_provider(models))
    runs = run(engine, cycles.read_cycles, issued_at=T)
    assert runs["status"].tolist() == ["failed"]
    assert "server closed the connection" in runs["message"].iloc[0]
    assert runs["finished_at"].notna().all()
    with issue_lock(engine, T, owner="x", now=NOW):   # and the lock was released
        pass


def test_half_hour_issue_time_and_bad_times(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    _store(engine, *_recent(obs, rain))
    half = T + timedelta(minutes=30)
    report = run_cycle(context(engine, cat, NOW + timedelta(minutes=30)), half,
                       models=_provider(models))
    fc = report.forecasts
    assert set(fc["issued_at"]) == {pd.Timestamp(half)}
    assert sorted((fc["valid_at"] - pd.Timestamp(half)).dt.total_seconds().unique()) == \
        [3600.0 * h for h in range(1, 7)]
    lineage = run(engine, forecasts.latest_forecasts, cat.rivers[1].id)
    level_at = pd.Timestamp(lineage["inputs"].iloc[0]["level_at"])
    assert pd.Timestamp(half) - pd.Timedelta(minutes=30) < level_at <= pd.Timestamp(half)
    for bad in (T + timedelta(minutes=15), T.replace(tzinfo=None)):
        with pytest.raises(CycleError):
            run_cycle(context(engine, cat, NOW), bad, models=_provider(models))


def test_doubtful_level_marks_the_forecast_low_confidence(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, obs, rain, models = world
    o, r = _recent(obs, rain)
    river = cat.rivers[1]
    at_t = (o["station_id"] == river.primary_gauge) & (o["time"] == pd.Timestamp(T))
    assert at_t.sum() == 1
    o = o.copy()
    o.loc[at_t, "flag"] = int(Flag.DOUBTFUL)
    o.loc[at_t, "qc_rule"] = "rate_of_rise"
    _store(engine, o, r)
    report = run_cycle(context(engine, cat, NOW), T, models=_provider(models))
    reasons = report.low_confidence[river.id]
    assert any("DOUBTFUL" in x and "rate_of_rise" in x for x in reasons)
    got = run(engine, forecasts.latest_forecasts, river.id)
    assert bool(got["low_confidence"].iloc[0]) and got["reasons"].iloc[0] == reasons
    assert {x.river_id: x.status for x in report.outcomes}[river.id] == "degraded"
    assert cat.rivers[0].id not in report.low_confidence


def test_two_processes_never_run_one_issue_time(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """While this process holds the issue time, `forecast cycle` in another process refuses."""
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "FORECAST_DATABASE_URL": url,
           "FORECAST_CATALOGUE": "config/reference_rivers.yaml",
           "FORECAST_MODELS_DIR": str(tmp_path / "models")}
    cmd = [sys.executable, "-m", "forecast.cli", "cycle", "--at", T.isoformat()]
    with issue_lock(engine, T, owner="test-holder:1", now=datetime.now(UTC)):
        held = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
    assert held.returncode == 1, held.stderr
    assert "being run by another process" in held.stderr
    assert "Traceback" not in held.stderr
    free = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert "another process" not in free.stderr
    assert "revision 1" in free.stdout
