"""The scheduler (``pipeline.schedule``): a real APScheduler on a fake clock (time-machine
moves the system clock; APScheduler and the context both read it) shows the :20/:50 ticks, the
catch-up after a jump, and the issue-time lock keeping two scheduler instances on one database
from running the same tick."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import time_machine
from helpers import run
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue
from forecast.clock import FixedClock, ScaledClock, SystemClock
from forecast.ingest.replay import Replay
from forecast.pipeline.collect import collect_replay
from forecast.pipeline.context import Context
from forecast.pipeline.schedule import Scheduler, trigger_for
from forecast.pipeline.tick import DueReport, Feeds
from forecast.settings import load_settings
from forecast.simulate import simulate
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage import cycles
from forecast.storage.engine import create_engine

START = datetime(2023, 7, 1, tzinfo=UTC)
T = datetime(2023, 7, 15, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> tuple[Catalogue, Replay]:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    sim = simulate(cat, START, T + timedelta(days=1), seed=11)
    return cat, Replay.of(sim.observations, sim.rain_forecasts, name="simulated")


def _ctx(engine: Engine, cat: Catalogue, **settings: object) -> Context:
    return Context.of(engine, cat, clock=SystemClock(),
                      settings=load_settings({}, **settings))


class Ticks:
    """Collects each firing's DueReport; ``wait(n)`` blocks until n firings arrived."""

    def __init__(self) -> None:
        self.reports: list[DueReport] = []
        self._cv = threading.Condition()

    def __call__(self, due: DueReport) -> None:
        with self._cv:
            self.reports.append(due)
            self._cv.notify_all()

    def wait(self, n: int, timeout: float = 60.0) -> list[DueReport]:
        with self._cv:
            assert self._cv.wait_for(lambda: len(self.reports) >= n, timeout), \
                f"{len(self.reports)} firing(s) after {timeout} s, expected {n}"
            return list(self.reports)


def test_the_default_trigger_fires_at_20_and_50_past_each_hour_utc() -> None:
    ctx = Context.of(None, synthetic_catalogue(1), clock=SystemClock())  # type: ignore[arg-type]
    trig = trigger_for(ctx)
    t = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    fires = []
    for _ in range(4):
        t = trig.get_next_fire_time(None, t)
        fires.append(t.strftime("%H:%M"))
        t += timedelta(seconds=1)
    assert fires == ["10:20", "10:50", "11:20", "11:50"]


def test_a_sped_up_clock_ticks_every_30_simulated_minutes() -> None:
    clock = ScaledClock(T, 60.0, wall=FixedClock(T))
    ctx = Context.of(None, synthetic_catalogue(1), clock=clock)  # type: ignore[arg-type]
    assert trigger_for(ctx).interval == timedelta(seconds=30)


def test_apscheduler_ticks_at_20_and_50_and_catches_up_after_a_jump(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay = world
    ctx = _ctx(engine, cat, catchup_limit=2)
    collect_replay(ctx, replay, T - timedelta(hours=1), window=timedelta(days=8))
    ticks = Ticks()
    with time_machine.travel(T + timedelta(minutes=19, seconds=58), tick=True) as traveller:
        sched = Scheduler(ctx, feeds=Feeds(replay=replay), on_tick=ticks)
        sched.start(run_now=False)
        try:
            assert sched.next_fire_time() == T + timedelta(minutes=20)
            first = ticks.wait(1)[0]
            # fired at 06:20: the tick of 06:00, and 05:30 caught up first (limit 2)
            assert [t.issued_at for t in first.ticks] == [T - timedelta(minutes=30), T]
            assert [t.status for t in first.ticks] == ["ok", "ok"]
            traveller.move_to(T + timedelta(minutes=49, seconds=58))
            sched.wakeup()
            second = ticks.wait(2)[1]
            assert [t.issued_at for t in second.ticks] == [T + timedelta(minutes=30)]
            # the clock jumps 3 hours (a suspended VM, a corrected clock)
            traveller.move_to(T + timedelta(hours=3, minutes=49, seconds=58))
            sched.wakeup()
            third = ticks.wait(3)[2]
        finally:
            sched.shutdown()
    assert [t.issued_at for t in third.ticks] == [T + timedelta(hours=h) for h in (3, 3.5)]
    assert third.missed == [T + timedelta(hours=h) for h in (1, 1.5, 2, 2.5)]
    hist = run(engine, cycles.read_cycles, kind="tick").sort_values("issued_at")
    assert hist["trigger"].tolist() == ["catchup", "schedule", "schedule", "catchup", "schedule"]
    assert (hist["status"] == "ok").all()
    assert not sched.running


def test_two_scheduler_instances_on_one_database_run_each_tick_once(engine: Engine, world) -> None:  # type: ignore[no-untyped-def]
    cat, replay = world
    second_engine = create_engine(engine.url.render_as_string(hide_password=False))
    a = _ctx(engine, cat, catchup_limit=1)
    b = Context(settings=a.settings, catalogue=cat, engine=second_engine, clock=SystemClock(),
                owner="second-instance:1")
    collect_replay(a, replay, T - timedelta(hours=1), window=timedelta(days=8))
    ticks_a, ticks_b = Ticks(), Ticks()
    try:
        with time_machine.travel(T + timedelta(minutes=19, seconds=58), tick=True):
            sa_ = Scheduler(a, feeds=Feeds(replay=replay), on_tick=ticks_a)
            sb = Scheduler(b, feeds=Feeds(replay=replay), on_tick=ticks_b)
            sa_.start(run_now=False)
            sb.start(run_now=False)
            try:
                ra, rb = ticks_a.wait(1)[0], ticks_b.wait(1)[0]
            finally:
                sa_.shutdown()
                sb.shutdown()
    finally:
        second_engine.dispose()
    runs = run(engine, cycles.read_cycles, issued_at=T)
    assert len(runs) == 1 and runs["status"].tolist() == ["ok"]   # one instance ran it
    ran = [r for r in (ra, rb) if any(t.status == "ok" for t in r.ticks)]
    others = [r for r in (ra, rb) if r not in ran]
    assert len(ran) == 1 and len(others) == 1
    # the other found it locked, or (if it came second) already finished
    other = others[0]
    assert other.locked == [T] or [t.status for t in other.ticks] == ["skipped"]


def test_a_failing_tick_is_logged_and_the_scheduler_goes_on(engine: Engine, world, caplog) -> None:  # type: ignore[no-untyped-def]
    cat, _ = world

    class Broken:
        name = "broken"

        def available_at(self, *a: object, **k: object) -> None:
            raise RuntimeError("replay file vanished")

        arrived_between = available_at

    ctx = _ctx(engine, cat)
    sched = Scheduler(ctx, feeds=Feeds(replay=Broken()))  # type: ignore[arg-type]
    assert sched.tick() is None and sched.failures == 1
    assert "scheduled tick failed" in caplog.text
    runs = run(engine, cycles.read_cycles, kind="tick")
    assert set(runs["status"]) == {"failed"}
    assert "replay file vanished" in str(runs["message"].iloc[0])


def test_scaled_clock_runs_speed_times_faster() -> None:
    wall = FixedClock(datetime(2026, 12, 1, 12, tzinfo=UTC))
    clock = ScaledClock(T, 60.0, wall=wall)
    assert clock.now() == T
    wall.advance(timedelta(minutes=1))
    assert clock.now() == T + timedelta(hours=1)
    assert pd.Timestamp(clock.now()).tzinfo is not None


def test_forecast_scheduler_stops_cleanly_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real process: ``forecast scheduler`` catches up at start, then SIGTERM stops it
    after the running tick, exit 0, no run left "running"."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "FORECAST_DATA_DIR": str(tmp_path), "FORECAST_CATCHUP_LIMIT": "2",
           "FORECAST_MODELS_DIR": str(tmp_path / "models")}
    cli = [sys.executable, "-m", "forecast.cli"]
    subprocess.run([*cli, "init-db"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*cli, "scheduler"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    engine = create_engine(f"sqlite:///{tmp_path / 'forecast.db'}")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:   # wait for the start-up catch-up to finish
            runs = run(engine, cycles.read_cycles, kind="tick")
            if len(runs) == 2 and runs["finished_at"].notna().all():
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = run(engine, cycles.read_cycles, kind="tick")
    engine.dispose()
    assert proc.returncode == 0, out
    assert "stopping after the running tick" in out and "scheduler stopped" in out
    # no data at all: every river failed, and each run says so and is closed
    assert len(runs) == 2 and set(runs["status"]) == {"failed"}
    assert runs["finished_at"].notna().all()
