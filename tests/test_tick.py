"""The operational tick (``pipeline.tick``): replay and live feeds, source outcomes, stages,
idempotence, catch-up, interrupted runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest
from helpers import run, tick_world
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue
from forecast.clock import FixedClock
from forecast.ingest.fetch import Fetcher, RetryPolicy
from forecast.ingest.replay import Replay
from forecast.ingest.sources import UrlList
from forecast.modelling.lgbm import LeadModels
from forecast.pipeline.context import Context
from forecast.pipeline.tick import Feeds, due_issue_times, run_due, run_tick
from forecast.storage import cycles, forecasts
from forecast.storage.archive import read_fetches

T = datetime(2023, 7, 15, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> tuple[Catalogue, Replay, dict[str, LeadModels]]:
    return tick_world()


def _ctx(engine: Engine, cat: Catalogue, now: datetime, **kw) -> Context:  # type: ignore[no-untyped-def]
    return Context.of(engine, cat, clock=FixedClock(now), **kw)


def _provider(models: dict[str, LeadModels]):  # type: ignore[no-untyped-def]
    return lambda r: ("v1", models[r]) if r in models else None


def _backfill(ctx: Context, replay: Replay, until: datetime) -> None:
    """The stored history a running service would have: 8 days up to ``until``."""
    from forecast.pipeline.collect import collect_replay

    collect_replay(ctx, replay, until, window=timedelta(days=8))


def test_a_tick_collects_forecasts_and_records_everything(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay, models = world
    ctx = _ctx(engine, cat, T + timedelta(minutes=25))
    _backfill(ctx, replay, T - timedelta(hours=1))
    tick = run_tick(ctx, T, feeds=Feeds(replay=replay), models=_provider(models),
                    trigger="test")
    assert tick.status == "ok", tick
    assert [s.source for s in tick.sources] == ["simulated"]
    assert tick.sources[0].status == "ok" and tick.sources[0].rows > 0
    assert set(tick.stages) == {"collect", "forecast", "notify", "total"}
    runs = run(engine, cycles.read_cycles, issued_at=T)
    assert runs["kind"].tolist() == ["tick"] and runs["status"].tolist() == ["ok"]
    assert set(runs["stages"].iloc[0]) == {"collect", "forecast", "notify", "total"}
    src = run(engine, cycles.read_source_outcomes, int(runs["id"].iloc[0]))
    assert src[0]["source"] == "simulated" and src[0]["status"] == "ok"
    latest = run(engine, forecasts.latest_forecasts)
    assert sorted(latest["river_id"].unique()) == sorted(cat.ids)
    # the hour just before T came in through the tick (archived as a replay payload)
    uris = [str(f["uri"]) for f in run(engine, read_fetches)]
    assert any("clock=2023-07-15T06:20:00" in u for u in uris)


def test_a_second_tick_of_the_same_time_does_nothing_unless_forced(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay, models = world
    ctx = _ctx(engine, cat, T + timedelta(minutes=25))
    _backfill(ctx, replay, T - timedelta(hours=1))
    feeds = Feeds(replay=replay)
    first = run_tick(ctx, T, feeds=feeds, models=_provider(models))
    again = run_tick(ctx, T, feeds=feeds, models=_provider(models))
    assert again.status == "skipped" and "already has a finished tick" in str(again.skipped)
    forced = run_tick(ctx, T, feeds=feeds, models=_provider(models), force=True)
    assert first.cycle and forced.cycle and forced.cycle.revision == first.cycle.revision + 1
    assert len(run(engine, cycles.read_cycles, issued_at=T)) == 2


def test_due_issue_times_are_the_newest_missed_ones_oldest_first() -> None:
    now = datetime(2026, 12, 1, 3, 21, tzinfo=UTC)
    done = {datetime(2026, 12, 1, 2, 0, tzinfo=UTC)}
    got = due_issue_times(now, delay=timedelta(minutes=20), limit=4, done=done)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    assert got == [day.replace(hour=1, minute=30), day.replace(hour=2, minute=30),
                   day.replace(hour=3)]
    # at :19 the tick of :00 is not due yet
    early = due_issue_times(now - timedelta(minutes=2), delay=timedelta(minutes=20), limit=1,
                            done=set())
    assert early == [datetime(2026, 12, 1, 2, 30, tzinfo=UTC)]


def test_run_due_catches_up_after_a_clock_jump(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay, _ = world
    clock = FixedClock(T + timedelta(minutes=21))
    ctx = Context.of(engine, cat, clock=clock)
    _backfill(ctx, replay, T - timedelta(hours=1))
    feeds = Feeds(replay=replay)
    first = run_due(ctx, feeds=feeds, limit=1)
    assert [t.issued_at for t in first.ticks] == [T]
    clock.advance(timedelta(hours=3))     # the process slept (or the clock jumped) 3 hours
    later = run_due(ctx, feeds=feeds, limit=4)
    issued = [t.issued_at for t in later.ticks]
    assert issued == [T + timedelta(minutes=30 * k) for k in range(3, 7)]
    assert [t.cycle.cycle_id for t in later.ticks] == sorted(t.cycle.cycle_id for t in later.ticks)
    triggers = run(engine, cycles.read_cycles, kind="tick")["trigger"].tolist()
    assert triggers.count("catchup") == 3 and triggers.count("schedule") == 2
    assert later.missed == [T + timedelta(minutes=30), T + timedelta(minutes=60)]
    assert all(t.status in ("ok", "partial") for t in later.ticks)


def _live(responder):  # type: ignore[no-untyped-def]
    fetcher = Fetcher(httpx.Client(transport=httpx.MockTransport(responder)),
                      retry=RetryPolicy(attempts=2, base_delay_s=0.0), sleep=lambda s: None)
    return fetcher


def test_a_failing_live_source_is_recorded_and_forecasts_still_run(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay, models = world
    fetcher = _live(lambda req: httpx.Response(500))
    ctx = _ctx(engine, cat, T + timedelta(minutes=25), fetcher=fetcher)
    _backfill(ctx, replay, T)
    down = UrlList("down_source", ["https://x.invalid/a"], lambda d, u: pd.DataFrame())
    tick = run_tick(ctx, T, feeds=Feeds(sources=(down,), replay=replay),
                    models=_provider(models))
    by = {s.source: s for s in tick.sources}
    assert by["down_source"].status == "failed" and "HTTP 500" in str(by["down_source"].message)
    assert by["simulated"].status == "ok"
    assert tick.status == "partial"
    assert len(run(engine, forecasts.latest_forecasts)["river_id"].unique()) == 3


def test_a_run_left_running_is_closed_as_interrupted_by_the_next(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay, models = world
    ctx = _ctx(engine, cat, T + timedelta(minutes=25))
    _backfill(ctx, replay, T)
    run(engine, cycles.start_cycle, issued_at=T, started_at=T + timedelta(minutes=20),
        trigger="schedule", owner="gone:1", kind="tick")
    tick = run_tick(ctx, T, feeds=Feeds(replay=replay), models=_provider(models))
    assert tick.status == "ok"
    runs = run(engine, cycles.read_cycles, issued_at=T).sort_values("revision")
    assert runs["status"].tolist() == ["interrupted", "ok"]
    assert "interrupted" in runs["message"].iloc[0]
