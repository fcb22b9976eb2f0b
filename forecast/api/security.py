"""HTTP hardening and the wiring of access control into the app.

* ``SecurityHeaders``: CSP without inline scripts (``script-src 'self'``), ``frame-ancestors
  'none'``, nosniff, no referrer, and HSTS when the request came over TLS (directly or, behind
  the zero-trust proxy, ``X-Forwarded-Proto: https``);
* CORS: only the origins in ``FORECAST_CORS_ORIGINS`` (none by default);
* ``build_authenticator``: the organisation's issuer (``FORECAST_AUTH_*``), the development
  issuer (``FORECAST_AUTH_DEV``), API keys from the database, the audit of every refusal and
  a rate limit per caller;
* ``require(role)``: the FastAPI dependency every protected endpoint declares; a POST
  authenticated by the page's cookie (no Authorization header) also needs
  ``X-Requested-With: forecast-page`` (CSRF, besides the cookie's SameSite=Strict).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forecast.api.auth import (
    SESSION_COOKIE,
    Authenticator,
    Principal,
    RateLimiter,
    Role,
    TokenVerifier,
)
from forecast.errors import AuthenticationError
from forecast.pipeline import access
from forecast.pipeline.context import Context

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


class SecurityHeaders:
    """Adds the security headers to every response (a plain ASGI middleware: it only edits
    the response's start message, so bodies are sent as the app wrote them — one write, no
    re-streaming)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        tls = scope.get("scheme") == "https" or headers.get(
            b"x-forwarded-proto", b"").lower() == b"https"

        async def start(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("Content-Security-Policy", CSP)
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("Referrer-Policy", "no-referrer")
                h.setdefault("X-Frame-Options", "DENY")
                h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if tls:
                    h.setdefault("Strict-Transport-Security",
                                 "max-age=31536000; includeSubDomains")
            await send(message)

        await self.app(scope, receive, start)


def install(app: FastAPI, ctx: Context) -> None:
    """Security headers, CORS and the authenticator on ``app``."""
    origins = [o.strip() for o in ctx.settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=False,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key",
                                          "If-None-Match"])
    app.add_middleware(SecurityHeaders)
    app.state.auth = build_authenticator(ctx)


def build_authenticator(ctx: Context) -> Authenticator:
    s = ctx.settings
    verifiers: list[TokenVerifier] = []
    if s.auth_issuer and s.auth_audience and s.auth_jwks_url:
        verifiers.append(TokenVerifier(issuer=s.auth_issuer, audience=s.auth_audience,
                                       jwks_url=s.auth_jwks_url,
                                       role_prefix=s.auth_role_prefix,
                                       jwks_refresh_cooldown_s=s.auth_jwks_cooldown_s))
    if s.auth_dev:
        dev = access.dev_issuer(ctx)
        verifiers.append(TokenVerifier(issuer=dev.issuer, audience=access.DEV_AUDIENCE,
                                       jwks=dev.jwks()))

    def keys(presented: str) -> Principal | None:
        from forecast.api.auth import parse_roles

        got = access.lookup_key(ctx, presented)
        if got is None:
            return None
        return Principal(subject=f"key:{got.key_id}", name=got.name,
                         roles=parse_roles(list(got.roles)), kind="api_key",
                         key_id=got.key_id)

    def on_failure(reason: str, path: str, subject: str | None) -> None:
        access.audit_refusal(ctx, reason=reason, path=path, subject=subject)

    return Authenticator(tokens=verifiers, keys=keys, on_failure=on_failure,
                         limiter=RateLimiter(rate=s.rate_limit, burst=4 * s.rate_limit))


_BEARER = HTTPBearer(auto_error=False, description="an OIDC access token (Entra ID) or an "
                     "API key fk_…")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key fk_…")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PAGE_HEADER = "forecast-page"
"""``X-Requested-With`` value the page's script sends on POSTs (a cross-site form cannot)."""


def _by_cookie(request: Request) -> bool:
    h = request.headers
    return not h.get("authorization") and h.get("x-api-key") is None and \
        bool(request.cookies.get(SESSION_COOKIE))


def require(role: Role) -> Callable[..., Principal]:
    """A dependency: the authenticated caller, refused unless allowed to act as ``role``.
    (The two security parameters only describe the schemes in the OpenAPI document; the
    authenticator reads the headers itself, and the sign-in cookie.)"""

    def dependency(request: Request,
                   _bearer: Annotated[HTTPAuthorizationCredentials | None,
                                      Security(_BEARER)] = None,
                   _key: Annotated[str | None, Security(_API_KEY)] = None) -> Principal:
        auth: Authenticator = request.app.state.auth
        principal = auth.authenticate(request.headers, request.url.path, request.cookies)
        if auth.limiter is not None and not auth.limiter.allow(principal.subject):
            from fastapi import HTTPException

            raise HTTPException(429, "too many requests from this caller; slow down")
        auth.authorise(principal, role, request.url.path)
        if request.method not in SAFE_METHODS and _by_cookie(request) and \
                request.headers.get("x-requested-with") != PAGE_HEADER:
            # CSRF: besides SameSite=Strict, a page POST must come from our script
            auth.refuse(f"a request signed in by the page's cookie needs the header "
                        f"X-Requested-With: {PAGE_HEADER}", request.url.path, principal)
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency


__all__ = ["AuthenticationError", "Role", "install", "require"]
