"""Access control for the API: every request is authenticated and authorised (zero trust).

Two kinds of credentials, both as ``Authorization: Bearer …`` (an API key may also come as
``X-API-Key``):

* **OIDC access tokens** (JWT) from the organisation's issuer, e.g. Microsoft Entra ID v2:
  the signature is checked with the issuer's JWKS (fetched over HTTPS, cached, fetched again
  when a token names a key id it does not know: key rotation), then issuer, audience, expiry
  and not-before (with ``leeway_s``). Roles come from the ``roles`` claim (Entra ID app
  roles; the values ``viewer``, ``operator``, ``hydrologist``, ``admin``, optionally with a
  prefix such as ``Forecast.``). The user is ``oid`` (Entra) or ``sub``.
* **API keys** for machine clients, ``fk_<id>_<secret>``: stored hashed, scoped to roles,
  expiring and revocable (``forecast keys …``), checked through the pipeline.

Roles: ``viewer`` reads; ``operator`` also acknowledges; ``hydrologist`` also trains and
promotes; ``admin`` may do everything, including keys and the audit log. A refusal raises
``AuthenticationError`` (401) or ``PermissionDeniedError`` (403) with a short message that
names no secret, and is audited (``Authenticator.on_failure``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NoReturn

from forecast.errors import AuthenticationError, PermissionDeniedError


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    HYDROLOGIST = "hydrologist"
    ADMIN = "admin"


GRANTS: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.OPERATOR: frozenset({Role.OPERATOR, Role.VIEWER}),
    Role.HYDROLOGIST: frozenset({Role.HYDROLOGIST, Role.VIEWER}),
    Role.ADMIN: frozenset(Role),
}
"""What each role may do (its own and the roles it includes)."""


def parse_roles(values: Sequence[object], prefix: str = "") -> frozenset[Role]:
    """Known role names among ``values`` (claim values such as ``Forecast.Operator`` with
    ``prefix="Forecast."``, case-insensitive); unknown values are ignored."""
    out: set[Role] = set()
    for v in values:
        name = str(v)
        if prefix and name.lower().startswith(prefix.lower()):
            name = name[len(prefix):]
        try:
            out.add(Role(name.lower()))
        except ValueError:
            continue
    return frozenset(out)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a signed-in user or an API key."""

    subject: str
    name: str
    roles: frozenset[Role]
    kind: Literal["user", "api_key"]
    key_id: str | None = None

    def can(self, role: Role) -> bool:
        return any(role in GRANTS[r] for r in self.roles)

    @property
    def label(self) -> str:
        """For audit rows and messages: ``name (subject)`` or ``key <id> (name)``."""
        if self.kind == "api_key":
            return f"key {self.key_id} ({self.name})"
        return self.name if self.name == self.subject else f"{self.name} ({self.subject})"


class TokenVerifier:
    """Verifies OIDC access tokens (JWT) against an issuer's JWKS (see the module docstring).

    ``jwks_url``: the issuer's key set (Entra ID:
    ``https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys``); keys are cached for
    ``jwks_cache_s`` and fetched again for an unknown key id (rotation), at most once per
    ``jwks_refresh_cooldown_s``."""

    def __init__(self, *, issuer: str, audience: str | Sequence[str],
                 jwks_url: str | None = None, jwks: dict[str, Any] | None = None,
                 leeway_s: float = 60.0, jwks_cache_s: int = 300,
                 jwks_refresh_cooldown_s: float = 30.0,
                 algorithms: Sequence[str] = ("RS256", "ES256"), role_prefix: str = "",
                 timeout_s: float = 5.0) -> None:
        import inspect

        import jwt

        self.issuer = issuer
        self.audience = [audience] if isinstance(audience, str) else list(audience)
        self.leeway_s = leeway_s
        self.algorithms = list(algorithms)
        self.role_prefix = role_prefix
        if (jwks_url is None) == (jwks is None):
            raise ValueError("give the issuer's jwks_url or its key set (jwks), not both")
        opts: dict[str, Any] = {}
        if "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters:
            # an unknown key id refetches the set at most once per cooldown (no JWKS storm)
            opts["cooldown_duration"] = jwks_refresh_cooldown_s
        self._jwks = (jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=jwks_cache_s,
                                      timeout=int(max(timeout_s, 1)), **opts)
                      if jwks_url is not None else None)
        self._static = jwt.PyJWKSet.from_dict(jwks) if jwks is not None else None

    def _key(self, token: str) -> Any:
        import jwt

        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        assert self._static is not None
        kid = jwt.get_unverified_header(token).get("kid")
        for k in self._static.keys:
            if k.key_id == kid:
                return k.key
        raise jwt.PyJWKClientError(f"no signing key {kid!r}")

    def verify(self, token: str) -> Principal:
        """The token's principal; ``AuthenticationError`` saying briefly what is wrong."""
        import jwt

        try:
            key = self._key(token)
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=self.algorithms, audience=self.audience,
                issuer=self.issuer, leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("token expired: sign in again") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationError("token not yet valid (nbf/iat)") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationError("token not issued for this service (audience)") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationError("token from an issuer this service does not trust") \
                from exc
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthenticationError("the issuer's signing keys cannot be fetched now") \
                from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise AuthenticationError("invalid token (signature or format)") from exc
        subject = str(claims.get("oid") or claims.get("sub") or "")
        if not subject:
            raise AuthenticationError("token names no user (sub/oid)")
        name = str(claims.get("preferred_username") or claims.get("name")
                   or claims.get("upn") or subject)
        return Principal(subject=subject, name=name,
                         roles=parse_roles(list(claims.get("roles") or []), self.role_prefix),
                         kind="user")


KeyLookup = Callable[[str], Principal | None]
"""Presented API key → its principal, or None (unknown, expired, revoked: said in the
failure reason by ``AuthenticationError``)."""
FailureHook = Callable[[str, str, str | None], None]
"""(reason, path, subject or None) for each refused request: the audit."""

API_KEY_PREFIX = "fk_"
SESSION_COOKIE = "forecast_session"
"""The page's sign-in keeps the user's access token in this HttpOnly, SameSite=Strict cookie;
a request without an Authorization header is authenticated by it."""


@dataclass
class RateLimiter:
    """A token bucket per principal: ``rate`` requests per second, bursts of ``burst``."""

    rate: float = 50.0
    burst: float = 200.0
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, who: str, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(who, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            if tokens < 1.0:
                self._buckets[who] = (tokens, t)
                return False
            self._buckets[who] = (tokens - 1.0, t)
            return True


class Authenticator:
    """Turns a request's credentials into a ``Principal`` (see the module docstring)."""

    def __init__(self, *, tokens: TokenVerifier | Sequence[TokenVerifier] = (),
                 keys: KeyLookup | None = None, on_failure: FailureHook | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.tokens = [tokens] if isinstance(tokens, TokenVerifier) else list(tokens)
        self.keys = keys
        self.on_failure = on_failure
        self.limiter = limiter

    def authenticate(self, headers: Any, path: str, cookies: Any = None) -> Principal:
        """The caller of a request with these headers (and the sign-in cookie, if the page
        set one), ``AuthenticationError`` otherwise."""
        try:
            principal = self._principal(headers, cookies)
        except AuthenticationError as exc:
            self._failed(str(exc), path, None)
            raise
        return principal

    def authorise(self, principal: Principal, role: Role, path: str) -> None:
        """``PermissionDeniedError`` (audited) unless ``principal`` may act as ``role``."""
        if not principal.can(role):
            message = f"this needs the {role.value} role"
            self._failed(message, path, principal.label)
            raise PermissionDeniedError(message)

    def refuse(self, message: str, path: str, principal: Principal) -> NoReturn:
        """Refuse (``PermissionDeniedError``, audited) for a reason other than the role."""
        self._failed(message, path, principal.label)
        raise PermissionDeniedError(message)

    def _principal(self, headers: Any, cookies: Any = None) -> Principal:
        raw = headers.get("authorization") or ""
        key = headers.get("x-api-key")
        if not raw and key is None and cookies is not None and cookies.get(SESSION_COOKIE):
            raw = "Bearer " + str(cookies[SESSION_COOKIE])
        scheme, _, credential = raw.partition(" ")
        if key is None and scheme.lower() == "bearer" and credential.startswith(
                API_KEY_PREFIX):
            key = credential
        if key is not None:
            if self.keys is None:
                raise AuthenticationError("API keys are not accepted here")
            got = self.keys(key.strip())
            if got is None:
                raise AuthenticationError("unknown, expired or revoked API key")
            return got
        if not raw:
            raise AuthenticationError("sign in: this needs an Authorization: Bearer token "
                                      "or an API key")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        if not self.tokens:
            raise AuthenticationError("no token issuer is configured (FORECAST_AUTH_ISSUER)")
        return self._verifier_for(credential.strip()).verify(credential.strip())

    def _verifier_for(self, token: str) -> TokenVerifier:
        """The verifier of the token's issuer (read unverified only to choose it: the chosen
        verifier checks the signature and the issuer)."""
        import jwt

        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("invalid token (signature or format)") from exc
        for verifier in self.tokens:
            if verifier.issuer == issuer:
                return verifier
        raise AuthenticationError("token from an issuer this service does not trust")

    def _failed(self, reason: str, path: str, subject: str | None) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure(reason, path, subject)
            except Exception:   # an audit that fails never turns a 401 into a 500
                import logging

                logging.getLogger(__name__).exception("auditing a refused request failed")
