"""``forecast …`` command line: thin wrappers over the library.

Run ``forecast --help`` or ``forecast COMMAND --help``. Exit codes: 0 ok, 1 a command failed
(partly), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from forecast import __version__
from forecast.catalogue import Catalogue, load_catalogue
from forecast.errors import ConfigError, ForecastError
from forecast.logs import configure_logging
from forecast.settings import Settings, load_settings

log = logging.getLogger("forecast.cli")


def _utc(text: str) -> datetime:
    ts = pd.Timestamp(text)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def _now() -> datetime:
    return datetime.now(UTC)


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from forecast.storage.engine import create_engine

    return create_engine(settings.db_url)


def cmd_init_db(args: argparse.Namespace, settings: Settings) -> int:
    from forecast.storage.engine import migrate
    from forecast.storage.repository import sync_stations

    catalogue = load_catalogue(settings.catalogue)
    engine = _engine(settings)
    rev = migrate(engine)
    n = sync_stations(engine, catalogue)
    print(f"database {settings.db_url} at schema {rev}; {n} stations from {settings.catalogue}")
    return 0


def cmd_catalogue_check(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.path) if args.path else settings.catalogue
    cat = load_catalogue(path)
    n_gauges = sum(len(r.gauges) for r in cat.rivers)
    n_crisis = sum(g.kind == "crisis" for r in cat.rivers for g in r.gauges)
    prov = [r for r in cat.rivers if r.provisional_parts]
    print(f"{path}: OK — catalogue {cat.name!r}, {len(cat.rivers)} rivers, {n_gauges} level "
          f"gauges ({n_crisis} crisis gauges), "
          f"{len({g.code for r in cat.rivers for g in r.rain_gauges})} rain gauges")
    if prov:
        print(f"{len(prov)} rivers have provisional values (not from an official source):")
        for r in prov:
            print(f"  {r.id:<14} {r.name_ja}: {', '.join(r.provisional_parts)}")
    return 0


def write_simulation(settings: Settings, catalogue: Catalogue, start: datetime, end: datetime,
                     seed: int) -> tuple[int, int]:
    """Simulate [start, end) and write observations and forecast-rain vintages to the DB."""
    from forecast.simulate import simulate
    from forecast.storage.engine import migrate
    from forecast.storage.observations import upsert_observations
    from forecast.storage.repository import sync_stations, upsert_rain_vintages

    engine = _engine(settings)
    migrate(engine)
    sync_stations(engine, catalogue)
    print(f"simulating {len(catalogue.rivers)} rivers {start:%Y-%m-%d} → {end:%Y-%m-%d} "
          f"(seed {seed}; SIMULATED data, not observations)")
    sim = simulate(catalogue, start, end, seed=seed)
    obs = sim.observations
    now = _now()
    written = 0
    groups = list(obs.groupby("station_id", sort=True))
    for _, part in tqdm(groups, desc="writing observations", unit="station"):
        upsert_observations(engine, part, source="simulated", now=now)
        written += len(part)
    n_rain = upsert_rain_vintages(engine, sim.rain_forecasts, now=now)
    return written, n_rain


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    catalogue = load_catalogue(settings.catalogue)
    end = _utc(args.end) if args.end else _now().replace(minute=0, second=0, microsecond=0)
    start = _utc(args.start) if args.start else end - timedelta(days=round(365.25 * args.years))
    if args.out:
        from forecast.simulate import simulate

        sim = simulate(catalogue, start, end, seed=args.seed or settings.seed)
        out = sim.observations.assign(time=sim.observations["time"].dt.strftime(
            "%Y-%m-%dT%H:%M:%S+00:00"))
        out[["station_id", "variable", "time", "value"]].to_csv(args.out, index=False)
        print(f"wrote {len(out)} simulated observations to {args.out}")
        return 0
    n_obs, n_rain = write_simulation(settings, catalogue, start, end, args.seed or settings.seed)
    print(f"wrote {n_obs} observations and {n_rain} forecast-rain values to {settings.db_url}")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from forecast.importer import import_files
    from forecast.storage.engine import migrate

    engine = _engine(settings)
    migrate(engine)
    paths = [Path(p) for p in args.files]
    bar = tqdm(total=len(paths), desc=f"import {args.source}", unit="file")
    report = import_files(engine, paths, source=args.source, now=_now(),
                          progress=lambda _p: bar.update())
    bar.close()
    print(f"imported {report.total_rows} rows from {len(report.rows)} files "
          f"({report.inserted} new, {report.revised} revised)")
    for loc, err in report.failed.items():
        print(f"FAILED {loc}: {err}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Bring-your-own-data backtest (contract in forecast/modelling/byod.py and the README)."""
    from forecast.modelling.backtest import summary_table
    from forecast.modelling.byod import run_backtest_files, write_reports

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    bar = tqdm(desc="backtest", unit="step")

    def progress(msg: str) -> None:
        bar.set_postfix_str(msg[:60])
        bar.update()

    result = run_backtest_files(
        args.catalogue, args.observations, args.rain, args.folds, args.future_rain, args.out,
        rain_forecasts_path=args.rain_forecasts, progress=progress, models=models)
    bar.close()
    print(f"wrote {len(result.forecasts)} forecast rows to {args.out}")
    if args.report_dir:
        for rid, page in write_reports(result, args.report_dir).items():
            print(f"{rid}: report {page}")
    if not result.scores.empty:
        print(summary_table(result.scores))
    for river, msg in result.failures.items():
        print(f"FAILED river {river}: {msg}", file=sys.stderr)
    return 1 if result.failures else 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    # The API is started by its import string, not imported: entry points stay independent.
    print(f"serving on http://{settings.http_host}:{settings.http_port}/ (Ctrl-C to stop)")
    uvicorn.run("forecast.api.main:app_from_env", factory=True, host=settings.http_host,
                port=settings.http_port, log_level="warning")
    return 0


DEMO_DELAY = timedelta(minutes=15)


def _load_demo_history(settings: Settings, catalogue: Catalogue, end: datetime,
                       years: float) -> None:
    """Simulate ``years`` up to ``end`` and ingest it through the live code paths: the history
    through QC + store (``store_observations``), the last day through the replay source
    (archive → parse → QC → store), as a live deployment would have received it."""
    from forecast.collect import collect_replay, store_observations
    from forecast.ingest.replay import Replay
    from forecast.simulate import simulate
    from forecast.storage.repository import upsert_rain_vintages

    engine = _engine(settings)
    start = end - timedelta(days=round(365.25 * years))
    print(f"simulating {len(catalogue.rivers)} rivers {start:%Y-%m-%d} → {end:%Y-%m-%d} "
          f"(seed {settings.seed}; SIMULATED data, not observations)")
    sim = simulate(catalogue, start, end + timedelta(hours=2), seed=settings.seed)
    replay = Replay.of(sim.observations, sim.rain_forecasts, name="simulated")
    live_from = end - timedelta(hours=24)
    history = replay.available_at(live_from, window=end - start)
    print(f"storing {len(history.observations):,} observations and "
          f"{len(history.rain):,} forecast-rain values (QC + store)")
    res = store_observations(engine, catalogue, history.observations.drop(
        columns=["received_at"]), source="simulated", now=live_from)
    if res.failed:
        print(f"stations that failed to store: {res.failed}", file=sys.stderr)
    upsert_rain_vintages(engine, history.rain, now=live_from)
    # The cycle for issue time T runs a little after T, when the telemetry for T has arrived.
    report = collect_replay(engine, catalogue, replay, end + DEMO_DELAY, since=live_from)
    print(f"replayed the last 24 h through the live path: {len(report.sources)} source(s), "
          f"{len(report.failures)} failure(s)")


def _demo_models(settings: Settings, catalogue: Catalogue, end: datetime):  # type: ignore[no-untyped-def]
    """Champion models per river from the registry; rivers without one are trained on the
    stored year, registered and promoted (first champion). Returns a provider for the cycle."""
    from forecast.modelling import registry
    from forecast.training import train_all

    root = settings.models_dir
    missing = [r.id for r in catalogue.rivers if registry.champion(root, r.id) is None]
    if missing:
        engine = _engine(settings)
        bar = tqdm(total=len(missing), desc="training models", unit="river")
        report = train_all(engine, catalogue, end=end, days=365, models_root=root, now=_now(),
                           judge=False, rivers=missing, progress=lambda _r: bar.update())
        bar.close()
        for rid, version in report.versions.items():
            registry.promote(root, rid, version.version, at=_now())
        for rid, msg in report.failed.items():
            print(f"river {rid}: not trained: {msg}", file=sys.stderr)
    return _champions(settings)


def _champions(settings: Settings):  # type: ignore[no-untyped-def]
    from forecast.modelling import registry

    def provider(river_id: str):  # type: ignore[no-untyped-def]
        return registry.load_champion(settings.models_dir, river_id)

    return provider


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train rivers on stored data and register the versions (not promoted)."""
    from forecast.training import train_all

    catalogue = load_catalogue(settings.catalogue)
    end = _utc(args.end) if args.end else _now().replace(minute=0, second=0, microsecond=0)
    rivers = None if args.all else [args.river]
    if args.pooled and args.no_backtest:
        raise ConfigError("--pooled chooses between the pooled and the own model by backtest; "
                          "drop --no-backtest")
    if rivers and rivers[0] not in catalogue.ids:
        raise ConfigError(f"unknown river {args.river!r}; known: {', '.join(catalogue.ids)}")
    total = len(catalogue.rivers) if rivers is None else 1
    bar = tqdm(total=total, desc="training", unit="river")
    report = train_all(_engine(settings), catalogue, end=end, days=args.days,
                       models_root=settings.models_dir, now=_now(), judge=not args.no_backtest,
                       rivers=rivers, progress=lambda _r: bar.update(),
                       report_dir=Path(args.report_dir) if args.report_dir else None,
                       pooled=args.pooled)
    bar.close()
    for rid, v in report.versions.items():
        rm = v.event_rmse
        print(f"{rid}: registered {v.version}"
              + (f" (event RMSE 3–6 h {rm:.3f} m)" if rm is not None else "")
              + (f"; {report.choices[rid]}" if rid in report.choices else ""))
    for rid, msg in report.failed.items():
        print(f"FAILED {rid}: {msg}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from forecast.modelling import registry

    table = registry.list_versions(settings.models_dir, args.river)
    print(table.to_string(index=False) if not table.empty else "no registered models")
    return 0


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    """Champion–challenger promotion; when the two versions were judged on different
    backtests both are re-scored on one hold-out of stored data (default: the challenger's
    training window)."""
    from forecast.modelling import registry
    from forecast.training import promote_river

    catalogue = load_catalogue(settings.catalogue)
    if args.river not in catalogue.ids:
        raise ConfigError(f"unknown river {args.river!r}; known: {', '.join(catalogue.ids)}")
    challenger, _ = registry.load_version(settings.models_dir, args.river, args.version)
    w0, w1 = (datetime.fromisoformat(t) for t in challenger.manifest["training_window"])
    end = _utc(args.end) if args.end else w1
    days = args.days if args.days else (w1 - w0).total_seconds() / 86400.0
    msg = promote_river(_engine(settings), catalogue.river(args.river), args.version, end=end,
                        days=days, models_root=settings.models_dir, now=_now(),
                        force=args.force, actor=args.actor)
    print(msg)
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from forecast.modelling import registry

    version = registry.rollback(settings.models_dir, args.river, at=_now(),
                                engine=_engine(settings), actor=args.actor)
    print(f"{args.river}: champion is again {version}")
    return 0


def cmd_cycle(args: argparse.Namespace, settings: Settings) -> int:
    """Run one forecast cycle with the champion models."""
    from forecast.cycle import run_cycle

    catalogue = load_catalogue(settings.catalogue)
    issued = _utc(args.at) if args.at else _now().replace(minute=0, second=0, microsecond=0)
    report = run_cycle(_engine(settings), catalogue, issued, models=_champions(settings),
                       now=_now(), trigger="cli", rain_product=args.rain_product)
    for o in report.outcomes:
        print(f"{o.river_id:<14} {o.status:<9} {o.model_version or '':<26} {o.message or ''}")
    print(f"cycle {report.cycle_id} at {issued:%Y-%m-%d %H:%M}Z: {report.status}")
    return 0 if report.status == "ok" else 1


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The embedded default: SQLite, catalogue, simulated history ingested through the replay
    path, models trained (or loaded), one forecast cycle, then serve."""
    from forecast.cycle import run_cycle
    from forecast.storage.engine import migrate
    from forecast.storage.observations import read_observations
    from forecast.storage.repository import sync_stations

    catalogue = load_catalogue(settings.catalogue)
    engine = _engine(settings)
    migrate(engine)
    sync_stations(engine, catalogue)
    end = _utc(args.end) if args.end else _now().replace(minute=0, second=0, microsecond=0)
    have = read_observations(engine, station_ids=[catalogue.rivers[0].primary_gauge],
                             start=end - timedelta(days=2), end=end)
    if have.empty:
        _load_demo_history(settings, catalogue, end, args.years)
    else:
        end = have["time"].max().floor("h").to_pydatetime()
        print(f"simulated history already present (up to {end:%Y-%m-%d %H:%M}Z)")
    provider = _demo_models(settings, catalogue, end)
    report = run_cycle(engine, catalogue, end, models=provider, now=_now(), trigger="demo",
                       rain_product="simulated_forecast")
    counts = pd.Series([o.status for o in report.outcomes]).value_counts().to_dict()
    print(f"forecast cycle {report.cycle_id} at {end:%Y-%m-%d %H:%M}Z: {counts}")
    if args.no_serve:
        print("demo ready (--no-serve given)")
        return 0
    return cmd_serve(args, settings)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="forecast",
        description="Water-level forecasts (水位予測) for Mie Prefecture's rivers. "
                    "Settings come from FORECAST_* environment variables (see README).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--log-json", action="store_true", help="JSON-lines logs")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init-db", help="create or migrate the database and load stations")
    s.set_defaults(func=cmd_init_db)

    s = sub.add_parser("catalogue", help="river catalogue commands")
    csub = s.add_subparsers(dest="catalogue_command", required=True)
    c = csub.add_parser("check", help="validate a catalogue file and summarise it")
    c.add_argument("path", nargs="?", help="catalogue YAML (default FORECAST_CATALOGUE)")
    c.set_defaults(func=cmd_catalogue_check)

    s = sub.add_parser("simulate", help="generate SIMULATED history into the database or a CSV")
    s.add_argument("--start", help="UTC start (default: --years before --end)")
    s.add_argument("--end", help="UTC end (default: now, floored to the hour)")
    s.add_argument("--years", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--out", help="write canonical CSV here instead of the database")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("import", help="import files (raw bytes archived before parsing)")
    s.add_argument("--source", required=True, help="parser name, e.g. canonical_csv")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("backtest", help="leak-free backtest on your own CSV files "
                       "(FORECASTS.csv: river_id,issued_at,valid_at,horizon_h,level,q10,q50,q90)")
    s.add_argument("--catalogue", required=True, help="catalogue YAML mapping stations to rivers")
    s.add_argument("--observations", required=True, help="OBS.csv: station_id,time,value (m)")
    s.add_argument("--rain", required=True, help="RAIN.csv: station_id,time,value (mm/h)")
    s.add_argument("--folds", required=True, help="FOLDS.csv: fold,train_end,test_start,test_end")
    s.add_argument("--future-rain", required=True, choices=["none", "perfect", "archive"])
    s.add_argument("--rain-forecasts", help="archive mode: issued rain forecasts CSV")
    s.add_argument("--out", required=True, help="FORECASTS.csv to write")
    s.add_argument("--report-dir", help="also write an HTML report per river here "
                   "(DIR/<river>/index.html: event hydrographs, metrics vs baselines)")
    s.add_argument("--models", default="lgbm,persistence,ar2,sarimax",
                   help="models to run and score (our model is written to --out)")
    s.set_defaults(func=cmd_backtest)

    s = sub.add_parser("train", help="train rivers on stored data and register versions")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--river", help="river id")
    g.add_argument("--all", action="store_true", help="every river of the catalogue")
    s.add_argument("--end", help="end of the training window, UTC (default: this hour)")
    s.add_argument("--days", type=float, default=365.0, help="length of the training window")
    s.add_argument("--no-backtest", action="store_true",
                   help="skip the judging backtest (promotion then needs --force)")
    s.add_argument("--pooled", action="store_true",
                   help="also train one pooled model on all rivers; rivers with under a year "
                   "of level data (or no model of their own) get it where it backtests better")
    s.add_argument("--report-dir", help="write each river's backtest HTML report here "
                   "(<dir>/<river>/<version>/index.html)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("models", help="list registered model versions")
    s.add_argument("--river")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("promote", help="make a version champion (champion–challenger check)")
    s.add_argument("river")
    s.add_argument("version")
    s.add_argument("--force", action="store_true", help="skip the comparison (audited)")
    s.add_argument("--end", help="end of the re-scoring hold-out window, UTC "
                   "(default: end of the challenger's training window)")
    s.add_argument("--days", type=float, default=None,
                   help="length of that window (default: the challenger's)")
    s.add_argument("--actor", default="cli", help="who promotes (audit log)")
    s.set_defaults(func=cmd_promote)

    s = sub.add_parser("rollback", help="restore the previous champion")
    s.add_argument("river")
    s.add_argument("--actor", default="cli", help="who rolls back (audit log)")
    s.set_defaults(func=cmd_rollback)

    s = sub.add_parser("cycle", help="run one forecast cycle with the champion models")
    s.add_argument("--at", help="issue time, UTC whole hour (default: this hour)")
    s.add_argument("--rain-product", default=None, help="rain-vintage product to use")
    s.set_defaults(func=cmd_cycle)

    s = sub.add_parser("serve", help="run the HTTP API and web page")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", help="embedded default: SQLite + simulated data, then serve")
    s.add_argument("--years", type=float, default=1.0, help="years of simulated history")
    s.add_argument("--end", help="issue time of the demo cycle, UTC (default: this hour); "
                   "with the seed it makes the demo reproducible")
    s.add_argument("--no-serve", action="store_true", help="prepare data, do not serve")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, json_lines=args.log_json or settings.log_json)
        return int(args.func(args, settings))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except ForecastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
