"""``forecast notifications …``: the operators' commands for forecast notifications
(水位予測通知): list, acknowledge, deliver, dead letters, test messages, CAP files, and a
loopback test receiver."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from forecast.errors import ConfigError

JST = "Asia/Tokyo"


def _ctx() -> Any:
    from forecast.pipeline.context import Context

    return Context.from_settings()


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _jst(v: datetime | None) -> str:
    import pandas as pd

    return "—" if v is None else f"{pd.Timestamp(v).tz_convert(JST):%m/%d %H:%M} JST"


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (CJK characters take two)."""
    import unicodedata

    cols = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(width - cols, 0)


def cmd_list(args: argparse.Namespace) -> int:
    from forecast.pipeline import views

    ctx = _ctx()
    if args.river is not None and args.river not in ctx.catalogue.ids:
        raise ConfigError(f"unknown river {args.river!r}; known: {', '.join(ctx.catalogue.ids)}")
    rows = views.notifications(ctx, active=True if args.active else None, river_id=args.river,
                               limit=args.limit)
    if args.json:
        keys = ("id", "river_id", "gauge", "topic", "level", "level_key", "level_name_ja",
                "state", "basis", "raised_at", "updated_at", "acknowledged_by",
                "acknowledged_at", "cleared_at", "event_key", "cycle_id", "forecast_run_id",
                "details", "messages")
        print(json.dumps([{k: _iso(r[k]) for k in keys} for r in rows], ensure_ascii=False,
                         indent=1))
        return 0
    if not rows:
        print("no active notifications" if args.active else "no notifications")
        return 0
    print(f"{'id':>5}  {'raised':<15} {'river':<14} {_pad('level', 16)} {'state':<12} "
          f"{'basis':<11} acknowledged")
    for r in rows:
        ack = f"{r['acknowledged_by']} {_jst(r['acknowledged_at'])}" if r["acknowledged_by"] \
            else ""
        print(f"{r['id']:>5}  {_jst(r['raised_at']):<15} {r['river_id']:<14} "
              f"{_pad(r['level_name_ja'], 16)} {r['state']:<12} {r['basis'] or '':<11} {ack}")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from forecast.pipeline.notify import acknowledge_notification

    got = acknowledge_notification(_ctx(), args.id, user=args.user, note=args.note)
    print(f"notification {got['id']} ({got['river_id']}, level {got['level']}) acknowledged "
          f"by {got['acknowledged_by']} at {_jst(got['acknowledged_at'])}")
    return 0


def _senders(ctx: Any) -> Any:
    from forecast.pipeline.deliver import senders_from_settings

    senders = senders_from_settings(ctx.settings)
    if not senders:
        raise ConfigError("no delivery channel is configured (FORECAST_SLACK_WEBHOOK_URL or "
                          "FORECAST_SLACK_TOKEN, FORECAST_WEBHOOK_URL, FORECAST_CAP_URL)")
    return senders


def cmd_deliver(args: argparse.Namespace) -> int:
    from forecast.pipeline.deliver import deliver_due

    ctx = _ctx()
    rep = deliver_due(ctx, _senders(ctx))
    print(f"delivered {rep.sent}, to retry {rep.retried}, dead letters {rep.dead}")
    for e in rep.errors:
        print(f"  {e}")
    return 0 if not rep.errors else 1


def cmd_dead(args: argparse.Namespace) -> int:
    from forecast.pipeline import views
    from forecast.pipeline.deliver import replay_dead_letters

    ctx = _ctx()
    if args.replay or args.id:
        done = replay_dead_letters(ctx, args.id or None)
        missing = sorted(set(args.id or []) - set(done))
        print(f"requeued {len(done)} dead letter(s)" + (f": {done}" if done else ""))
        if missing:
            print(f"not dead letters (left alone): {missing}")
        return 0 if not missing else 1
    rows = views.outbox_messages(ctx, status="dead")
    if not rows:
        print("no dead letters")
    for r in rows:
        print(f"{r['id']:>5}  {r['channel']:<8} attempts {r['attempts']:<3} "
              f"{_jst(r['failed_at'])}  {r['last_error']}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from forecast.pipeline.deliver import deliver_due
    from forecast.pipeline.notify import send_test

    ctx = _ctx()
    senders = _senders(ctx)
    msg_id = send_test(ctx, args.channel)
    rep = deliver_due(ctx, {args.channel: senders[args.channel]})
    if rep.sent:
        print(f"test message {msg_id} delivered to {args.channel}")
        return 0
    print(f"test message {msg_id} to {args.channel} not delivered: "
          + "; ".join(rep.errors or ["not due yet"]))
    return 1


def cmd_cap(args: argparse.Namespace) -> int:
    from forecast.pipeline import views

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    msgs = views.all_cap(_ctx())
    for identifier, xml in msgs:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identifier)
        (out / f"{safe}.xml").write_text(xml, encoding="utf-8")
    print(f"wrote {len(msgs)} CAP message(s) to {out}")
    return 0


def cmd_receiver(args: argparse.Namespace) -> int:
    from forecast.pipeline.notify import run_test_receiver

    ctx_settings = _ctx().settings
    secret = ctx_settings.webhook_secret
    token = ctx_settings.slack_token
    print(f"test receiver on http://{args.host}:{args.port}/ (Slack Web API /api/, incoming "
          "webhooks /slack/incoming/…, signed webhooks /webhook, CAP /cap); Ctrl-C stops",
          flush=True)
    run_test_receiver(args.host, args.port,
                      secret=None if secret is None else secret.get_secret_value(),
                      token=None if token is None else token.get_secret_value(),
                      jsonl=args.jsonl)
    return 0


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """``forecast notifications …`` under the main parser's subcommands."""
    s = sub.add_parser("notifications", help="forecast notifications (水位予測通知): list, "
                       "acknowledge, deliver, dead letters, test, CAP")
    nsub = s.add_subparsers(dest="what", required=True, parser_class=parser_class)
    c = nsub.add_parser("list", help="notifications, newest first")
    c.add_argument("--active", action="store_true", help="only active or acknowledged ones")
    c.add_argument("--river", default=None, help="one river id")
    c.add_argument("--limit", type=int, default=200)
    c.add_argument("--json", action="store_true", help="a JSON array")
    c.set_defaults(func=cmd_list)
    c = nsub.add_parser("ack", help="acknowledge an active notification (audited)")
    c.add_argument("id", type=int, help="notification id (from `list`)")
    c.add_argument("--user", required=True, help="who acknowledges (name or sign-in id)")
    c.add_argument("--note", default=None)
    c.set_defaults(func=cmd_ack)
    c = nsub.add_parser("deliver", help="deliver due messages now (the scheduler does this "
                        "every FORECAST_DELIVERY_INTERVAL_S)")
    c.set_defaults(func=cmd_deliver)
    c = nsub.add_parser("dead-letters", help="list dead letters; --replay requeues them")
    c.add_argument("--replay", action="store_true", help="requeue every dead letter")
    c.add_argument("--id", type=int, action="append", help="requeue this one (repeatable)")
    c.set_defaults(func=cmd_dead)
    c = nsub.add_parser("test", help="send a test message to a configured channel")
    c.add_argument("channel", choices=["slack", "webhook", "cap"])
    c.set_defaults(func=cmd_test)
    c = nsub.add_parser("cap", help="write every CAP 1.2 message as its own .xml file")
    c.add_argument("--out", type=Path, required=True, help="directory")
    c.set_defaults(func=cmd_cap)
    c = nsub.add_parser("receiver", help="a loopback test receiver (Slack-compatible, signed "
                        "webhook, CAP) that prints what arrives")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8765)
    c.add_argument("--jsonl", type=Path, default=None, help="append each request here")
    c.set_defaults(func=cmd_receiver)
