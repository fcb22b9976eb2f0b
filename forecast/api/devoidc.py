"""The development issuer's endpoints (``FORECAST_AUTH_DEV``; the demo and the tests only):
``/dev-oidc/authorize`` (a login form: pick a demo user), ``/dev-oidc/token`` (code + PKCE
verifier → access token), ``/dev-oidc/jwks.json`` and the discovery document. The codes and
the key live in ``pipeline.access.DevIssuer``. Never enable it where real users sign in: anyone
who reaches it can pick any demo user."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from forecast.errors import AuthenticationError, ForecastError
from forecast.pipeline import access
from forecast.pipeline.context import Context


def router(ctx: Context) -> APIRouter:
    api = APIRouter(prefix="/dev-oidc", include_in_schema=False)
    dev = access.dev_issuer(ctx)

    def check_redirect(request: Request, redirect_uri: str) -> None:
        """Only this service's own callback (no open redirect)."""
        got = urlsplit(redirect_uri)
        base = urlsplit(ctx.settings.public_url or str(request.base_url))
        if got.path != "/auth/callback" or (got.scheme, got.netloc) != (base.scheme,
                                                                        base.netloc):
            raise AuthenticationError("redirect_uri is not this service's /auth/callback")

    @api.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        return {"issuer": dev.issuer, "authorization_endpoint": f"{dev.issuer}/authorize",
                "token_endpoint": f"{dev.issuer}/token", "jwks_uri": f"{dev.issuer}/jwks.json",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "note": "development issuer of the demo: not for real users"}

    @api.get("/jwks.json")
    def jwks() -> dict[str, Any]:
        return dev.jwks()

    @api.get("/authorize", response_class=HTMLResponse)
    def authorize_form(request: Request, client_id: str, redirect_uri: str, state: str,
                       code_challenge: str, code_challenge_method: str = "S256",
                       nonce: str | None = None) -> str:
        check_redirect(request, redirect_uri)
        hidden = "".join(
            f"<input type='hidden' name='{k}' value='{html.escape(v, quote=True)}'>"
            for k, v in {"client_id": client_id, "redirect_uri": redirect_uri, "state": state,
                         "code_challenge": code_challenge,
                         "code_challenge_method": code_challenge_method,
                         "nonce": nonce or ""}.items())
        users = "".join(
            f"<p><button name='user' value='{html.escape(u)}'>{html.escape(name)} — "
            f"{', '.join(roles)}</button></p>" for u, (name, roles) in access.DEV_USERS.items())
        return ("<!doctype html><html lang='ja'><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                "<title>開発用サインイン (development sign-in)</title>"
                "<h1>開発用サインイン</h1><p>Development issuer of the demo: choose a user. "
                "Not for real users.</p>"
                f"<form method='post' action='{dev.issuer}/authorize'>{hidden}{users}</form>")

    @api.post("/authorize")
    def authorize(request: Request, user: str = Form(...), client_id: str = Form(...),
                  redirect_uri: str = Form(...), state: str = Form(...),
                  code_challenge: str = Form(...), code_challenge_method: str = Form("S256"),
                  nonce: str = Form("")) -> Response:
        check_redirect(request, redirect_uri)
        try:
            code = dev.issue_code(user=user, client_id=client_id, redirect_uri=redirect_uri,
                                  challenge=code_challenge, method=code_challenge_method,
                                  nonce=nonce or None)
        except ForecastError as exc:
            raise AuthenticationError(str(exc)) from exc
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}",
                                status_code=303)

    @api.post("/token")
    def token(grant_type: str = Form(...), code: str = Form(...),
              redirect_uri: str = Form(...), client_id: str = Form(...),
              code_verifier: str = Form(...)) -> JSONResponse:
        if grant_type != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            got = dev.redeem(code=code, verifier=code_verifier, redirect_uri=redirect_uri,
                             client_id=client_id)
        except ForecastError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)},
                                status_code=400)
        return JSONResponse({"access_token": got, "token_type": "Bearer",
                             "expires_in": 480 * 60})

    return api
