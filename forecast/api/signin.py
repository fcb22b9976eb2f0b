"""Sign-in for the page: OpenID Connect authorization code flow with PKCE (RFC 7636).

``GET /auth/login?next=/path`` sends the browser to the issuer's authorize endpoint with a
fresh ``state``, ``nonce`` and S256 code challenge, kept in a short-lived signed cookie;
``GET /auth/callback`` checks the state, redeems the code with the verifier at the token
endpoint (server to server), verifies the access token like any bearer token
(``security.build_authenticator``) and keeps it in the ``forecast_session`` cookie (HttpOnly,
SameSite=Strict, Secure behind TLS) until it expires; ``POST /auth/logout`` clears it.

The issuer is the organisation's (``FORECAST_AUTH_CLIENT_ID``, ``FORECAST_AUTH_AUTHORIZE_URL``,
``FORECAST_AUTH_TOKEN_URL``; Entra ID: the app registration's endpoints) or, with
``FORECAST_AUTH_DEV``, the development issuer at ``/dev-oidc`` (``api.devoidc``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from forecast.api.auth import SESSION_COOKIE
from forecast.errors import AuthenticationError, ForecastError
from forecast.pipeline import access
from forecast.pipeline.context import Context

FLOW_COOKIE = "forecast_signin"
FLOW_TTL_S = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """(code verifier, S256 code challenge)."""
    verifier = _b64(secrets.token_bytes(32))
    return verifier, _b64(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class Client:
    """The page as an OIDC client of one issuer."""

    client_id: str
    authorize_url: str
    token_url: str
    scope: str
    client_secret: str | None = None


def client_for(ctx: Context, base_url: str) -> Client | None:
    """The configured client: the organisation's issuer, else the development issuer."""
    s = ctx.settings
    if s.auth_client_id and s.auth_authorize_url and s.auth_token_url:
        secret = s.auth_client_secret.get_secret_value() if s.auth_client_secret else None
        return Client(s.auth_client_id, s.auth_authorize_url, s.auth_token_url, s.auth_scope,
                      secret)
    if s.auth_dev:
        issuer = access.dev_issuer(ctx).issuer
        return Client(access.DEV_CLIENT_ID, f"{issuer}/authorize", f"{issuer}/token",
                      "openid profile")
    return None


class _Signer:
    """HMAC-signed cookie values (the sign-in flow's state), with an expiry."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def dumps(self, value: dict[str, Any]) -> str:
        body = _b64(json.dumps({**value, "exp": int(time.time()) + FLOW_TTL_S}).encode())
        mac = _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{mac}"

    def loads(self, token: str) -> dict[str, Any]:
        body, _, mac = token.partition(".")
        good = _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, good):
            raise AuthenticationError("sign-in state is not ours: start again")
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if value.get("exp", 0) < time.time():
            raise AuthenticationError("sign-in took too long: start again")
        return value


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //evil.example)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def router(ctx: Context) -> APIRouter:
    api = APIRouter(prefix="/auth", include_in_schema=False)
    signer = _Signer(access.session_key(ctx))

    def callback_url(request: Request) -> str:
        base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
        return f"{base}/auth/callback"

    @api.get("/login")
    def login(request: Request, next: str | None = None) -> Response:
        client = client_for(ctx, str(request.base_url))
        if client is None:
            raise AuthenticationError("sign-in is not configured: set FORECAST_AUTH_CLIENT_ID, "
                                      "FORECAST_AUTH_AUTHORIZE_URL and FORECAST_AUTH_TOKEN_URL "
                                      "(README: Entra ID set-up)")
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode({"client_id": client.client_id, "response_type": "code",
                           "redirect_uri": callback_url(request), "scope": client.scope,
                           "state": state, "nonce": nonce, "code_challenge": challenge,
                           "code_challenge_method": "S256", "response_mode": "query"})
        out = RedirectResponse(f"{client.authorize_url}?{query}", status_code=303)
        out.set_cookie(FLOW_COOKIE, signer.dumps({"state": state, "verifier": verifier,
                                                  "nonce": nonce, "next": _safe_next(next)}),
                       max_age=FLOW_TTL_S, httponly=True, samesite="lax",
                       secure=_tls(request), path="/auth")
        return out

    @api.get("/callback")
    def callback(request: Request, code: str | None = None, state: str | None = None,
                 error: str | None = None) -> Response:
        if error:
            raise AuthenticationError(f"the issuer refused the sign-in ({error[:80]})")
        flow = signer.loads(request.cookies.get(FLOW_COOKIE, ""))
        if not code or not state or not hmac.compare_digest(state, str(flow["state"])):
            raise AuthenticationError("sign-in state does not match: start again")
        client = client_for(ctx, str(request.base_url))
        assert client is not None
        if client.client_id == access.DEV_CLIENT_ID and ctx.settings.auth_dev:
            try:   # the development issuer lives in this process
                token = access.dev_issuer(ctx).redeem(
                    code=code, verifier=flow["verifier"], redirect_uri=callback_url(request),
                    client_id=client.client_id)
            except ForecastError as exc:
                raise AuthenticationError(f"the issuer refused the code ({exc})") from exc
        else:
            token = _redeem(client, code, flow["verifier"], callback_url(request),
                            getattr(request.app.state, "token_transport", None))
        auth = request.app.state.auth
        principal = auth.authenticate({"authorization": f"Bearer {token}"}, "/auth/callback")
        access.audit_action(ctx, actor=principal.label, action="session.sign_in",
                            target="page", details={"roles": sorted(r.value
                                                                    for r in principal.roles)})
        out = RedirectResponse(_safe_next(flow.get("next")), status_code=303)
        out.set_cookie(SESSION_COOKIE, token, max_age=_lifetime(token), httponly=True,
                       samesite="strict", secure=_tls(request), path="/")
        out.delete_cookie(FLOW_COOKIE, path="/auth")
        return out

    @api.post("/logout")
    def logout() -> Response:
        out = RedirectResponse("/", status_code=303)
        out.delete_cookie(SESSION_COOKIE, path="/")
        return out

    return api


def _tls(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get(
        "x-forwarded-proto", "").lower() == "https"


def _lifetime(token: str) -> int:
    import jwt

    exp = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)
    return max(int(exp - time.time()), 60)


def _redeem(client: Client, code: str, verifier: str, redirect_uri: str,
            transport: Any) -> str:
    """The access token for ``code`` (token endpoint, server to server)."""
    import httpx

    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client.client_id, "code_verifier": verifier}
    if client.client_secret:
        form["client_secret"] = client.client_secret
    try:
        with httpx.Client(timeout=10, transport=transport) as http:
            got = http.post(client.token_url, data=form)
    except httpx.HTTPError as exc:
        raise AuthenticationError("the issuer's token endpoint cannot be reached now") from exc
    if got.status_code != 200:
        raise AuthenticationError(f"the issuer refused the code (HTTP {got.status_code})")
    token = got.json().get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthenticationError("the issuer's answer has no access token")
    return token
