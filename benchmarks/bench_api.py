"""API load benchmark: the latest-forecast and river-list endpoints under a fixed request rate,
authentication on, on loopback.

    python benchmarks/bench_api.py --db DB --catalogue CAT.yaml [--rate 500] [--seconds 60]
                                   [--workers 2] [--synthetic N]

Starts ``uvicorn forecast.api.main:app_from_env --factory --workers W`` on a free loopback port
against an existing database (e.g. the demo's ``var/forecast.db``, or
``benchmarks/bench_tick.py --keep DIR``'s ``DIR/synthetic800/run.db`` with ``--synthetic 800``,
whose catalogue is written from ``synthetic_catalogue(800, seed=0)``), creates a viewer API key,
then sends requests **open loop** at ``--rate`` per second for ``--seconds`` (half to
``/v1/forecasts/latest``, half to ``/v1/rivers``, each with ``X-API-Key``; a request is sent
on schedule whether or not earlier ones have answered, so a slow server shows as latency, not
as a lower rate), from ``--clients`` asyncio connections in this process (on the same 2-core
machine as the server: the client's own CPU is part of the figure). Prints the achieved rate,
errors, and p50 / p95 / p99 / max latency per endpoint, as markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = ("/v1/forecasts/latest", "/v1/rivers")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def _load(base: str, key: str, rate: float, seconds: float, clients: int
                ) -> dict[str, list[float] | int]:
    lat: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # TCP_NODELAY: without it the client's small writes wait for the server's delayed ACK
    # (about 40 ms per request on Linux loopback), which measures the client, not the server
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key},
                                 transport=transport, timeout=10) as client:
        async def one(path: str) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                r = await client.get(path)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                lat[path].append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(ENDPOINTS[i % 2])))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return {"wall_ms": int(wall * 1000), "errors": errors, **lat}   # type: ignore[dict-item]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--catalogue", type=Path, default=ROOT / "config" / "rivers.yaml")
    ap.add_argument("--synthetic", type=int, default=None,
                    help="write synthetic_catalogue(N, seed=0) and serve with it")
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=1,
                    help="uvicorn workers (default 1, as `forecast serve` runs)")
    ap.add_argument("--clients", type=int, default=64)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    catalogue = args.catalogue
    if args.synthetic:
        from forecast.simulate.demo_catalogue import synthetic_catalogue

        cat = synthetic_catalogue(args.synthetic, seed=0)
        catalogue = tmp / "rivers.yaml"
        catalogue.write_text(yaml.safe_dump(cat.model_dump(mode="json", exclude_none=True),
                                            allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "FORECAST_DATABASE_URL": f"sqlite:///{args.db.resolve()}",
           "FORECAST_CATALOGUE": str(catalogue), "FORECAST_DATA_DIR": str(tmp),
           "FORECAST_SCHEDULER": "false", "FORECAST_RATE_LIMIT": "100000",
           "FORECAST_LOG_LEVEL": "WARNING"}
    key = subprocess.run([sys.executable, "-m", "forecast.cli", "keys", "create", "--name",
                          "bench", "--role", "viewer", "--actor", "bench_api"], env=env,
                         capture_output=True, text=True, check=True).stdout
    key = next(line for line in key.splitlines() if line.startswith("fk_"))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory",
                               "forecast.api.main:app_from_env", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", str(args.workers),
                               "--log-level", "warning", "--no-access-log",
                               "--http", "forecast.api.nodelay:NoDelayH11Protocol"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.3)
        for path in ENDPOINTS:   # warm: caches, imports, the first queries
            for _ in range(20):
                httpx.get(base + path, headers={"X-API-Key": key}, timeout=30)
        got = asyncio.run(_load(base, key, args.rate, args.seconds, args.clients))
    finally:
        server.terminate()
        server.wait(timeout=30)
    total = sum(len(got[e]) for e in ENDPOINTS)   # type: ignore[arg-type]
    wall = got["wall_ms"] / 1000   # type: ignore[operator]
    print(f"\n{args.rate:g} req/s asked for {args.seconds:g} s, {args.workers} uvicorn "
          f"worker(s), {args.clients} client connections, database {args.db.name}, "
          f"catalogue {catalogue.name}{f' (synthetic {args.synthetic})' if args.synthetic else ''}")
    print(f"answered 200: {total}, errors: {got['errors']}, achieved "
          f"{total / wall:.0f} req/s over {wall:.1f} s\n")
    print("| endpoint | requests | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|")
    for e in ENDPOINTS:
        xs: list[float] = got[e]   # type: ignore[assignment]
        print(f"| `{e}` | {len(xs)} | {statistics.median(xs):.1f} ms | "
              f"{_quantile(xs, 0.95):.1f} ms | {_quantile(xs, 0.99):.1f} ms | "
              f"{max(xs):.1f} ms |")


if __name__ == "__main__":
    main()
