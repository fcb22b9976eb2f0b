"""Benchmark of the pooled model's per-river choice (a script, not a test).

Simulates one year for a handful of Mie rivers (SIMULATED data, ``forecast.simulate``), cuts the
level record of some of them to their last few weeks (a gauge installed recently), and runs
``training.train_all(pooled=True)`` on the stored data: for every river with a short record it
prints its own model's and the pooled model's judged event RMSE (leads 3–6 h, same folds) and
which one was registered; rivers too short for a model of their own get the pooled one.

    python benchmarks/bench_pooled.py [--rivers karei,kaizo,horikiri,muku,kanezawa,shitomo]
        [--short kaizo:40,muku:20] [--days 365] [--seed 11]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecast.catalogue import Catalogue, load_catalogue  # noqa: E402
from forecast.clock import FixedClock  # noqa: E402
from forecast.pipeline.context import Context  # noqa: E402
from forecast.pipeline.training import train_all  # noqa: E402
from forecast.simulate import simulate  # noqa: E402
from forecast.storage.engine import (  # noqa: E402
    create_engine,
    migrate,
    transaction,
)
from forecast.storage.observations import upsert_observations  # noqa: E402
from forecast.storage.rain import upsert_rain_vintages  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rivers", default="karei,kaizo,horikiri,muku,kanezawa,shitomo")
    ap.add_argument("--short", default="kaizo:40,muku:20,kanezawa:90",
                    help="river:days of level record kept before the end")
    ap.add_argument("--days", type=float, default=365.0)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    full = load_catalogue(ROOT / "config" / "rivers.yaml")
    cat = Catalogue(name="bench", rivers=tuple(full.river(r) for r in args.rivers.split(",")))
    end = datetime(2024, 10, 1, tzinfo=UTC)
    start = end - timedelta(days=args.days)
    sim = simulate(cat, start, end + timedelta(hours=1), seed=args.seed)
    obs = sim.observations.drop(columns=["received_at"])
    short = {k: float(v) for k, v in (s.split(":") for s in args.short.split(",") if s)}
    for rid, days in short.items():
        gauge = cat.river(rid).primary_gauge
        cut = pd.Timestamp(end) - pd.Timedelta(days=days)
        obs = obs[(obs["station_id"] != gauge) | (obs["time"] >= cut)]
    work = Path(tempfile.mkdtemp(prefix="bench_pooled_"))
    engine = create_engine(f"sqlite:///{work / 'bench.db'}")
    migrate(engine)
    ctx = Context.of(engine, cat, clock=FixedClock(end), models_root=work / "models")
    with transaction(engine) as conn:
        upsert_observations(conn, obs, source="simulated", now=end)
        upsert_rain_vintages(conn, sim.rain_forecasts, now=end)
    t0 = time.perf_counter()
    rep = train_all(ctx, end=end, days=args.days, pooled=True)
    wall = time.perf_counter() - t0
    print(f"SIMULATED data: {len(cat.rivers)} rivers, {args.days:.0f}-day window ending "
          f"{end:%Y-%m-%d}, short records {short}; train_all(pooled=True) {wall:.1f} s")
    print("| river | level record (days) | registered | choice (same judging folds) |")
    print("|---|---|---|---|")
    for r in cat.rivers:
        kept = short.get(r.id, args.days)
        v = rep.versions.get(r.id)
        kind = "—" if v is None else ("pooled" if "pooled" in v.manifest else "own")
        why = rep.choices.get(r.id, "long record: own model only")
        print(f"| {r.id} | {kept:.0f} | {kind} | {why} |")
    for rid, msg in rep.failed.items():
        print(f"FAILED {rid}: {msg}")


if __name__ == "__main__":
    main()
