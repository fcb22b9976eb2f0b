"""Freshness, readiness and metrics (``pipeline.status``) and their HTTP endpoints."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from forecast.api.app import create_app
from forecast.catalogue import Catalogue
from forecast.clock import FixedClock
from forecast.ingest.replay import Replay
from forecast.pipeline import status
from forecast.pipeline.collect import collect_replay
from forecast.pipeline.context import Context
from forecast.pipeline.schedule import Scheduler
from forecast.pipeline.tick import Feeds, run_tick
from forecast.qc.freshness import STALE_AFTER
from forecast.settings import load_settings
from forecast.simulate import simulate
from forecast.simulate.demo_catalogue import synthetic_catalogue

T = datetime(2023, 7, 15, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> tuple[Catalogue, Replay]:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    sim = simulate(cat, datetime(2023, 7, 1, tzinfo=UTC), T + timedelta(days=1), seed=11)
    return cat, Replay.of(sim.observations, sim.rain_forecasts, name="simulated")


@pytest.fixture
def ticked(engine: Engine, world) -> tuple[Context, FixedClock]:  # type: ignore[no-untyped-def]
    cat, replay = world
    clock = FixedClock(T + timedelta(minutes=25))
    ctx = Context.of(engine, cat, clock=clock)
    collect_replay(ctx, replay, T - timedelta(hours=1), window=timedelta(days=8))
    assert run_tick(ctx, T, feeds=Feeds(replay=replay), trigger="schedule").status == "ok"
    return ctx, clock


def _metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_ready_after_an_on_time_tick_and_not_when_the_next_is_late(ticked) -> None:  # type: ignore[no-untyped-def]
    ctx, clock = ticked
    r = status.readiness(ctx)
    assert r.ready and not r.problems and not r.stale
    assert r.last_tick is not None and r.last_tick["issued_at"] == T
    assert {s["source"] for s in r.last_tick["sources"]} == {"simulated"}
    clock.advance(timedelta(hours=2))   # no tick since: 06:30 ... 07:30 are late
    late = status.readiness(ctx)
    assert not late.ready
    assert "has not finished" in late.problems[0] and "06:00Z" in late.problems[0]
    # nothing came in for 2 hours: every telemetry station is stale, and says since when
    assert late.stale and all("min)" in s for s in late.stale)
    assert any(s.startswith("primary ") for s in late.stale)


def test_freshness_compares_each_station_with_its_cadence(ticked) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ticked
    now = status.freshness(ctx)
    assert set(now.stations["status"]) == {"ok"}
    assert (now.stations["age_min"] < STALE_AFTER.total_seconds() / 60).all()
    later = status.freshness(ctx, T + timedelta(hours=3))
    assert set(later.stations["status"]) == {"stale"}
    assert set(now.products["product"]) and set(later.products["status"]) == {"stale"}


def test_metrics_describe_the_newest_tick_rivers_and_sources(ticked) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ticked
    m = _metrics(status.metrics_text(status.metrics_registry(ctx)).decode())
    assert m["forecast_ticks_total"] == [({"status": "ok", "trigger": "schedule"}, 1.0)]
    assert {lb["stage"] for lb, _ in m["forecast_tick_stage_seconds"]} == {
        "collect", "forecast", "notify", "total"}
    rivers = {lb["river"]: lb["status"] for lb, _ in m["forecast_river_status"]}
    assert set(rivers) == set(ctx.catalogue.ids)
    assert m["forecast_source_status"] == [({"source": "simulated", "status": "ok"}, 1.0)]
    assert m["forecast_ticks_missed_24h"] == [({}, 0.0)]
    assert m["forecast_last_tick_age_seconds"][0][1] == 25 * 60
    assert all(v < 3600 for _, v in m["forecast_station_age_seconds"])
    assert [lb["source"] for lb, _ in m["forecast_source_age_seconds"]] == ["simulated"]
    assert m["forecast_source_age_seconds"][0][1] <= 25 * 60


def test_http_ready_and_metrics(ticked) -> None:  # type: ignore[no-untyped-def]
    ctx, clock = ticked
    client = TestClient(create_app(ctx))
    got = client.get("/ready")
    assert got.status_code == 200 and got.json()["ready"] is True
    assert got.json()["last_tick"]["issued_at"] == T.isoformat()
    assert client.get("/metrics").status_code == 401   # Prometheus scrapes with a key
    from forecast.pipeline.access import create_key

    key, _ = create_key(ctx, name="prometheus", roles=["viewer"], actor="test")
    scrape = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    assert "forecast_river_status" in scrape.text
    clock.advance(timedelta(hours=2))
    late = client.get("/ready")
    assert late.status_code == 503 and late.json()["problems"]
    assert client.get("/health").status_code == 200   # liveness is not readiness


def test_serve_runs_the_scheduler_with_the_app_and_stops_it(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay = world
    ctx = Context.of(engine, cat, clock=FixedClock(T + timedelta(minutes=21)),
                     settings=load_settings({}, catchup_limit=1))
    collect_replay(ctx, replay, T - timedelta(hours=1), window=timedelta(days=8))
    sched = Scheduler(ctx, feeds=Feeds(replay=replay))
    with TestClient(create_app(ctx, scheduler=sched)) as client:
        assert sched.running
        for _ in range(400):   # the start-up catch-up runs at once, in the background
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        body = client.get("/ready").json()
    assert body["ready"] is True and body["last_tick"]["issued_at"] == T.isoformat()
    assert not sched.running   # stopped with the app
