"""``forecast keys …`` (API keys for machine clients: create, list, revoke; admins) and
``forecast dev-token`` (a development issuer's token for trying the API in the demo)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

ROLES = ("viewer", "operator", "hydrologist", "admin")


def _ctx() -> Any:
    from forecast.pipeline.context import Context

    return Context.from_settings()


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def cmd_create(args: argparse.Namespace) -> int:
    from forecast.pipeline.access import create_key

    key, rec = create_key(_ctx(), name=args.name, roles=args.role, actor=args.actor,
                          days=None if args.days == 0 else args.days)
    print(f"API key {rec.key_id} ({rec.name}; roles {', '.join(rec.roles)}):\n{key}\n"
          "Store it now: it is not shown again (the database keeps only its hash).")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from forecast.pipeline.access import list_keys

    rows = list_keys(_ctx())
    if args.json:
        print(json.dumps([{k: _iso(v) for k, v in r.items()} for r in rows],
                         ensure_ascii=False, indent=1))
        return 0
    if not rows:
        print("no API keys")
    for r in rows:
        exp = r["expires_at"].date().isoformat() if r["expires_at"] else "never"
        print(f"{r['key_id']}  {r['state']:<8} {','.join(r['roles']):<20} expires {exp:<10} "
              f"{r['name']} (by {r['created_by']})")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from forecast.pipeline.access import revoke_key

    revoke_key(_ctx(), args.key_id, actor=args.actor)
    print(f"API key {args.key_id} revoked")
    return 0


def cmd_dev_token(args: argparse.Namespace) -> int:
    from forecast.errors import ConfigError
    from forecast.pipeline.access import DEV_USERS, dev_issuer

    ctx = _ctx()
    if not ctx.settings.auth_dev:
        raise ConfigError("the development issuer is off: FORECAST_AUTH_DEV=true (the demo "
                          "sets it) — never where real users sign in")
    name, roles = DEV_USERS[args.user]
    print(dev_issuer(ctx).mint(subject=f"dev:{args.user}", name=name, roles=roles,
                               minutes=args.minutes))
    return 0


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """``forecast keys …`` and ``forecast dev-token`` under the main parser."""
    s = sub.add_parser("keys", help="API keys for machine clients (hashed, scoped to roles, "
                       "expiring, revocable; every change audited)")
    ksub = s.add_subparsers(dest="what", required=True, parser_class=parser_class)
    c = ksub.add_parser("create", help="a new key (shown once)")
    c.add_argument("--name", required=True, help="who or what uses it, e.g. 'BI export'")
    c.add_argument("--role", action="append", required=True, choices=ROLES,
                   help="a role the key has (repeatable)")
    c.add_argument("--days", type=int, default=365, help="valid this many days (0: no expiry)")
    c.add_argument("--actor", required=True, help="who creates it (for the audit log)")
    c.set_defaults(func=cmd_create)
    c = ksub.add_parser("list", help="every key with its state (never the secret)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_list)
    c = ksub.add_parser("revoke", help="revoke a key now")
    c.add_argument("key_id")
    c.add_argument("--actor", required=True, help="who revokes it (for the audit log)")
    c.set_defaults(func=cmd_revoke)
    from forecast.pipeline.access import DEV_USERS

    s = sub.add_parser("dev-token", help="a development issuer's access token (demo only: "
                       "FORECAST_AUTH_DEV=true)")
    s.add_argument("--user", choices=sorted(DEV_USERS), default="suzuki")
    s.add_argument("--minutes", type=float, default=60.0)
    s.set_defaults(func=cmd_dev_token)
