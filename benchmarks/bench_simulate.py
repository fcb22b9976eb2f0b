"""Benchmark ``forecast.simulate.simulate``: 3 years x 38 rivers (target < 20 s, limit 60 s).

Runs on the synthetic 38-river catalogue, and also on config/rivers.yaml when it exists and
loads. Prints wall time (cold: includes the rating calibration; warm: calibration cached),
frame sizes, peak RSS, and how often each threshold was crossed per river-year.

    python benchmarks/bench_simulate.py [--years 3] [--rivers 38] [--seed 0]
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from forecast.catalogue import Catalogue, load_catalogue
from forecast.errors import CatalogueError
from forecast.simulate import SimulatedData, simulate
from forecast.simulate.demo_catalogue import synthetic_catalogue

ROOT = Path(__file__).resolve().parent.parent


def crossing_rates(cat: Catalogue, data: SimulatedData, years: float) -> dict[str, float]:
    """Mean number of up-crossings per river-year of each threshold (hourly true stage)."""
    out: dict[str, list[float]] = {}
    truth = data.truth
    for river in cat.rivers:
        level = truth.loc[truth["river_id"] == river.id, "level_m"].to_numpy()
        for name, h in river.thresholds.ladder():
            ups = int(np.sum((level[1:] >= h) & (level[:-1] < h)))
            out.setdefault(name, []).append(ups / years)
    return {k: round(float(np.mean(v)), 2) for k, v in out.items()}


def run(label: str, cat: Catalogue, years: int, seed: int) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    end = datetime(2020 + years, 1, 1, tzinfo=UTC)
    for phase, s in (("cold", seed), ("warm", seed + 1)):
        t0 = time.perf_counter()
        data = simulate(cat, start, end, seed=s)
        dt = time.perf_counter() - t0
        print(f"{label:<24} {phase}: {dt:6.1f} s  rivers={len(cat.rivers)} years={years} "
              f"obs={len(data.observations):,} truth={len(data.truth):,} "
              f"rain_fc={len(data.rain_forecasts):,}")
    print(f"{label:<24} threshold up-crossings per river-year: {crossing_rates(cat, data, years)}")
    print(f"{label:<24} storms: {data.meta['storm_counts']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--years", type=int, default=3)
    ap.add_argument("--rivers", type=int, default=38)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run("synthetic catalogue", synthetic_catalogue(args.rivers), args.years, args.seed)
    path = ROOT / "config" / "rivers.yaml"
    if path.exists():
        try:
            run("config/rivers.yaml", load_catalogue(path), args.years, args.seed)
        except CatalogueError as exc:
            print(f"config/rivers.yaml skipped: {exc}")
    else:
        print("config/rivers.yaml not present: skipped")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss_mb:,.0f} MB")


if __name__ == "__main__":
    main()
