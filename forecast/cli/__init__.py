"""``forecast …`` command line: thin wrappers over ``forecast.pipeline``.

Run ``forecast --help`` or ``forecast COMMAND --help``. Exit codes: 0 ok, 1 a command failed
(partly), 2 bad usage or configuration (one line naming the argument and the accepted form).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pandas as pd
from tqdm import tqdm

from forecast import __version__
from forecast.catalogue import load_catalogue
from forecast.errors import ConfigError, ForecastError
from forecast.logs import configure_logging
from forecast.settings import load_settings

if TYPE_CHECKING:
    from forecast.pipeline.context import Context

log = logging.getLogger("forecast.cli")

IMPORT_SOURCES = ("canonical_csv", "mlit_dat", "mlit_json", "amedas_map", "amedas_point",
                  "crisis_json", "replay_csv", "kotogawa_csv")   # = importer.SOURCES

TIME_FORM = "an ISO 8601 time such as 2024-07-01T09:00+09:00 or 2024-07-01T00:00Z (no offset: UTC)"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``forecast cycle: error: argument --at: …``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def utc_time(text: str) -> datetime:
    """An argument time → tz-aware UTC; a time without offset is UTC."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not {TIME_FORM}") from exc
    if not isinstance(ts, pd.Timestamp) or pd.isna(ts):
        raise argparse.ArgumentTypeError(f"{text!r} is not {TIME_FORM}")
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def issue_time_arg(text: str) -> datetime:
    """An issue time: a UTC time on a whole or half hour."""
    t = utc_time(text)
    if t.minute not in (0, 30) or t.second or t.microsecond:
        raise argparse.ArgumentTypeError(f"{text!r} is not on a whole or half hour (issue "
                                         "times are hh:00 or hh:30)")
    return t


def positive(text: str) -> float:
    """A positive number (days, years)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return v


def workers_arg(text: str) -> int:
    """A number of worker processes: a whole number from 1 to 64."""
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 64")
    return int(text)


def _ctx() -> Context:
    from forecast.pipeline.context import Context

    return Context.from_settings()


def _river(ctx: Context, river_id: str) -> None:
    if river_id not in ctx.catalogue.ids:
        raise ConfigError(f"unknown river {river_id!r}; known: {', '.join(ctx.catalogue.ids)}")


def _this_hour(ctx: Context) -> datetime:
    return ctx.clock.now().replace(minute=0, second=0, microsecond=0)


def cmd_init_db(args: argparse.Namespace) -> int:
    from forecast.pipeline.demo import init_db

    ctx = _ctx()
    rev, n = init_db(ctx)
    print(f"database {ctx.database_label} at schema {rev}; {n} stations from "
          f"{ctx.settings.catalogue}")
    return 0


def cmd_catalogue_check(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else load_settings().catalogue
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


def cmd_simulate(args: argparse.Namespace) -> int:
    from forecast.pipeline.demo import export_simulation, write_simulation

    ctx = _ctx()
    end = args.end or _this_hour(ctx)
    start = args.start or end - timedelta(days=round(365.25 * args.years))
    if start >= end:
        raise ConfigError(f"--start {start:%Y-%m-%d %H:%M}Z is not before --end "
                          f"{end:%Y-%m-%d %H:%M}Z")
    seed = args.seed if args.seed is not None else ctx.settings.seed
    if args.out:
        n = export_simulation(ctx, start, end, seed, Path(args.out))
        print(f"wrote {n} SIMULATED observations to {args.out} (source column: simulated)")
        return 0
    n_obs, n_rain = write_simulation(ctx, start, end, seed)
    print(f"wrote {n_obs} observations and {n_rain} forecast-rain values to "
          f"{ctx.database_label}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from forecast.pipeline.demo import init_db
    from forecast.pipeline.importer import import_files

    ctx = _ctx()
    init_db(ctx)
    paths = [Path(p) for p in args.files]
    bar = tqdm(total=len(paths), desc=f"import {args.source}", unit="file")
    report = import_files(ctx, paths, source=args.source,
                          accept_unknown=args.accept_unknown_stations,
                          progress=lambda _p: bar.update())
    bar.close()
    print(f"imported {report.total_rows} rows from {len(report.rows)} files "
          f"({report.inserted} new, {report.revised} revised; QC applied)")
    if report.unknown_stations:
        print(f"note: {len(report.unknown_stations)} station(s) not in the catalogue, stored "
              f"but used by no river: {', '.join(sorted(report.unknown_stations)[:10])}")
    for loc, err in report.failed.items():
        print(f"FAILED {loc}: {err}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_qc(args: argparse.Namespace) -> int:
    from forecast.pipeline.collect import recheck_qc

    ctx = _ctx()
    known = {c for r in ctx.catalogue.rivers for c in r.station_codes}
    unknown = sorted(set(args.station or []) - known)
    if unknown:
        raise ConfigError(f"--station {', '.join(unknown)}: not in the catalogue")
    res = recheck_qc(ctx, stations=args.station, start=args.start, end=args.end)
    print(f"QC re-checked: {res.revised} stored values changed flag")
    for st, err in res.failed.items():
        print(f"FAILED {st}: {err}", file=sys.stderr)
    return 1 if res.failed else 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Bring-your-own-data backtest (contract in forecast/pipeline/backtest_files.py)."""
    from forecast.pipeline.backtest_files import run_backtest_files, summary_table, write_reports

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


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    if getattr(args, "no_scheduler", False):
        os.environ["FORECAST_SCHEDULER"] = "false"   # read by the app factory
    settings = load_settings()
    # The API is started by its import string, not imported: entry points stay independent.
    what = "API + scheduler" if settings.scheduler else "API only (no scheduler)"
    print(f"serving {what} on http://{settings.http_host}:{settings.http_port}/ "
          "(Ctrl-C to stop)", flush=True)
    uvicorn.run("forecast.api.main:app_from_env", factory=True, host=settings.http_host,
                port=settings.http_port, log_level="warning",
                http="forecast.api.nodelay:NoDelayH11Protocol")   # TCP_NODELAY (see there)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train rivers on stored data and register the versions (not promoted)."""
    from forecast.pipeline.training import train_all

    ctx = _ctx()
    if args.pooled and args.no_backtest:
        raise ConfigError("--pooled chooses between the pooled and the own model by backtest; "
                          "drop --no-backtest")
    if args.river:
        _river(ctx, args.river)
    end = args.end or _this_hour(ctx)
    rivers = None if args.all else [args.river]
    bar = tqdm(total=len(ctx.catalogue.rivers) if rivers is None else 1, desc="training",
               unit="river")
    report = train_all(ctx, end=end, days=args.days, judge=not args.no_backtest,
                       rivers=rivers, progress=lambda _r: bar.update(),
                       report_dir=Path(args.report_dir) if args.report_dir else None,
                       pooled=args.pooled, workers=args.workers)
    bar.close()
    for rid, v in report.versions.items():
        rm = v.event_rmse
        print(f"{rid}: registered {v.version}"
              + (f" (event RMSE 3–6 h {rm:.3f} m)" if rm is not None else "")
              + (f"; {report.choices[rid]}" if rid in report.choices else ""))
    for rid, msg in report.failed.items():
        print(f"FAILED {rid}: {msg}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from forecast.pipeline.models import list_versions

    ctx = _ctx()
    if args.river:
        _river(ctx, args.river)
    table = list_versions(ctx, args.river)
    print(table.to_string(index=False) if not table.empty else "no registered models")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Champion–challenger promotion; when the two versions were judged on different
    backtests both are re-scored on one hold-out of stored data (default: the challenger's
    training window)."""
    from forecast.pipeline.training import promote_river

    ctx = _ctx()
    _river(ctx, args.river)
    print(promote_river(ctx, ctx.catalogue.river(args.river), args.version, end=args.end,
                        days=args.days, force=args.force, actor=args.actor))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from forecast.pipeline.models import rollback

    ctx = _ctx()
    _river(ctx, args.river)
    print(f"{args.river}: champion is again {rollback(ctx, args.river, actor=args.actor)}")
    return 0


def cmd_cycle(args: argparse.Namespace) -> int:
    """Run one forecast cycle (a new revision of the issue time) with the champion models."""
    from forecast.pipeline.cycle import run_cycle

    ctx = _ctx()
    issued = args.at or _this_hour(ctx)
    report = run_cycle(ctx, issued, trigger="cli", rain_product=args.rain_product)
    for o in report.outcomes:
        print(f"{o.river_id:<14} {o.status:<9} {o.model_version or '':<26} {o.message or ''}")
    print(f"cycle {report.cycle_id} at {issued:%Y-%m-%d %H:%M}Z (revision {report.revision}): "
          f"{report.status}")
    return 0 if report.status == "ok" else 1


def _print_tick(t: Any) -> None:
    if t.skipped:
        print(f"{t.issued_at:%Y-%m-%d %H:%M}Z: skipped: {t.skipped}")
        return
    for s in t.sources:
        print(f"  source {s.source:<12} {s.status:<9} {s.payloads} payload(s), {s.rows} rows"
              + (f"; {s.message}" if s.message else ""))
    for o in t.cycle.outcomes:
        print(f"  {o.river_id:<14} {o.status:<9} {o.model_version or '':<26} {o.message or ''}")
    sent = getattr(t.notified, "messages", None)
    if sent:
        print("  notifications: " + ", ".join(f"{k} {n}" for k, n in sorted(sent.items())))
    for river_id, why in (getattr(t.notified, "failed", None) or {}).items():
        print(f"  notifications of {river_id} failed: {why}")
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in t.stages.items())
    print(f"tick {t.cycle.cycle_id} at {t.issued_at:%Y-%m-%d %H:%M}Z (revision "
          f"{t.cycle.revision}): {t.status} ({stages})")


def cmd_run_once(args: argparse.Namespace) -> int:
    """One operational tick: collect every source, forecast every river, notify, record."""
    from forecast.pipeline.deliver import deliver_due, senders_from_settings
    from forecast.pipeline.tick import run_due, run_tick

    ctx = _ctx()
    senders = senders_from_settings(ctx.settings)

    def deliver(c: Context) -> None:
        if senders:
            deliver_due(c, senders)

    if args.at is None:
        due = run_due(ctx, trigger="run-once", deliver=deliver)
        for t in due.ticks:
            _print_tick(t)
        for locked in due.locked:
            print(f"{locked:%Y-%m-%d %H:%M}Z: being run by another process, skipped")
        if not due.ticks and not due.locked:
            print("nothing due: every recent issue time has a finished tick")
        return 0 if all(t.status in ("ok", "skipped") for t in due.ticks) else 1
    tick = run_tick(ctx, args.at, trigger="run-once", force=args.force, deliver=deliver)
    _print_tick(tick)
    return 0 if tick.status in ("ok", "skipped") else 1


def cmd_scheduler(args: argparse.Namespace) -> int:
    """The scheduler alone, until SIGTERM/SIGINT."""
    from forecast.pipeline.schedule import Scheduler

    ctx = _ctx()
    sched = Scheduler(ctx)
    print(f"scheduler on {ctx.database_label}: ticks at minutes {ctx.settings.tick_minutes} "
          f"(UTC), catch-up up to {ctx.settings.catchup_limit} issue times; Ctrl-C or SIGTERM "
          "stops after the running tick", flush=True)
    sched.run_until_signal()
    return 0


def cmd_ready(args: argparse.Namespace) -> int:
    """Readiness: exit 0 when the newest tick is on time (stale inputs are listed)."""
    from forecast.pipeline.status import readiness

    r = readiness(_ctx())
    last = r.last_tick
    head = "ready" if r.ready else "NOT READY"
    print(f"{head}: expected a tick of {r.expected_issue_time:%Y-%m-%d %H:%M}Z; newest tick "
          + (f"{last['issued_at']:%Y-%m-%d %H:%M}Z ({last['status']})" if last else "none"))
    for p in r.problems:
        print(f"  problem: {p}")
    for s in r.stale:
        print(f"  stale: {s}")
    return 0 if r.ready else 1


def _channels_configured(ctx: Context) -> bool:
    from forecast.pipeline.notify import channels

    return bool(channels(ctx))


def _demo_receiver(ctx: Context) -> None:
    """Start a loopback test receiver on the next port and point the demo's Slack (Web API)
    and webhook channels at it (environment for the serving process's settings)."""
    import os
    import secrets

    from forecast.pipeline.notify import start_demo_receiver

    host, port = ctx.settings.http_host, ctx.settings.http_port + 1
    secret, token = secrets.token_hex(16), "xoxb-demo-" + secrets.token_hex(8)

    def echo(line: str) -> None:
        print(f"  [test receiver] {line}", flush=True)

    rec = start_demo_receiver(host, port, secret=secret, token=token, echo=echo)
    os.environ.update({
        "FORECAST_SLACK_TOKEN": token, "FORECAST_SLACK_CHANNEL": "C-DEMO-STAFF",
        "FORECAST_SLACK_OPS_CHANNEL": "C-DEMO-OPS", "FORECAST_SLACK_API_URL": rec.slack_api_url,
        "FORECAST_WEBHOOK_URL": rec.webhook_url, "FORECAST_WEBHOOK_SECRET": secret})
    os.environ.setdefault("FORECAST_PUBLIC_URL", f"http://{host}:{ctx.settings.http_port}")
    print(f"notifications go to a loopback test receiver on {rec.url} (Slack-compatible "
          "Web API and a signed webhook; --no-receiver or FORECAST_SLACK_*/FORECAST_WEBHOOK_* "
          "settings to change)", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: SQLite, catalogue, simulated history ingested through the replay
    path, models trained (or loaded), one forecast cycle, then serve."""
    from forecast.pipeline.demo import prepare

    ctx = _ctx()
    end = args.end or _this_hour(ctx)
    bars: list[Any] = []

    def progress(_river: str) -> None:
        if not bars:   # shown only when some river has to be trained
            bars.append(tqdm(total=len(ctx.catalogue.rivers), desc="training models",
                             unit="river"))
        bars[0].update()

    report = prepare(ctx, end=end, years=args.years, progress=progress)
    for bar in bars:
        bar.close()
    counts = pd.Series([o.status for o in report.cycle.outcomes]).value_counts().to_dict()
    print(f"forecast cycle {report.cycle.cycle_id} at {report.end:%Y-%m-%d %H:%M}Z: {counts}")
    for rid, reasons in report.cycle.low_confidence.items():
        print(f"  {rid}: low confidence: {'; '.join(reasons)}")
    if args.no_serve:
        print("demo ready (--no-serve given)")
        return 0
    import os

    from forecast.pipeline.status import newest_tick_time

    # The serving process replays the simulated future live, on a clock that starts where
    # the history ends (or where an earlier sped-up run left off, ahead of the wall clock)
    # and runs --speed times faster than the wall clock.
    resume = max(report.end, newest_tick_time(ctx) or report.end)
    origin = resume + timedelta(minutes=ctx.settings.tick_delay_min)
    os.environ["FORECAST_REPLAY"] = str(report.replay)
    if args.speed != 1:   # at speed 1 the simulated time is the wall clock
        os.environ["FORECAST_CLOCK_SPEED"] = repr(args.speed)
        os.environ["FORECAST_CLOCK_ORIGIN"] = origin.isoformat()
    if not args.no_receiver and not _channels_configured(ctx):
        _demo_receiver(ctx)
    if not ctx.settings.auth_issuer:   # sign in locally, without a cloud tenant
        os.environ["FORECAST_AUTH_DEV"] = "true"
        host = ctx.settings.http_host
        host = "localhost" if host in ("0.0.0.0", "::") else host   # a browser's address
        os.environ.setdefault("FORECAST_PUBLIC_URL", f"http://{host}:{ctx.settings.http_port}")
        print("sign-in: the development issuer (demo users; `forecast dev-token` prints a "
              "token for the API)", flush=True)
    print(f"live demo: replaying SIMULATED data ({report.replay}, until "
          f"{report.replay_until:%Y-%m-%d %H:%M}Z) from {resume:%Y-%m-%d %H:%M}Z at speed "
          f"{args.speed:g} (a tick every {30 / args.speed:g} wall minutes); typhoon from "
          f"{report.typhoon_at:%Y-%m-%d %H:%M}Z", flush=True)
    return cmd_serve(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    s.add_argument("--start", type=utc_time, help="start (default: --years before --end)")
    s.add_argument("--end", type=utc_time, help="end (default: now, floored to the hour)")
    s.add_argument("--years", type=positive, default=1.0)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--out", help="write canonical CSV (with source column 'simulated') here "
                   "instead of the database")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("import", help="import files (raw bytes archived before parsing)")
    s.add_argument("--source", required=True, choices=IMPORT_SOURCES,
                   help="parser name, e.g. canonical_csv")
    s.add_argument("--accept-unknown-stations", action="store_true",
                   help="canonical_csv: store stations the catalogue does not know "
                   "(default: refuse the file, naming row and station)")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("qc", help="re-run quality control over stored observations")
    s.add_argument("--recheck", action="store_true", required=True,
                   help="re-check stored values against today's catalogue limits")
    s.add_argument("--station", action="append", help="station code (repeatable; default all)")
    s.add_argument("--start", type=utc_time, help="from this time (default: all history)")
    s.add_argument("--end", type=utc_time, help="until this time (default: now)")
    s.set_defaults(func=cmd_qc)

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
    s.add_argument("--end", type=utc_time,
                   help="end of the training window (default: this hour)")
    s.add_argument("--days", type=positive, default=365.0,
                   help="length of the training window")
    s.add_argument("--no-backtest", action="store_true",
                   help="skip the judging backtest (promotion then needs --force)")
    s.add_argument("--pooled", action="store_true",
                   help="also train one pooled model on all rivers; rivers with under a year "
                   "of level data (or no model of their own) get it where it backtests better")
    s.add_argument("--report-dir", help="write each river's backtest HTML report here "
                   "(<dir>/<river>/<version>/index.html)")
    s.add_argument("--workers", type=workers_arg, default=1,
                   help="train rivers in this many processes, e.g. the number of cores "
                   "(--pooled runs in one)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("models", help="list registered model versions")
    s.add_argument("--river")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("promote", help="make a version champion (champion–challenger check)")
    s.add_argument("river")
    s.add_argument("version")
    s.add_argument("--force", action="store_true", help="skip the comparison (audited)")
    s.add_argument("--end", type=utc_time, help="end of the re-scoring hold-out window "
                   "(default: end of the challenger's training window)")
    s.add_argument("--days", type=positive, default=None,
                   help="length of that window (default: the challenger's)")
    s.add_argument("--actor", default="cli", help="who promotes (audit log)")
    s.set_defaults(func=cmd_promote)

    s = sub.add_parser("rollback", help="restore the previous champion")
    s.add_argument("river")
    s.add_argument("--actor", default="cli", help="who rolls back (audit log)")
    s.set_defaults(func=cmd_rollback)

    s = sub.add_parser("cycle", help="run one forecast cycle with the champion models "
                       "(re-running an issue time adds a revision)")
    s.add_argument("--at", type=issue_time_arg,
                   help="issue time on a whole or half hour (default: this hour)")
    s.add_argument("--rain-product", default=None, help="rain-vintage product to use")
    s.set_defaults(func=cmd_cycle)

    s = sub.add_parser("run-once", help="one operational tick: collect every source, "
                       "forecast every river, notify, record (what the scheduler runs)")
    s.add_argument("--at", type=issue_time_arg, help="issue time (whole or half UTC hour; "
                   "default: every due one, like the scheduler, missed ones first)")
    s.add_argument("--force", action="store_true",
                   help="run --at again although it has a finished tick (a new revision)")
    s.set_defaults(func=cmd_run_once)

    s = sub.add_parser("scheduler", help="run the scheduler alone (ticks at FORECAST_TICK_"
                       "MINUTES past the hour, catch-up, issue-time lock) until SIGTERM")
    s.set_defaults(func=cmd_scheduler)

    s = sub.add_parser("ready", help="readiness: exit 0 when the newest tick ran on time; "
                       "lists stale inputs")
    s.set_defaults(func=cmd_ready)

    s = sub.add_parser("serve", help="run the HTTP API and web page, and the scheduler")
    s.add_argument("--no-scheduler", action="store_true",
                   help="API and page only (run `forecast scheduler` elsewhere)")
    s.set_defaults(func=cmd_serve)

    from forecast.cli.access import add_parsers as add_access
    from forecast.cli.notifications import add_parser as add_notifications

    add_notifications(sub, _Parser)
    add_access(sub, _Parser)
    from forecast.cli.reads import add_parsers as add_reads

    add_reads(sub, utc_time)
    from forecast.cli.export import add_parser as add_export

    add_export(sub, _Parser, utc_time)

    s = sub.add_parser("demo", help="embedded default: SQLite + simulated data, then serve")
    s.add_argument("--years", type=positive, default=1.0,
                   help="years of simulated history")
    s.add_argument("--end", type=issue_time_arg, help="issue time of the demo cycle "
                   "(default: this hour); with the seed it makes the demo reproducible")
    s.add_argument("--no-serve", action="store_true", help="prepare data, do not serve")
    s.add_argument("--no-receiver", action="store_true", help="no loopback test receiver for "
                   "the notifications (they are still stored, listed and in the CAP feed)")
    s.add_argument("--speed", type=positive, default=1.0,
                   help="replay speed: 60 = one simulated hour per wall minute (default 1)")
    s.add_argument("--no-scheduler", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, json_lines=args.log_json or settings.log_json)
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except ForecastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:   # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except OSError as exc:   # a file the user named cannot be read or written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
