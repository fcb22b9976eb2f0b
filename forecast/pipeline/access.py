"""Access control's stored side: API keys, the audit of refusals, and the development issuer.

* **API keys** (``create_key``, ``revoke_key``, ``list_keys``, ``lookup_key``): a key is
  ``fk_<key_id>_<secret>``, shown once at creation; the database keeps its SHA-256. Each
  creation and revocation commits with its audit row.
* **Audit of refusals** (``audit_refusal``): every 401/403 (reason, path, who if known).
* **Development issuer** (``DevIssuer``): a local OIDC-style token issuer for the demo and the
  tests, so the service can be signed into without a cloud tenant. Its RSA key is generated
  on first use and kept in ``<data dir>/dev-oidc/key.pem``; tokens it mints carry
  ``iss = <FORECAST_PUBLIC_URL or http://host:port>/dev-oidc`` and ``aud = DEV_AUDIENCE``. Never
  enable it (``FORECAST_AUTH_DEV``) where real users sign in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from forecast.errors import (
    ConfigError,
    ConflictError,
    ForecastError,
    InvalidRequestError,
    NotFoundError,
)
from forecast.pipeline.context import Context
from forecast.storage import api_keys, audit
from forecast.storage.engine import transaction

KEY_PREFIX = "fk_"
ROLE_NAMES = ("viewer", "operator", "hydrologist", "admin")
DEV_AUDIENCE = "mie-forecast-dev"
DEV_CLIENT_ID = "mie-forecast-page"
DEV_USERS: dict[str, tuple[str, list[str]]] = {
    "suzuki": ("鈴木 (水防担当)", ["operator"]),
    "tanaka": ("田中 (閲覧)", ["viewer"]),
    "yamada": ("山田 (水文)", ["hydrologist"]),
    "admin": ("管理者", ["admin"]),
}
"""The development issuer's users (demo only): login name → (display name, roles)."""
CODE_TTL_S = 300


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """A valid API key's identity: id, name and roles."""

    key_id: str
    name: str
    roles: tuple[str, ...]


def create_key(ctx: Context, *, name: str, roles: list[str], actor: str,
               days: int | None = 365) -> tuple[str, KeyRecord]:
    """A new key (returned whole, once) with its record; audited. ``days`` None: no expiry.
    ``ForecastError`` for an unknown role or an empty name."""
    name = name.strip()
    if not name:
        raise InvalidRequestError("give the key a name (who or what uses it)")
    bad = [r for r in roles if r not in ROLE_NAMES]
    if bad or not roles:
        raise InvalidRequestError(f"roles must be some of {', '.join(ROLE_NAMES)} (got "
                            f"{', '.join(bad) or 'none'})")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = ctx.clock.now()
    expires = None if days is None else now + timedelta(days=days)
    with transaction(ctx.engine, "creating an API key") as conn:
        api_keys.add_key(conn, key_id=key_id, name=name, roles=sorted(set(roles)),
                         secret_sha256=_sha256(secret), created_at=now, created_by=actor,
                         expires_at=expires)
        audit.audit(conn, at=now, actor=actor, action="key.create", target=key_id,
                    details={"name": name, "roles": sorted(set(roles)),
                             "expires_at": None if expires is None else expires.isoformat()})
    return f"{KEY_PREFIX}{key_id}_{secret}", KeyRecord(key_id, name, tuple(sorted(set(roles))))


def revoke_key(ctx: Context, key_id: str, *, actor: str) -> None:
    """Revoke a key now (audited); ``ForecastError`` when it is unknown or already revoked."""
    now = ctx.clock.now()
    with transaction(ctx.engine, "revoking an API key") as conn:
        if api_keys.get_key(conn, key_id) is None:
            raise NotFoundError(f"no API key {key_id!r} (forecast keys list shows them)")
        if not api_keys.revoke_key(conn, key_id, at=now, by=actor):
            raise ConflictError(f"API key {key_id!r} is already revoked")
        audit.audit(conn, at=now, actor=actor, action="key.revoke", target=key_id)
    _forget_key(key_id)


def list_keys(ctx: Context) -> list[dict[str, Any]]:
    """Every key without its hash, newest first, with its state (active/expired/revoked)."""
    now = ctx.clock.now()
    with transaction(ctx.engine, "listing API keys") as conn:
        rows = api_keys.list_keys(conn)
    out = []
    for r in rows:
        r.pop("secret_sha256", None)
        r["state"] = ("revoked" if r["revoked_at"] is not None else
                      "expired" if r["expires_at"] is not None and r["expires_at"] <= now
                      else "active")
        out.append(r)
    return out


KEY_CACHE_S = 5.0
"""A key checked against the database is trusted this long in this process (a revocation
made in this process takes effect at once; one made by another process within 5 s)."""
_KEY_CACHE: dict[str, tuple[float, str, KeyRecord, datetime | None]] = {}
_KEY_CACHE_LOCK = threading.Lock()


def _forget_key(key_id: str) -> None:
    with _KEY_CACHE_LOCK:
        for k in [k for k, v in _KEY_CACHE.items() if v[2].key_id == key_id]:
            del _KEY_CACHE[k]


def lookup_key(ctx: Context, presented: str) -> KeyRecord | None:
    """The record of a presented key when it is known, unexpired and not revoked (checked
    against the database at most every ``KEY_CACHE_S`` per key and process)."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, _, secret = presented[len(KEY_PREFIX):].partition("_")
    if not key_id or not secret:
        return None
    t = time.monotonic()
    with _KEY_CACHE_LOCK:
        hit = _KEY_CACHE.get(presented)
    if hit is not None and t - hit[0] < KEY_CACHE_S and (
            hit[3] is None or hit[3] > ctx.clock.now()):
        return hit[2]
    got = _lookup_key(ctx, key_id, secret)
    with _KEY_CACHE_LOCK:
        if got is None:
            _KEY_CACHE.pop(presented, None)
        else:
            if len(_KEY_CACHE) > 10_000:
                _KEY_CACHE.clear()
            _KEY_CACHE[presented] = (t, key_id, got[0], got[1])
    return None if got is None else got[0]


def _lookup_key(ctx: Context, key_id: str, secret: str
                ) -> tuple[KeyRecord, datetime | None] | None:
    now = ctx.clock.now()
    with transaction(ctx.engine, "checking an API key") as conn:
        row = api_keys.get_key(conn, key_id)
        if row is None or not hmac.compare_digest(row["secret_sha256"], _sha256(secret)):
            return None
        if row["revoked_at"] is not None or (row["expires_at"] is not None
                                             and row["expires_at"] <= now):
            return None
        last = row["last_used_at"]
        if last is None or now - last > timedelta(minutes=1):
            api_keys.touch_key(conn, key_id, now)
    return KeyRecord(key_id, str(row["name"]), tuple(row["roles"])), row["expires_at"]


def audit_refusal(ctx: Context, *, reason: str, path: str, subject: str | None) -> None:
    """One audit row for a refused request (401/403)."""
    with transaction(ctx.engine, "auditing a refused request") as conn:
        audit.audit(conn, at=ctx.clock.now(), actor=subject or "anonymous",
                    action="access.refused", target=path, details={"reason": reason})


def audit_action(ctx: Context, *, actor: str, action: str, target: str,
                 details: dict[str, Any] | None = None) -> None:
    """One audit row for an action that has no transaction of its own to join."""
    with transaction(ctx.engine, f"auditing {action}") as conn:
        audit.audit(conn, at=ctx.clock.now(), actor=actor, action=action, target=target,
                    details=details)


def read_audit(ctx: Context, *, limit: int = 100, action: str | None = None
               ) -> list[dict[str, Any]]:
    """Newest audit entries first."""
    with transaction(ctx.engine, "reading the audit log") as conn:
        return audit.read_audit(conn, limit=limit, action=action)


class DevIssuer:
    """The development issuer (see the module docstring)."""

    def __init__(self, data_dir: Path, issuer: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.issuer = issuer.rstrip("/")
        path = Path(data_dir) / "dev-oidc" / "key.pem"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ConfigError(f"{path} is not an RSA key: delete it to make a new one")
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            path.chmod(0o600)
        self._key = key
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(public).hexdigest()[:16]
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def issue_code(self, *, user: str, client_id: str, redirect_uri: str, challenge: str,
                   method: str, nonce: str | None) -> str:
        """An authorization code for a development user (single use, 5 minutes)."""
        if user not in DEV_USERS:
            raise ForecastError(f"unknown development user {user!r}")
        if client_id != DEV_CLIENT_ID:
            raise ForecastError("unknown client_id")
        if method != "S256" or len(challenge) < 43:
            raise ForecastError("PKCE with code_challenge_method=S256 is required")
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = time.time()
            self._codes = {c: v for c, v in self._codes.items() if v["exp"] > now}
            self._codes[code] = {"user": user, "client_id": client_id,
                                 "redirect_uri": redirect_uri, "challenge": challenge,
                                 "nonce": nonce, "exp": now + CODE_TTL_S}
        return code

    def redeem(self, *, code: str, verifier: str, redirect_uri: str, client_id: str) -> str:
        """The access token for a code (RFC 7636: S256(verifier) must equal the challenge);
        ``ForecastError`` ("invalid_grant") otherwise. A code is used once."""
        import base64

        with self._lock:
            got = self._codes.pop(code, None)
        if got is None or got["exp"] < time.time():
            raise ForecastError("invalid_grant: unknown, used or expired code")
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if not hmac.compare_digest(challenge, got["challenge"]):
            raise ForecastError("invalid_grant: code_verifier does not match the challenge")
        if redirect_uri != got["redirect_uri"] or client_id != got["client_id"]:
            raise ForecastError("invalid_grant: redirect_uri or client_id differ")
        name, roles = DEV_USERS[got["user"]]
        return self.mint(subject=f"dev:{got['user']}", name=name, roles=roles, minutes=480)

    def jwks(self) -> dict[str, Any]:
        """The public key set (JWKS)."""
        from jwt.algorithms import RSAAlgorithm

        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def mint(self, *, subject: str, name: str, roles: list[str], minutes: float = 60.0,
             audience: str = DEV_AUDIENCE, now: float | None = None) -> str:
        """A signed access token for a development user."""
        import jwt

        t = int(time.time() if now is None else now)
        claims = {"iss": self.issuer, "aud": audience, "sub": subject, "name": name,
                  "preferred_username": name, "roles": roles, "iat": t, "nbf": t,
                  "exp": t + int(minutes * 60)}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


_ISSUERS: dict[tuple[str, str], DevIssuer] = {}
_ISSUERS_LOCK = threading.Lock()


def dev_issuer(ctx: Context) -> DevIssuer:
    """The development issuer of this service's settings (one per process: it holds the
    pending authorization codes)."""
    s = ctx.settings
    base = s.public_url or f"http://{s.http_host}:{s.http_port}"
    key = (str(Path(s.data_dir).resolve()), f"{base.rstrip('/')}/dev-oidc")
    with _ISSUERS_LOCK:
        if key not in _ISSUERS:
            _ISSUERS[key] = DevIssuer(s.data_dir, key[1])
        return _ISSUERS[key]


def session_key(ctx: Context) -> bytes:
    """The key that signs the sign-in flow's cookie: ``FORECAST_SESSION_SECRET``, else a
    random key kept in ``<data dir>/session.key`` (made on first use)."""
    s = ctx.settings
    if s.session_secret is not None:
        return s.session_secret.get_secret_value().encode("utf-8")
    path = Path(s.data_dir) / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()
