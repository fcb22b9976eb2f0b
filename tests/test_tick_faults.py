"""Fault tests of the operational tick (``pipeline.tick``), each on SQLite and on PostgreSQL.

* a live source that times out (a real socket that accepts and never answers, and one that
  trickles its body), answers HTTP 500, or answers garbage;
* the database restarting mid-tick (PostgreSQL only: a private server the test stops and
  starts, so the shared test server and other test runs are not disturbed);
* the process killed with SIGKILL mid-tick (a child process), then the tick run again;
* the clock jumping 3 hours (catch-up within ``Settings.catchup_limit``).

After each: no lost raw payload (everything served or archived is in the archive), no partial
forecast set (a river's six leads and its outcome row are stored together or not at all), the
next tick recovers, and the run history (``cycle_runs``, source and river outcomes) says what
happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import run, tick_world
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue
from forecast.clock import FixedClock
from forecast.errors import CycleError, StorageError
from forecast.ingest.fetch import Fetcher, RetryPolicy
from forecast.ingest.replay import Replay
from forecast.ingest.sources import AmedasMap
from forecast.modelling.lgbm import LeadModels
from forecast.pipeline.collect import collect_replay
from forecast.pipeline.context import Context
from forecast.pipeline.tick import Feeds, run_due, run_tick
from forecast.settings import load_settings
from forecast.storage import cycles, forecasts
from forecast.storage.archive import load_payload, read_fetches
from forecast.storage.engine import create_engine, migrate, transaction
from forecast.storage.tables import (
    cycle_locks,
    cycle_river_outcomes,
    forecast_runs,
    forecast_values,
)

T = datetime(2023, 7, 15, 6, tzinfo=UTC)
HALF = timedelta(minutes=30)
LEADS = 6
LIMIT_S = 1.5   # the per-source time limit of the timeout tests


@pytest.fixture(scope="module")
def world() -> tuple[Catalogue, Replay, dict[str, LeadModels]]:
    """Three simulated rivers, their replay feed and small trained models (as test_tick)."""
    return tick_world()


World = tuple[Catalogue, Replay, dict[str, LeadModels]]


def _provider(models: dict[str, LeadModels]):  # type: ignore[no-untyped-def]
    return lambda r: ("v1", models[r]) if r in models else None


def _backfill(ctx: Context, replay: Replay, until: datetime) -> None:
    """The stored history a running service would have: 8 days up to ``until``."""
    collect_replay(ctx, replay, until, window=timedelta(days=8))


# --- invariants checked after every fault -------------------------------------------------

def whole_forecast_sets(engine: Engine) -> list[tuple[int, str, int | None]]:
    """Assert that every stored forecast run has all six leads and an ok/degraded outcome row
    of its run (they commit together), and that every ok/degraded outcome has its forecast;
    returns the (run id, river, cycle id) of every stored forecast."""
    fr, fv, ro = forecast_runs, forecast_values, cycle_river_outcomes
    with transaction(engine) as conn:
        counts = conn.execute(
            sa.select(fr.c.id, fr.c.river_id, fr.c.cycle_id, sa.func.count(fv.c.horizon_h))
            .select_from(fr.outerjoin(fv, fv.c.run_id == fr.c.id))
            .group_by(fr.c.id, fr.c.river_id, fr.c.cycle_id)).all()
        outcomes = {(r.cycle_id, r.river_id): r.status for r in conn.execute(
            sa.select(ro.c.cycle_id, ro.c.river_id, ro.c.status))}
    partial = [(i, r, n) for i, r, _, n in counts if n != LEADS]
    assert not partial, f"partial forecast sets (run id, river, leads): {partial}"
    stored = {(c, r) for _, r, c, _ in counts}
    good = {k for k, s in outcomes.items() if s in ("ok", "degraded")}
    assert stored == good, f"forecasts without outcome: {stored - good}; " \
                           f"outcomes without forecast: {good - stored}"
    return [(int(i), str(r), c) for i, r, c, _ in counts]


def archived(engine: Engine) -> dict[str, str]:
    """uri → sha256 of every archived fetch, after checking each one's bytes are there."""
    with transaction(engine) as conn:
        rows = read_fetches(conn)
        for f in rows:
            data = load_payload(conn, str(f["sha256"]))
            assert hashlib.sha256(data).hexdigest() == f["sha256"]
    return {str(f["uri"]): str(f["sha256"]) for f in rows}


def assert_kept(engine: Engine, served: dict[str, bytes]) -> None:
    """Every payload a source served (uri → bytes) is in the archive, byte for byte."""
    with transaction(engine) as conn:
        by_uri: dict[str, set[str]] = {}
        for f in read_fetches(conn):
            by_uri.setdefault(str(f["uri"]), set()).add(str(f["sha256"]))
        for uri, data in served.items():
            sha = hashlib.sha256(data).hexdigest()
            assert sha in by_uri.get(uri, set()), f"payload of {uri} lost"
            assert load_payload(conn, sha) == data


def forecast_rivers(engine: Engine, issued: datetime) -> list[str]:
    """Rivers whose newest forecast is of ``issued``, with all six leads."""
    latest = run(engine, forecasts.latest_forecasts)
    mine = latest[latest["issued_at"] == pd.Timestamp(issued)]
    assert (mine.groupby("river_id").size() == LEADS).all()
    return sorted(mine["river_id"].unique())


# --- live sources that fail ---------------------------------------------------------------

@pytest.fixture
def blackhole() -> Iterator[int]:
    """A local TCP port whose connections are accepted (by the kernel's backlog) and never
    answered: a hung server, as httpx sees it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def trickler() -> Iterator[int]:
    """A local HTTP server that sends its headers at once, then one body byte every 0.2 s: each
    read is well inside any read timeout, the whole answer takes minutes."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n")
                while not stop.wait(0.2):
                    conn.sendall(b" ")
            except OSError:   # the client gave up and closed: done
                return

    def accept() -> None:
        workers = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            w = threading.Thread(target=serve, args=(conn,), daemon=True)
            w.start()
            workers.append(w)
        for w in workers:
            w.join(5)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        acceptor.join(5)
        srv.close()


def _snapshot(station: str) -> bytes:
    return json.dumps({station: {"precipitation10m": [0.5, 0], "temp": [21.3, 0]}}).encode()


class Hosts(httpx.BaseTransport):
    """Two AMeDAS-like hosts: ``steady.test`` always answers a valid map snapshot;
    ``faulty.test`` answers according to ``mode``: healthy, timeout (the request goes, over
    the real transport, to a port that never answers), trickle (to a server that trickles),
    http_500, garbage (random bytes with HTTP 200) or html (a maintenance page, HTTP 200).
    ``served``: every 200 body, by URL."""

    def __init__(self, *, hung_port: int = 0, trickle_port: int = 0) -> None:
        self.mode = "healthy"
        self.served: dict[str, bytes] = {}
        self.requests = 0
        self._ports = {"timeout": hung_port, "trickle": trickle_port}
        self._real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        mode = self.mode if request.url.host == "faulty.test" else "healthy"
        if mode in self._ports:
            url = request.url.copy_with(host="127.0.0.1", port=self._ports[mode])
            return self._real.handle_request(httpx.Request(
                request.method, url, headers=request.headers, extensions=request.extensions))
        if mode == "http_500":
            return httpx.Response(500, text="Internal Server Error")
        if mode == "garbage":
            body = random.Random(str(request.url)).randbytes(700)
        elif mode == "html":   # a maintenance page where JSON was expected
            body = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
        else:
            body = _snapshot("53133" if request.url.host == "faulty.test" else "53146")
        self.served[str(request.url)] = body
        return httpx.Response(200, content=body)

    def close(self) -> None:
        self._real.close()


FAULTY = AmedasMap(frozenset({"53133"}), "http://faulty.test/amedas/data", name="amedas_faulty")
STEADY = AmedasMap(frozenset({"53146"}), "http://steady.test/amedas/data", name="amedas_steady")
EXPECTED = {"timeout": "timed_out", "hung": "timed_out", "trickle": "timed_out",
            "http_500": "failed", "garbage": "failed", "html": "failed"}
PARSE_ERRORS = {"garbage": "EncodingError", "html": "ParseError"}


@pytest.mark.parametrize("fault", ["timeout", "hung", "trickle", "http_500", "garbage", "html"])
def test_a_faulty_source_costs_only_its_own_data(engine: Engine, world: World, fault: str,
                                                 blackhole: int, trickler: int) -> None:
    cat, replay, models = world
    hosts = Hosts(hung_port=blackhole, trickle_port=trickler)
    # "hung": the same silent server, but each request's own timeout (0.1 s, twice) ends the
    # source before the tick's limit does; "timeout": the limit cuts the 10 s request timeout
    hosts.mode = "timeout" if fault == "hung" else fault
    client = httpx.Client(transport=hosts)
    clock = FixedClock(T + timedelta(minutes=25))
    fetcher = Fetcher(client, retry=RetryPolicy(attempts=2 if fault == "hung" else 3,
                                                base_delay_s=0.0),
                      timeout=0.1 if fault == "hung" else 10.0)
    ctx = Context.of(engine, cat, clock=clock,
                     settings=load_settings({}, source_timeout_s=LIMIT_S), fetcher=fetcher)
    _backfill(ctx, replay, T - timedelta(hours=1))
    feeds = Feeds(sources=(FAULTY, STEADY), replay=replay)
    try:
        t0 = time.monotonic()
        tick = run_tick(ctx, T, feeds=feeds, models=_provider(models), trigger="test")
        took = time.monotonic() - t0

        by = {s.source: s for s in tick.sources}
        assert by["amedas_steady"].status == "ok" and by["amedas_steady"].rows == LEADS
        assert by["simulated"].status == "ok" and by["simulated"].rows > 0
        bad = by["amedas_faulty"]
        assert bad.status == EXPECTED[fault], bad
        if fault in ("timeout", "trickle"):
            # the source was given its time limit, and no more: the tick went on
            assert "time limit reached" in str(bad.message), bad
            # (margins for a loaded machine; without the limit this takes minutes or hours)
            assert LIMIT_S * 0.9 <= bad.seconds < LIMIT_S + 2.0, bad
            assert tick.stages["collect"] < LIMIT_S + 5.0, tick.stages
            assert took < LIMIT_S + tick.stages["forecast"] + 8.0
        elif fault == "hung":
            assert "failed after 2 attempts: timed out (ReadTimeout)" in str(bad.message), bad
            assert bad.seconds < LIMIT_S, bad
        elif fault == "http_500":
            assert "HTTP 500" in str(bad.message) and bad.payloads == LEADS
        else:   # garbage: archived before parsing, recorded as not parsed
            error = PARSE_ERRORS[fault]
            assert bad.payloads == LEADS and error in str(bad.message), bad
            with transaction(engine) as conn:
                rows = read_fetches(conn, source="amedas_faulty")
            assert len(rows) == LEADS
            assert {r["parse_status"] for r in rows} == {"failed"}
            assert all(error in str(r["parse_error"]) for r in rows), rows
        assert tick.status == "partial"
        # every payload any source served is archived, byte for byte (garbage included)
        assert_kept(engine, hosts.served)
        assert forecast_rivers(engine, T) == sorted(cat.ids)
        whole_forecast_sets(engine)
        runs = run(engine, cycles.read_cycles, issued_at=T)
        assert runs["status"].tolist() == ["partial"]
        assert runs["message"].iloc[0] == "sources not ok: amedas_faulty"
        stored = {s["source"]: s for s in run(engine, cycles.read_source_outcomes,
                                              int(runs["id"].iloc[0]))}
        assert stored["amedas_faulty"]["status"] == EXPECTED[fault]
        assert stored["amedas_faulty"]["message"] == bad.message
        assert {stored[s]["status"] for s in ("amedas_steady", "simulated")} == {"ok"}

        # the source comes back: the next tick is ok
        hosts.mode = "healthy"
        clock.advance(HALF)
        nxt = run_tick(ctx, T + HALF, feeds=feeds, models=_provider(models), trigger="test")
        assert nxt.status == "ok", nxt
        assert {s.source: s.status for s in nxt.sources} == {
            "amedas_faulty": "ok", "amedas_steady": "ok", "simulated": "ok"}
        runs = run(engine, cycles.read_cycles, kind="tick")
        assert runs["status"].tolist() == ["ok", "partial"]
        assert runs["message"].iloc[0] is None
        assert forecast_rivers(engine, T + HALF) == sorted(cat.ids)
        whole_forecast_sets(engine)
        assert_kept(engine, hosts.served)
    finally:
        client.close()



# --- the clock jumps 3 hours ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("limit", [3, 6])
def test_a_3_hour_clock_jump_is_caught_up_oldest_first_within_the_limit(
        engine: Engine, world: World, limit: int) -> None:
    cat, replay, _ = world
    clock = FixedClock(T + timedelta(minutes=21))
    ctx = Context.of(engine, cat, clock=clock, settings=load_settings({}, catchup_limit=limit))
    _backfill(ctx, replay, T - timedelta(hours=3))
    feeds = Feeds(replay=replay)
    start = run_due(ctx, feeds=feeds)   # a fresh service: the last `limit` issue times
    begun = [T - HALF * k for k in range(limit - 1, -1, -1)]
    assert [t.issued_at for t in start.ticks] == begun and start.missed == []
    clock.advance(timedelta(hours=3))     # the process slept (or the clock jumped) 3 hours
    later = run_due(ctx, feeds=feeds)
    gap = [T + HALF * k for k in range(1, 7)]          # T+30 min … T+3 h: six issue times
    assert [t.issued_at for t in later.ticks] == gap[-limit:]           # oldest first
    assert later.missed == gap[:-limit]                # beyond the limit: reported, not run
    assert all(t.status == "ok" for t in start.ticks + later.ticks)
    ids = [t.cycle.cycle_id for t in later.ticks if t.cycle is not None]
    assert ids == sorted(ids) and len(ids) == limit
    # the history: one ok tick per issue time run, the newest of each batch by the schedule
    runs = run(engine, cycles.read_cycles, kind="tick", limit=100).sort_values("id")
    assert [t.to_pydatetime() for t in runs["issued_at"]] == begun + gap[-limit:]
    assert set(runs["status"]) == {"ok"}
    assert runs["trigger"].tolist() == (["catchup"] * (limit - 1) + ["schedule"]) * 2
    assert runs["finished_at"].notna().all()
    for t in begun + gap[-limit:]:
        assert forecast_rivers_at(engine, t) == sorted(cat.ids)
    whole_forecast_sets(engine)
    # every issue time from the first to now either has its tick or is reported missed
    assert sorted(begun + [t.issued_at for t in later.ticks] + later.missed) == \
        begun + gap
    again = run_due(ctx, feeds=feeds)    # nothing more to do at the same time
    assert again.ticks == [] and again.missed == later.missed


def forecast_rivers_at(engine: Engine, issued: datetime) -> list[str]:
    """Rivers with a stored forecast of ``issued``."""
    fr = forecast_runs
    with transaction(engine) as conn:
        rows = conn.execute(sa.select(fr.c.river_id).distinct()
                            .where(fr.c.issued_at == issued)).scalars().all()
    return sorted(rows)


# --- the database restarts mid-tick (PostgreSQL) ----------------------------------------------

class PrivateServer:
    """A PostgreSQL server of this test module's own (initdb in a temporary folder, a free
    port on 127.0.0.1, trust auth), so the test can stop and start it without disturbing the
    shared test server or other test runs on this machine. Run as the ``postgres`` user when
    the tests run as root (the server refuses root)."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
        found = shutil.which("pg_ctl")
        where = bins[-1].parent if bins else Path(found).parent if found else None
        if where is None or not (where / "initdb").exists():
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        self.bin: Path = where
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no postgres user to run "
                                   "the server as") from None
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="forecast-pgfault-"))
        if self.prefix:
            shutil.chown(self.root, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.data = self.root / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E",
                  "UTF8", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.prefix, str(self.bin / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (``pg_ctl -w``)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
                  "start")
        self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "30")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clean shutdown, sessions ended; ``immediate``: as a
        crash, the next start recovers from the WAL)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        """Whether the server accepts connections."""
        return subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port), "-q"], check=False, timeout=30).returncode == 0

    def close(self) -> None:
        try:
            if self.running():
                self.stop("fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivateServer]:
    try:
        server = PrivateServer()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        # under CI=true the conftest turns this skip of a `postgres` test into a failure
        pytest.skip(f"cannot run a private PostgreSQL server to restart: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def restartable(private_pg: PrivateServer) -> Iterator[tuple[PrivateServer, Engine]]:
    """A migrated fresh schema on the private server; the server is running again after the
    test whatever happened."""
    if not private_pg.running():
        private_pg.start()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(private_pg.url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(f"{private_pg.url}?options=-csearch_path%3D{schema}")
    migrate(engine)
    try:
        yield private_pg, engine
    finally:
        if not private_pg.running():
            private_pg.start()
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class StopServer:
    """A cursor hook on ``engine``: just before the ``nth`` statement starting with ``prefix``
    runs, note what is archived, then stop the server (and start it again at once when
    ``start_again``). The statement then meets a dead connection."""

    def __init__(self, server: PrivateServer, engine: Engine, prefix: str, nth: int, *,
                 mode: str = "fast", start_again: bool = False) -> None:
        self.server, self.engine, self.prefix, self.nth = server, engine, prefix, nth
        self.mode, self.start_again = mode, start_again
        self.seen = 0
        self.fired = False
        self.archived_before: dict[str, str] = {}
        sa.event.listen(engine, "before_cursor_execute", self)

    def __call__(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self.fired or not statement.lstrip().startswith(self.prefix):
            return
        self.seen += 1
        if self.seen < self.nth:
            return
        self.fired = True   # stays listening: removing it here would upset SQLAlchemy's dispatch
        self.archived_before = archived(self.engine)
        self.server.stop(self.mode)
        if self.start_again:
            self.server.start()


RESTARTS = {
    # name: (statement the server stops before, its number, stop mode, when it starts again)
    "mid_forecast_store": ("INSERT INTO forecast_values", 2, "fast", "at once"),
    "mid_forecast_store_crash": ("INSERT INTO forecast_values", 2, "immediate", "at once"),
    "mid_archive": ("INSERT INTO raw_fetches", 2, "fast", "at once"),
    "down_to_the_notify_stage": ("INSERT INTO forecast_values", 2, "fast", "notify"),
    "down_past_the_tick": ("INSERT INTO forecast_values", 2, "fast", "after the tick"),
}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(RESTARTS))
def test_the_database_restarting_mid_tick(restartable: tuple[PrivateServer, Engine],
                                          world: World, scenario: str) -> None:
    server, engine = restartable
    cat, replay, models = world
    prefix, nth, mode, start_when = RESTARTS[scenario]
    ctx = Context.of(engine, cat, clock=FixedClock(T + timedelta(minutes=25)))
    _backfill(ctx, replay, T - timedelta(hours=1))
    feeds = Feeds(replay=replay)
    stopper = StopServer(server, engine, prefix, nth, mode=mode,
                         start_again=start_when == "at once")

    def notify(*_: Any) -> None:
        if start_when == "notify":
            server.start()

    try:
        tick = run_tick(ctx, T, feeds=feeds, models=_provider(models), notify=notify)
    finally:
        sa.event.remove(engine, "before_cursor_execute", stopper)
        if not server.running():
            server.start()
    assert stopper.fired
    outcomes = {o.river_id: o for o in tick.cycle.outcomes} if tick.cycle else {}

    # what was committed before the restart is all there; no river is half stored
    kept = archived(engine)
    assert stopper.archived_before.items() <= kept.items()
    stored = whole_forecast_sets(engine)
    runs = run(engine, cycles.read_cycles, issued_at=T)
    first = runs.iloc[-1]
    rivers_in_db = {r["river_id"]: r["status"] for r in run(engine, cycles.read_outcomes,
                                                            int(first["id"]))}
    if scenario == "mid_archive":
        # the rain payload's archive transaction died: that payload is not kept (and said
        # so); the observations payload archived before is; every river is forecast
        by = {s.source: s for s in tick.sources}
        assert by["simulated"].status == "partial"
        assert "archiving replay://simulated/rain" in str(by["simulated"].message)
        assert tick.status == "partial" and first["status"] == "partial"
        assert first["message"] == "sources not ok: simulated"
        assert sorted(r for _, r, c in stored if c == first["id"]) == sorted(cat.ids)
    else:
        # the second river's forecast transaction died with the server: not stored at all;
        # the first river's (committed before) is kept, whatever the stop mode
        assert outcomes["sim02"].status == "failed"
        assert "storing the forecast of sim02 failed" in str(outcomes["sim02"].message)
        assert outcomes["sim01"].status in ("ok", "degraded")
        mine = sorted(r for _, r, c in stored if c == first["id"])
        assert "sim02" not in mine and "sim01" in mine
    if start_when == "at once":
        if scenario != "mid_archive":
            # the server was back for the next river: sim03 stored, sim02's failure recorded
            assert mine == ["sim01", "sim03"]
            assert rivers_in_db["sim02"] == "failed" and tick.status == "partial"
            assert first["status"] == "partial" and first["message"] == "rivers failed: sim02"
    elif start_when == "notify":
        # down for the rest of the forecast stage: sim03 failed too, and neither failure
        # could be recorded per river, but the run (closed once the server was back) says it
        assert mine == ["sim01"] and outcomes["sim03"].status == "failed"
        assert set(rivers_in_db) == {"sim01"}
        assert first["status"] == "partial"
        assert first["message"] == "rivers failed: sim02, sim03"
    else:
        # down until the tick had ended: the run could not even be closed; it stays
        # "running" until the next run of T closes it as interrupted
        assert mine == ["sim01"] and first["status"] == "running"
    # the next tick recovers (a run that finished needs --force for a new revision)
    finished = first["status"] in ("ok", "partial")
    nxt = run_tick(ctx, T, feeds=feeds, models=_provider(models), force=finished)
    assert nxt.status == "ok", nxt
    runs = run(engine, cycles.read_cycles, issued_at=T).sort_values("revision")
    assert runs["status"].tolist() == ["partial" if finished else "interrupted", "ok"]
    assert forecast_rivers(engine, T) == sorted(cat.ids)
    whole_forecast_sets(engine)
    after = archived(engine)
    assert kept.items() <= after.items()
    # the payload whose archiving died is archived by the next tick (same collection clock)
    assert "replay://simulated/rain?clock=2023-07-15T06:20:00+00:00" in after


@pytest.mark.postgres
@pytest.mark.slow
def test_a_tick_with_the_database_down_fails_loudly_and_the_next_recovers(
        restartable: tuple[PrivateServer, Engine], world: World) -> None:
    server, engine = restartable
    cat, replay, models = world
    clock = FixedClock(T + timedelta(minutes=21))
    ctx = Context.of(engine, cat, clock=clock)
    _backfill(ctx, replay, T - timedelta(hours=1))
    feeds = Feeds(replay=replay)
    server.stop()
    try:   # nothing can be recorded: the caller (scheduler, run-once) is told
        with pytest.raises(StorageError, match="taking the issue-time lock failed"):
            run_tick(ctx, T, feeds=feeds, models=_provider(models))
        with pytest.raises(StorageError, match="reading finished ticks failed"):
            run_due(ctx, feeds=feeds)
    finally:
        server.start()
    assert run(engine, cycles.read_cycles).empty
    due = run_due(ctx, feeds=feeds, limit=1)   # the scheduler's next firing
    assert [(t.issued_at, t.status) for t in due.ticks] == [(T, "ok")]
    assert forecast_rivers_at(engine, T) == sorted(cat.ids)
    whole_forecast_sets(engine)


# --- the process is killed mid-tick -----------------------------------------------------------

CHILD = r'''
"""A tick of T in a child process that stops at a given point, says so in a marker file and
waits there to be killed. Same simulated world as the test (same seeds, same data)."""
import hashlib, json, os, sys, time
from datetime import UTC, datetime, timedelta
import sqlalchemy as sa
from forecast.clock import FixedClock
from forecast.ingest.replay import Replay
from forecast.pipeline import collect
from forecast.pipeline.context import Context
from forecast.pipeline.tick import Feeds, run_tick
from forecast.simulate import simulate
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage.engine import create_engine

url, marker, journal, point = sys.argv[1:5]
T = datetime(2023, 7, 15, 6, tzinfo=UTC)
cat = synthetic_catalogue(3, seed=4, crisis_share=0.0)
sim = simulate(cat, datetime(2023, 6, 1, tzinfo=UTC), datetime(2023, 7, 20, tzinfo=UTC), seed=11)
replay = Replay.of(sim.observations, sim.rain_forecasts, name="simulated")
engine = create_engine(url)
ctx = Context.of(engine, cat, clock=FixedClock(T + timedelta(minutes=25)))

def hang(where):
    with open(marker + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {where}")
    os.replace(marker + ".tmp", marker)
    time.sleep(600)
    os._exit(3)   # not killed: the test fails on this exit code

ingest = collect._ingest
def journaled(c, source, uri, data, fetched_at, parse):
    outcome, parsed = ingest(c, source, uri, data, fetched_at, parse)
    if outcome.fetch_id is not None:   # archived and committed
        with open(journal, "a") as f:
            f.write(json.dumps({"uri": uri, "sha256": hashlib.sha256(data).hexdigest()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if point == "collect":
            hang(f"archived {uri}, not parsed")
    return outcome, parsed
collect._ingest = journaled

def provider(river):
    if point == "forecast" and river == "sim02":
        hang("forecasting sim02 (sim01 committed)")
    return None   # persistence

inserts = []
def hook(conn, cursor, statement, *args):
    if point == "store" and statement.lstrip().startswith("INSERT INTO forecast_values"):
        inserts.append(statement)
        if len(inserts) == 2:
            hang("inside the transaction storing sim02")
sa.event.listen(engine, "before_cursor_execute", hook)

run_tick(ctx, T, feeds=Feeds(replay=replay), models=provider)
with open(marker, "w") as f:
    f.write("finished")
'''


def _kill_mid_tick(engine: Engine, point: str, tmp: Path) -> tuple[int, list[dict[str, str]]]:
    """Run the child's tick until it reports it stopped at ``point``, SIGKILL it; returns its
    pid and the payloads it archived (its journal)."""
    marker, journal = tmp / "marker", tmp / "journal"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    url = engine.url.render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, str(marker), str(journal), point],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                _, err = proc.communicate(timeout=30) if proc.poll() is not None else (b"", b"")
                pytest.fail(f"the child did not reach {point} (exit {proc.returncode}):\n"
                            f"{err.decode()[-3000:]}")
            time.sleep(0.05)
        said = marker.read_text()
        assert said.startswith(f"{proc.pid} "), said
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()   # type: ignore[union-attr]
        proc.stderr.close()   # type: ignore[union-attr]
    lines = journal.read_text().splitlines() if journal.exists() else []
    return proc.pid, [json.loads(x) for x in lines]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["collect", "forecast", "store"])
def test_a_tick_killed_mid_stage_is_recovered_by_the_next(engine: Engine, world: World,
                                                          point: str, tmp_path: Path) -> None:
    cat, replay, models = world
    ctx = Context.of(engine, cat, clock=FixedClock(T + timedelta(minutes=25)))
    _backfill(ctx, replay, T - timedelta(hours=1))
    pid, journal = _kill_mid_tick(engine, point, tmp_path)

    # what the killed process left: a run still "running", its lock, and its payloads
    runs = run(engine, cycles.read_cycles, issued_at=T)
    assert runs["status"].tolist() == ["running"]
    killed = int(runs["id"].iloc[0])
    assert runs["owner"].iloc[0] == f"{socket.gethostname()}:{pid}"
    left = archived(engine)
    assert journal and all(left.get(j["uri"]) == j["sha256"] for j in journal), journal
    stored = whole_forecast_sets(engine)   # no half-stored river, even mid-transaction
    by_killed = sorted(r for _, r, c in stored if c == killed)
    assert by_killed == ([] if point == "collect" else ["sim01"])
    if engine.dialect.name == "sqlite":   # the dead process's lock row is still there
        with transaction(engine) as conn:
            holders = conn.execute(sa.select(cycle_locks.c.owner)).scalars().all()
        assert holders == [f"{socket.gethostname()}:{pid}"]
    if point == "collect":   # archived, never parsed: the history shows it pending
        with transaction(engine) as conn:
            fetched = {str(f["uri"]): f["parse_status"] for f in read_fetches(conn)}
        assert fetched[journal[-1]["uri"]] == "pending"

    # the restarted process runs T: takes the lock (SQLite: the holder is dead; PostgreSQL:
    # the advisory lock went with the killed connection), closes the run, succeeds
    tick = None
    for _ in range(100):   # PostgreSQL may take a moment to end the killed backend (seen: 0)
        try:
            tick = run_tick(ctx, T, feeds=Feeds(replay=replay), models=_provider(models))
            break
        except CycleError as exc:
            assert "being run by another process" in str(exc)
            assert engine.dialect.name == "postgresql"   # SQLite: the dead holder's row goes
            time.sleep(0.1)
    assert tick is not None and tick.status == "ok", tick
    runs = run(engine, cycles.read_cycles, issued_at=T).sort_values("revision")
    assert runs["status"].tolist() == ["interrupted", "ok"]
    assert runs["message"].iloc[0].startswith("interrupted")
    assert runs["finished_at"].notna().all()
    assert forecast_rivers(engine, T) == sorted(cat.ids)
    whole_forecast_sets(engine)
    after = archived(engine)
    assert left.items() <= after.items()
    assert all(after.get(j["uri"]) == j["sha256"] for j in journal)
    if engine.dialect.name == "sqlite":
        with transaction(engine) as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(cycle_locks)
                                ).scalar_one() == 0
