"""The page's sign-in: authorization code with PKCE against the development issuer, end to
end through the app (TestClient follows nothing by itself: each redirect is checked)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from forecast.api.app import create_app
from forecast.api.signin import pkce_pair
from forecast.catalogue import load_catalogue
from forecast.clock import FixedClock
from forecast.pipeline.context import Context
from forecast.settings import load_settings

NOW = datetime(2024, 7, 1, 12, tzinfo=UTC)


@pytest.fixture
def client(engine: Engine, reference_catalogue_path, tmp_path) -> TestClient:  # type: ignore[no-untyped-def]
    settings = load_settings({"FORECAST_AUTH_DEV": "true", "FORECAST_DATA_DIR": str(tmp_path),
                              "FORECAST_PUBLIC_URL": "http://testserver"})
    ctx = Context.of(engine, load_catalogue(reference_catalogue_path), clock=FixedClock(NOW),
                     settings=settings)
    return TestClient(create_app(ctx), follow_redirects=False)


def _form(c: TestClient, location: str, user: str) -> tuple[str, dict[str, str]]:
    """Submit the development issuer's login form as ``user``: (callback URL, params)."""
    q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) >= 43
    page = c.get(location)
    assert page.status_code == 200 and "開発用サインイン" in page.text
    sent = c.post("/dev-oidc/authorize", data={
        "user": user, "client_id": q["client_id"], "redirect_uri": q["redirect_uri"],
        "state": q["state"], "code_challenge": q["code_challenge"],
        "code_challenge_method": "S256", "nonce": q["nonce"]})
    assert sent.status_code == 303
    back = sent.headers["location"]
    return back, {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}


def test_sign_in_with_pkce_sets_a_strict_session_cookie(client: TestClient) -> None:
    start = client.get("/auth/login", params={"next": "/rivers/koto"})
    assert start.status_code == 303
    assert start.headers["location"].startswith("http://testserver/dev-oidc/authorize?")
    back, params = _form(client, start.headers["location"], "suzuki")
    done = client.get(urlsplit(back).path, params=params)
    assert done.status_code == 303 and done.headers["location"] == "/rivers/koto"
    cookie = done.headers["set-cookie"]
    assert "forecast_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    me = client.get("/v1/me").json()
    assert me["name"] == "鈴木 (水防担当)" and me["roles"] == ["operator"]
    # the code was used once
    again = client.get(urlsplit(back).path, params=params)
    assert again.status_code == 401
    out = client.post("/auth/logout")
    assert out.status_code == 303
    assert client.get("/v1/me").status_code == 401


def test_sign_in_refuses_tampering(client: TestClient) -> None:
    start = client.get("/auth/login", params={"next": "//evil.example/steal"})
    back, params = _form(client, start.headers["location"], "tanaka")
    bad = client.get(urlsplit(back).path, params={**params, "state": "forged"})
    assert bad.status_code == 401 and "state does not match" in bad.json()["detail"]
    ok = client.get(urlsplit(back).path, params=params)
    assert ok.status_code == 303 and ok.headers["location"] == "/"   # no open redirect
    # the issuer only sends codes back to this service's own callback
    start = client.get("/auth/login")
    q = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["location"]).query).items()}
    evil = client.get("/dev-oidc/authorize", params={**q, "redirect_uri":
                                                     "https://evil.example/auth/callback"})
    assert evil.status_code == 401


def test_the_token_endpoint_checks_the_verifier(client: TestClient) -> None:
    verifier, challenge = pkce_pair()
    sent = client.post("/dev-oidc/authorize", data={
        "user": "yamada", "client_id": "mie-forecast-page",
        "redirect_uri": "http://testserver/auth/callback", "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256"})
    code = parse_qs(urlsplit(sent.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": "http://testserver/auth/callback", "client_id": "mie-forecast-page"}
    wrong = client.post("/dev-oidc/token", data={**form, "code_verifier": pkce_pair()[0]})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # a failed redemption used the code up too
    right = client.post("/dev-oidc/token", data={**form, "code_verifier": verifier})
    assert right.status_code == 400
    sent = client.post("/dev-oidc/authorize", data={
        "user": "yamada", "client_id": "mie-forecast-page",
        "redirect_uri": "http://testserver/auth/callback", "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256"})
    code = parse_qs(urlsplit(sent.headers["location"]).query)["code"][0]
    got = client.post("/dev-oidc/token", data={**form, "code": code, "code_verifier": verifier})
    assert got.status_code == 200
    token = got.json()["access_token"]
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["roles"] == ["hydrologist"]
