"""Operational tick benchmark: ``run_tick`` for every river with the replay source, no network.

    python benchmarks/bench_tick.py [--days 365] [--ticks 8] [--scale 800] [--skip-scale]
                                    [--profile]

Builds, in a temporary directory, a SQLite database with the catalogue (``config/rivers.yaml``,
38 rivers), ``--days`` of simulated history (SIMULATED) stored through the QC store path up to
the first issue time T0, and one promoted champion per river (``train_all(judge=False)``, the
demo's first champions, trained on 2 worker processes), then measures:

(a) **warm process**: a fresh process (as the scheduler's) builds its context once and runs
    ``--ticks`` consecutive half-hourly ticks T0, T0 + 30 min, ... (``run_tick`` with
    ``Feeds(replay=...)``: the replay re-offers its last 3 h, the newest 30 min of which are
    new, so each tick archives two CSV payloads, parses, QCs and stores them, then forecasts
    every river). Reported: the first tick (models loaded from the registry) and the median
    and max of the later ones (models kept loaded), the seconds of each stage
    (``TickReport.stages``) and of the main steps inside them, and the process's peak RSS
    (``getrusage``; imports, context and replay included);
(b) **whole processes** (Python start-up and imports included): ``forecast run-once --at T
    --force`` with ``FORECAST_REPLAY`` when this checkout can write and load a replay file
    (``forecast.pipeline.demo.write_replay`` / ``load_replay``); otherwise ``forecast cycle
    --at T`` (the forecast stage alone) and ``python -c`` calling ``run_tick`` with a replay
    read from a pickle in-process (the whole tick). Median of ``--repeat`` runs;
(c) **scale**: (a) for ``synthetic_catalogue(--scale)`` (about 2.5 gauges per river; 800
    rivers ≈ 2,000 gauges) and a middle size, with a short history (``--scale-days``) and
    cheap models (``--scale-rounds`` boosting rounds): the forecast stage does not depend on
    the history's length, only on the 8-day look-back.

Prints a markdown table. ``--profile``: cProfile of one warm tick (38 rivers), top 25 by
cumulative time. ``--keep DIR``: build in DIR and keep it (re-running with the same DIR reuses
the data and models).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 7, 10, 0, tzinfo=UTC)   # first issue time (rainy season)
TICK_DELAY = timedelta(minutes=20)           # the default FORECAST_TICK_DELAY_MIN
SEED = 3


def _catalogue(spec: dict[str, Any]) -> Any:
    from forecast.catalogue import load_catalogue
    from forecast.simulate.demo_catalogue import synthetic_catalogue

    if spec["synthetic"]:
        return synthetic_catalogue(int(spec["synthetic"]), seed=0)
    return load_catalogue(ROOT / "config" / "rivers.yaml")


def fresh_db(d: Path) -> Path:
    """A copy of the built database (``run.db``), so every measurement starts from the same
    stored state (SQLite's backup API: the WAL is included)."""
    run = d / "run.db"
    for f in d.glob("run.db*"):
        f.unlink()
    src, dst = sqlite3.connect(d / "bench.db"), sqlite3.connect(run)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return run


def _env(d: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FORECAST_DATABASE_URL=f"sqlite:///{d}/run.db",
               FORECAST_MODELS_DIR=str(d / "models"),
               FORECAST_DATA_DIR=str(d / "var"), FORECAST_LOG_LEVEL="WARNING",
               FORECAST_CATALOGUE=str(ROOT / "config" / "rivers.yaml"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
                   os.pathsep))
    return env


# ------------------------------------------------------------------ building the data
def build(d: Path, spec: dict[str, Any], say: Callable[[str], object] = print) -> None:
    """Database, stored history up to T0, replay file and champions in ``d`` (skipped when
    ``d/spec.json`` already says so)."""
    done = d / "spec.json"
    if done.exists() and json.loads(done.read_text()) == spec:
        say(f"  reusing {d}")
        return
    from forecast.clock import FixedClock
    from forecast.ingest.replay import Replay
    from forecast.modelling.lgbm import LgbmSettings
    from forecast.pipeline import models as champions
    from forecast.pipeline.collect import store_observations
    from forecast.pipeline.context import Context
    from forecast.pipeline.demo import init_db
    from forecast.pipeline.training import train_all
    from forecast.simulate import simulate
    from forecast.storage.engine import create_engine, transaction
    from forecast.storage.rain import upsert_rain_vintages

    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    cat = _catalogue(spec)
    engine = create_engine(f"sqlite:///{d}/bench.db")
    history_to = T0 + TICK_DELAY - timedelta(minutes=30)   # what the tick before T0 collected
    ctx = Context.of(engine, cat, clock=FixedClock(history_to), models_root=d / "models")
    init_db(ctx)
    start = T0 - timedelta(days=spec["days"])
    end = T0 + timedelta(minutes=30 * spec["ticks"]) + timedelta(hours=2)
    t = time.perf_counter()
    sim = simulate(cat, start, end, seed=SEED)
    replay = Replay.of(sim.observations, sim.rain_forecasts, name="simulated")
    history = replay.available_at(history_to, window=history_to - start)
    say(f"  simulated {len(sim.observations):,} readings in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    res = store_observations(ctx, history.observations.drop(columns=["received_at"]),
                             source="simulated", now=history_to)
    with transaction(engine, "storing rain vintages") as conn:
        upsert_rain_vintages(conn, history.rain, now=history_to)
    say(f"  stored {res.inserted:,} observations up to {history_to:%Y-%m-%d %H:%M}Z in "
        f"{time.perf_counter() - t:.1f} s")
    # the replay the ticks read: the last hours before T0 (re-offered) and what comes after
    keep_obs = replay.observations["time"] > pd.Timestamp(T0 - timedelta(hours=6))
    keep_rain = replay.rain["issued_at"] > pd.Timestamp(T0 - timedelta(hours=6))
    obs = replay.observations.loc[keep_obs].reset_index(drop=True)
    rain = replay.rain.loc[keep_rain].reset_index(drop=True)
    pd.to_pickle((obs, rain), d / "replay.pkl")
    try:
        from forecast.pipeline import demo

        write_replay = getattr(demo, "write_replay", None)
        if write_replay is not None:
            write_replay(d / "replay", Replay.of(obs, rain, name="simulated"))
    except ImportError:
        pass
    t = time.perf_counter()
    settings = LgbmSettings(num_rounds=spec["rounds"]) if spec["rounds"] else None
    report = train_all(ctx, end=T0 - timedelta(hours=1), days=spec["train_days"], judge=False,
                       settings=settings, workers=2)
    for rid, version in report.versions.items():
        champions.promote(ctx, rid, version.version, actor="bench")
    say(f"  trained and promoted {len(report.versions)} champions in "
        f"{time.perf_counter() - t:.1f} s ({len(report.failed)} rivers not trained)")
    engine.dispose()
    done.write_text(json.dumps(spec))


# ------------------------------------------------------------------ the warm process (child)
STEPS = [   # (module, attribute, label): the main steps inside the stages, timed per tick
    ("forecast.pipeline.collect", "archive_payload", "archive payloads"),
    ("forecast.pipeline.collect", "to_csv", "write replay CSV"),
    ("forecast.pipeline.collect", "parse_replay_csv", "parse replay CSV"),
    ("forecast.pipeline.collect", "read_observations", "read QC window"),
    ("forecast.pipeline.collect", "apply_qc", "QC"),
    ("forecast.pipeline.collect", "upsert_observations", "upsert observations"),
    ("forecast.pipeline.cycle", "_read_inputs", "read inputs (obs, rain, freshness)"),
    ("forecast.pipeline.cycle", "_load_models", "load models"),
    ("forecast.pipeline.cycle", "_forecast_all", "features + predict (all rivers)"),
    ("forecast.pipeline.cycle", "_forecast_one", "features + predict (per river)"),
    ("forecast.pipeline.cycle", "_store_all", "store forecasts (all rivers)"),
    ("forecast.pipeline.cycle", "save_forecast", "store forecasts (per river)"),
]


def _instrument() -> dict[str, float]:
    import importlib

    spent: dict[str, float] = {}
    for module, attr, label in STEPS:
        mod = importlib.import_module(module)
        fn = getattr(mod, attr, None)
        if fn is None:
            continue

        def timed(*a: Any, __fn: Any = fn, __label: str = label, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return __fn(*a, **k)
            finally:
                spent[__label] = spent.get(__label, 0.0) + time.perf_counter() - t

        setattr(mod, attr, timed)
    return spent


def _peak_rss_mb() -> float:
    """This process's peak RSS (MB): VmHWM, the high-water mark of its own address space.
    (``getrusage``'s ru_maxrss is not: on Linux it keeps the RSS the parent had when it forked
    this process.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(d: Path, profile: bool, only: int | None = None) -> None:
    """The scheduler's process: imports, context, replay, then consecutive ticks."""
    t_start = time.perf_counter()
    from forecast.clock import FixedClock
    from forecast.ingest.replay import Replay
    from forecast.pipeline.context import Context
    from forecast.pipeline.tick import Feeds, run_tick
    from forecast.storage.engine import create_engine

    spec = json.loads((d / "spec.json").read_text())
    cat = _catalogue(spec)
    clock = FixedClock(T0 + TICK_DELAY)
    ctx = Context.of(create_engine(f"sqlite:///{d}/run.db"), cat, clock=clock,
                     models_root=d / "models")
    obs, rain = pd.read_pickle(d / "replay.pkl")
    feeds = Feeds(replay=Replay.of(obs, rain, name="simulated"))
    ready = time.perf_counter() - t_start
    spent = _instrument() if not profile else {}
    ticks = []
    import psutil

    proc = psutil.Process()
    n_ticks = min(only or spec["ticks"], spec["ticks"])
    for k in range(n_ticks):
        issued = T0 + timedelta(minutes=30 * k)
        clock.set(issued + TICK_DELAY + timedelta(minutes=1))
        spent.clear()
        prof = cProfile.Profile() if profile and k == n_ticks - 1 else None
        t, cpu = time.perf_counter(), time.process_time()
        if prof is not None:
            prof.enable()
        tick = run_tick(ctx, issued, feeds=feeds, trigger="bench", force=True)
        if prof is not None:
            prof.disable()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        status = {o.status for o in tick.cycle.outcomes} if tick.cycle else set()
        ticks.append({"wall": wall, "cpu": cpu, "stages": tick.stages, "steps": dict(spent),
                      "status": tick.status, "rivers": sorted(status),
                      "rows": sum(s.rows for s in tick.sources),
                      "rss_mb": proc.memory_info().rss / 2**20})
        if prof is not None:
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    peak = _peak_rss_mb()
    print(json.dumps({"ready_s": ready, "ticks": ticks, "peak_rss_mb": peak,
                      "rivers": len(cat.rivers),
                      "gauges": len({s for r in cat.rivers for s in r.station_codes})}))


def warm(d: Path, profile: bool = False, ticks: int | None = None) -> dict[str, Any]:
    fresh_db(d)
    out = subprocess.run([sys.executable, __file__, "--child", str(d)]
                         + (["--profile"] if profile else [])
                         + (["--child-ticks", str(ticks)] if ticks else []),
                         capture_output=True, text=True, env=_env(d), check=False)
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr[-4000:]}")
    if profile:
        print(out.stderr)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------ whole processes
TICK_SNIPPET = """
import sys
import pandas as pd
from datetime import datetime
from forecast.ingest.replay import Replay
from forecast.pipeline.context import Context
from forecast.pipeline.tick import Feeds, run_tick
ctx = Context.from_settings()
obs, rain = pd.read_pickle(sys.argv[1])
tick = run_tick(ctx, datetime.fromisoformat(sys.argv[2]), force=True, trigger="bench",
                feeds=Feeds(replay=Replay.of(obs, rain, name="simulated")))
print(tick.status, tick.stages)
"""


def whole(d: Path, issued: datetime, repeat: int
          ) -> list[tuple[str, list[float], list[float], str]]:
    from forecast.pipeline import demo

    at = issued.strftime("%Y-%m-%dT%H:%MZ")
    env = _env(d)
    runs: list[tuple[str, list[str], dict[str, str]]] = []
    if hasattr(demo, "load_replay") and (d / "replay").exists():
        runs.append((f"forecast run-once --at {at} --force (FORECAST_REPLAY)",
                     ["-m", "forecast.cli", "run-once", "--at", at, "--force"],
                     {**env, "FORECAST_REPLAY": str(d / "replay")}))
    runs.append((f"forecast cycle --at {at}", ["-m", "forecast.cli", "cycle", "--at", at], env))
    runs.append(("python -c 'run_tick(ctx, T, feeds=Feeds(replay=...), force=True)'",
                 ["-c", TICK_SNIPPET, str(d / "replay.pkl"), issued.isoformat()], env))
    results = []
    for label, args, e in runs:
        walls, cpus, last = [], [], ""
        for _ in range(repeat):
            fresh_db(d)
            t = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                                 env=e, check=False)
            walls.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            last = (out.stdout.strip().splitlines() or [""])[-1]
            if out.returncode not in (0, 1):
                last = f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1:]}"
        results.append((label, walls, cpus, last))
    return results


# ------------------------------------------------------------------ report
def _row(name: str, got: dict[str, Any]) -> str:
    ticks = got["ticks"]
    later = ticks[1:] or ticks
    walls = [t["wall"] for t in later]
    stages = {k: statistics.median(t["stages"].get(k, 0.0) for t in later)
              for k in ("collect", "forecast")}
    states = sorted({s for t in ticks for s in t["rivers"]})
    return (f"| {name} | {got['rivers']} / {got['gauges']} | {ticks[0]['wall']:.2f} s | "
            f"{statistics.median(walls):.2f} s (CPU "
            f"{statistics.median(t['cpu'] for t in later):.2f} s) | {max(walls):.2f} s | "
            f"{stages['collect']:.2f} s | {stages['forecast']:.2f} s | "
            f"{got['peak_rss_mb']:.0f} MB | {got['ready_s']:.1f} s | {', '.join(states)} |")


def _steps(got: dict[str, Any]) -> list[str]:
    later = got["ticks"][1:] or got["ticks"]
    labels = [label for _, _, label in STEPS if any(label in t["steps"] for t in later)]
    return [f"| {label} | {statistics.median(t['steps'].get(label, 0.0) for t in later):.3f} s |"
            for label in labels]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=365, help="history of the 38-river case")
    ap.add_argument("--train-days", type=float, default=365)
    ap.add_argument("--rounds", type=int, default=0,
                    help="boosting rounds of the 38-river champions (0: the default settings)")
    ap.add_argument("--ticks", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each whole process")
    ap.add_argument("--scale", default="200,800", help="synthetic catalogue sizes (rivers)")
    ap.add_argument("--scale-days", type=float, default=21)
    ap.add_argument("--scale-rounds", type=int, default=40)
    ap.add_argument("--scale-ticks", type=int, default=4)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--run-ticks", type=int, default=None,
                    help="run only this many of the built ticks (e.g. 2 for a slow old build)")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-ticks", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.profile, args.child_ticks)
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_tick_"))
    try:
        cases: list[tuple[str, Path, dict[str, Any]]] = [
            ("config/rivers.yaml", base / "rivers", {
                "synthetic": 0, "days": args.days, "train_days": args.train_days,
                "rounds": args.rounds, "ticks": args.ticks})]
        if not args.skip_scale:
            for n in (int(x) for x in args.scale.split(",") if x):
                cases.append((f"synthetic_catalogue({n})", base / f"synthetic{n}", {
                    "synthetic": n, "days": args.scale_days,
                    "train_days": args.scale_days - 1, "rounds": args.scale_rounds,
                    "ticks": args.scale_ticks}))
        results = []
        for name, d, spec in cases:
            print(f"{name}: building")
            build(d, spec)
            print(f"{name}: {spec['ticks']} warm ticks")
            got = warm(d, profile=args.profile and not spec["synthetic"],
                       ticks=args.run_ticks if spec["synthetic"] else None)
            results.append((name, got))
            if not spec["synthetic"]:
                procs = whole(d, T0, args.repeat)
        print("\n## Warm process (the scheduler's): consecutive ticks\n")
        print("| catalogue | rivers / gauges | first tick (loads models) | later ticks, median "
              "| max | collect (median) | forecast (median) | peak RSS | start-up (imports, "
              "context, replay) | river outcomes |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, got in results:
            print(_row(name, got))
        for name, got in results:
            print(f"\nSteps inside the later ticks, {name} (median seconds per tick):\n")
            print("| step | seconds |\n|---|---|")
            print("\n".join(_steps(got)))
        print("\n## Whole processes (38 rivers; Python start-up and imports included)\n")
        print("| command | wall, median | CPU, median | runs (wall) | output |\n"
              "|---|---|---|---|---|")
        for label, walls, cpus, last in procs:
            print(f"| `{label}` | {statistics.median(walls):.2f} s | "
                  f"{statistics.median(cpus):.2f} s | "
                  f"{', '.join(f'{w:.2f}' for w in walls)} | {last[:90]} |")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
