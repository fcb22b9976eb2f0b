"""Read commands with the API's data (CLI parity): ``forecast runs`` (cycle runs with their
river and source outcomes), ``forecast forecasts`` (the latest forecast of a river, or every
revision of one issue time) and ``forecast audit`` (the audit log)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any


def _ctx() -> Any:
    from forecast.pipeline.context import Context

    return Context.from_settings()


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return v


def cmd_runs(args: argparse.Namespace) -> int:
    from forecast.pipeline import views

    rows = views.runs(_ctx(), limit=args.limit, kind=args.kind)
    if args.json:
        print(json.dumps(_plain(rows), ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        bad = [o["river_id"] for o in r["rivers"] if o["status"] in ("failed", "skipped")]
        src = [s["source"] for s in r["sources"] if s["status"] != "ok"]
        print(f"{r['id']:>6}  {r['kind']:<5} {r['issued_at']:%Y-%m-%d %H:%M}Z rev {r['revision']} "
              f"{r['status']:<8} {r['trigger']:<9} rivers {len(r['rivers'])}"
              + (f", failed: {', '.join(bad)}" if bad else "")
              + (f"; sources not ok: {', '.join(src)}" if src else ""))
    if not rows:
        print("no runs yet")
    return 0


def cmd_forecasts(args: argparse.Namespace) -> int:
    from forecast.errors import ConfigError
    from forecast.pipeline import views

    ctx = _ctx()
    if args.river not in ctx.catalogue.ids:
        raise ConfigError(f"unknown river {args.river!r}; known: {', '.join(ctx.catalogue.ids)}")
    frame = (views.forecast_archive(ctx, args.river, args.issued_at) if args.issued_at
             else views.latest_forecasts(ctx, args.river))
    if frame.empty:
        print("no forecast" + (f" issued at {args.issued_at:%Y-%m-%d %H:%M}Z"
                               if args.issued_at else ""))
        return 1
    cols = ["issued_at", "revision", "horizon_h", "valid_at", "q10", "q50", "q90",
            "model_version", "model_variant", "low_confidence"]
    out = frame[cols]
    if args.json:
        print(json.dumps(_plain(out.to_dict("records")), ensure_ascii=False, indent=1))
        return 0
    print(out.to_string(index=False))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from forecast.pipeline.access import read_audit

    rows = read_audit(_ctx(), limit=args.limit, action=args.action)
    if args.json:
        print(json.dumps(_plain(rows), ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        print(f"{r['at']:%Y-%m-%d %H:%M:%S}Z  {r['actor']:<32} {r['action']:<24} {r['target']}"
              + (f"  {json.dumps(_plain(r['details']), ensure_ascii=False)}"
                 if r["details"] else ""))
    if not rows:
        print("no audit entries")
    return 0


def add_parsers(sub: Any, time_arg: Callable[[str], datetime]) -> None:
    s = sub.add_parser("runs", help="cycle runs and ticks, newest first, with their outcomes")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--kind", choices=["tick", "cycle"], default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_runs)
    s = sub.add_parser("forecasts", help="a river's latest forecast, or every revision of one "
                       "issue time (--issued-at)")
    s.add_argument("--river", required=True)
    s.add_argument("--issued-at", type=time_arg, default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_forecasts)
    s = sub.add_parser("audit", help="the audit log, newest first (who did what, refusals)")
    s.add_argument("--action", default=None, help="e.g. notification.acknowledge, "
                   "access.refused, key.create, model.promote")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit)
