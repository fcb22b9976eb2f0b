"""Access control, as designed, over every /v1 endpoint: a locally generated RSA key pair, its
JWKS served by a real HTTP server on loopback (the issuer), tokens minted with PyJWT, and API
keys from the database. Every refusal is audited."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from helpers import run
from jwt.algorithms import RSAAlgorithm
from sqlalchemy.engine import Engine

from forecast.api.app import create_app
from forecast.catalogue import load_catalogue
from forecast.clock import FixedClock
from forecast.pipeline import access
from forecast.pipeline.context import Context
from forecast.settings import load_settings
from forecast.storage import audit

NOW = datetime(2024, 7, 1, 12, tzinfo=UTC)
ISSUER = "https://login.example.test/tenant-1/v2.0"
AUDIENCE = "api://mie-forecast"


class Issuer:
    """A key pair per key id and a JWKS endpoint on loopback."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                issuer.fetches += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keys"
        self.rotate("k1")

    def rotate(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**json.loads(RSAAlgorithm.to_jwk(k.public_key())), "kid": kid,
                          "use": "sig", "alg": "RS256"} for kid, k in self.keys.items()]}

    def token(self, *, roles: list[str], kid: str = "k1", iss: str = ISSUER,
              aud: str = AUDIENCE, exp_in: float = 600, nbf_in: float = 0,
              key: Any = None, sub: str = "u-1", name: str = "suzuki@pref.mie.example") -> str:
        t = int(time.time())
        claims = {"iss": iss, "aud": aud, "sub": sub, "oid": sub, "name": "鈴木",
                  "preferred_username": name, "roles": roles, "iat": t,
                  "nbf": t + int(nbf_in), "exp": t + int(exp_in)}
        return jwt.encode(claims, key or self.keys[kid], algorithm="RS256",
                          headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    got = Issuer()
    yield got
    got.server.shutdown()
    got.server.server_close()


@pytest.fixture
def client(engine: Engine, reference_catalogue_path, issuer: Issuer) -> TestClient:  # type: ignore[no-untyped-def]
    settings = load_settings({"FORECAST_AUTH_ISSUER": ISSUER, "FORECAST_AUTH_AUDIENCE": AUDIENCE,
                              "FORECAST_AUTH_JWKS_URL": issuer.url,
                              "FORECAST_AUTH_ROLE_PREFIX": "Forecast.",
                              "FORECAST_AUTH_JWKS_COOLDOWN_S": "0"})
    ctx = Context.of(engine, load_catalogue(reference_catalogue_path), clock=FixedClock(NOW),
                     settings=settings)
    c = TestClient(create_app(ctx))
    c.ctx = ctx   # type: ignore[attr-defined]
    return c


# every /v1 endpoint with the role it needs and a harmless request
ENDPOINTS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/me", "viewer", None),
    ("GET", "/v1/rivers", "viewer", None),
    ("GET", "/v1/rivers/koto", "viewer", None),
    ("GET", "/v1/forecasts/latest", "viewer", None),
    ("GET", "/v1/notifications", "viewer", None),
    ("POST", "/v1/notifications/999/acknowledge", "operator", {}),
    ("GET", "/v1/keys", "admin", None),
    ("POST", "/v1/keys", "admin", {"name": "bi-export", "roles": ["viewer"]}),
    ("POST", "/v1/keys/nope/revoke", "admin", None),
    ("GET", "/v1/audit", "admin", None),
    ("GET", "/v1/rivers/koto/observations", "viewer", None),
    ("GET", "/v1/rivers/koto/rain", "viewer", None),
    ("GET", "/v1/rivers/koto/forecasts?issued_at=2024-07-01T00:00Z", "viewer", None),
    ("GET", "/v1/runs", "viewer", None),
    ("GET", "/v1/freshness", "viewer", None),
    ("GET", "/v1/gauges.geojson", "viewer", None),
    ("GET", "/v1/models", "viewer", None),
    ("GET", "/v1/cap/feed.atom", "viewer", None),
    ("GET", "/v1/cap/x1.xml", "viewer", None),
]
BELOW = {"viewer": None, "operator": "viewer", "hydrologist": "viewer", "admin": "operator"}


def _call(c: TestClient, method: str, path: str, body: dict[str, Any] | None,
          headers: dict[str, str]) -> Any:
    return c.request(method, path, json=body, headers=headers)


def test_the_endpoint_list_covers_every_v1_route(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]   # the schema lists every endpoint
    routes = {(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1") for m in ops}
    listed = {(m, p) for m, p, _, _ in ENDPOINTS}
    templ = {(m, p.split("?")[0].replace("koto", "{river_id}")
              .replace("999", "{notification_id}").replace("nope", "{key_id}")
              .replace("x1.xml", "{identifier}.xml")) for m, p in listed}
    assert routes == templ


@pytest.mark.parametrize(("method", "path", "role", "body"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_matrix(client: TestClient, issuer: Issuer, engine: Engine, method: str, path: str,
                role: str, body: dict[str, Any] | None) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "no token": {},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "bad signature": {"Authorization": "Bearer " + issuer.token(roles=["Forecast.Admin"],
                                                                     key=other)},
        "expired": {"Authorization": "Bearer " + issuer.token(roles=["Forecast.Admin"],
                                                               exp_in=-120)},
        "not yet valid": {"Authorization": "Bearer " + issuer.token(roles=["Forecast.Admin"],
                                                                     nbf_in=600)},
        "wrong issuer": {"Authorization": "Bearer " + issuer.token(
            roles=["Forecast.Admin"], iss="https://evil.example/v2.0")},
        "wrong audience": {"Authorization": "Bearer " + issuer.token(
            roles=["Forecast.Admin"], aud="api://someone-else")},
        "unknown key": {"X-API-Key": "fk_000000000000_nope"},
    }
    ctx = client.ctx   # type: ignore[attr-defined]
    key, rec = access.create_key(ctx, name="revoked", roles=["admin"], actor="test")
    access.revoke_key(ctx, rec.key_id, actor="test")
    refused["revoked key"] = {"Authorization": f"Bearer {key}"}
    before = len(run(engine, audit.read_audit, limit=10_000, action="access.refused"))
    for why, headers in refused.items():
        got = _call(client, method, path, body, headers)
        assert got.status_code == 401, (why, got.status_code, got.text)
        assert got.headers["content-type"].startswith("application/problem+json")
        assert "WWW-Authenticate" in got.headers
        assert "Traceback" not in got.text and key not in got.text
    lower = BELOW[role]
    if lower is not None:
        got = _call(client, method, path, body, {
            "Authorization": "Bearer " + issuer.token(roles=[f"Forecast.{lower.title()}"])})
        assert got.status_code == 403, got.text
        assert got.json()["detail"] == f"this needs the {role} role"
    after = run(engine, audit.read_audit, limit=10_000, action="access.refused")
    assert len(after) - before == len(refused) + (lower is not None), "every refusal audited"
    # the right role, as a user and as an API key: allowed (the request itself may still be
    # a 404 for an unknown id, never 401/403)
    ok_key, _ = access.create_key(ctx, name="client", roles=[role], actor="test")
    for headers in ({"Authorization": "Bearer " + issuer.token(
            roles=[f"Forecast.{role.title()}"])}, {"X-API-Key": ok_key}):
        got = _call(client, method, path, body, headers)
        assert got.status_code not in (401, 403), got.text
        assert got.status_code < 500, got.text


def test_health_and_readiness_need_no_sign_in(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)


def test_key_rotation_is_picked_up_and_the_jwks_is_cached(client: TestClient,
                                                          issuer: Issuer) -> None:
    auth = {"Authorization": "Bearer " + issuer.token(roles=["Forecast.Viewer"])}
    assert client.get("/v1/me", headers=auth).status_code == 200
    assert client.get("/v1/me", headers=auth).status_code == 200
    assert issuer.fetches == 1, "keys are cached between requests"
    issuer.rotate("k2")   # the issuer starts signing with a new key
    got = client.get("/v1/me", headers={
        "Authorization": "Bearer " + issuer.token(roles=["Forecast.Viewer"], kid="k2")})
    assert got.status_code == 200 and issuer.fetches == 2
    me = got.json()
    assert me == {"subject": "u-1", "name": "suzuki@pref.mie.example", "kind": "user",
                  "roles": ["viewer"]}


def test_security_headers_and_no_cors_by_default(client: TestClient, issuer: Issuer) -> None:
    got = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "script-src 'self'" in got.headers["content-security-policy"]
    assert "'unsafe-inline'" not in got.headers["content-security-policy"].split(
        "script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in got.headers["content-security-policy"]
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in got.headers
    assert "strict-transport-security" not in got.headers
    tls = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert tls.headers["strict-transport-security"].startswith("max-age=")


def test_api_key_lifecycle_through_the_api_is_audited(client: TestClient, issuer: Issuer,
                                                       engine: Engine) -> None:
    admin = {"Authorization": "Bearer " + issuer.token(roles=["Forecast.Admin"], sub="a-1",
                                                        name="admin@pref.mie.example")}
    made = client.post("/v1/keys", json={"name": "bi-export", "roles": ["viewer"], "days": 30},
                       headers=admin)
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert client.get("/v1/rivers", headers={"X-API-Key": key}).status_code == 200
    listed = client.get("/v1/keys", headers=admin).json()
    assert all("secret" not in json.dumps(k) and key not in json.dumps(k) for k in listed)
    kid = made.json()["key_id"]
    assert client.post(f"/v1/keys/{kid}/revoke", headers=admin).json()["state"] == "revoked"
    assert client.get("/v1/rivers", headers={"X-API-Key": key}).status_code == 401
    again = client.post(f"/v1/keys/{kid}/revoke", headers=admin)
    assert again.status_code == 409 and "already revoked" in again.json()["detail"]
    bad = client.post("/v1/keys", json={"name": "x", "roles": ["root"]}, headers=admin)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("roles")
    actions = [(e["action"], e["actor"]) for e in run(engine, audit.read_audit, limit=50)
               if e["action"].startswith("key.")]
    assert actions[:2] == [("key.revoke", "admin@pref.mie.example (a-1)"),
                           ("key.create", "admin@pref.mie.example (a-1)")]


def test_rate_limit_per_caller(engine: Engine, reference_catalogue_path, issuer: Issuer) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"FORECAST_AUTH_ISSUER": ISSUER, "FORECAST_AUTH_AUDIENCE": AUDIENCE,
                              "FORECAST_AUTH_JWKS_URL": issuer.url, "FORECAST_RATE_LIMIT": "1"})
    ctx = Context.of(engine, load_catalogue(reference_catalogue_path), clock=FixedClock(NOW),
                     settings=settings)
    c = TestClient(create_app(ctx))
    auth = {"Authorization": "Bearer " + issuer.token(roles=["viewer"])}
    codes = [c.get("/v1/me", headers=auth).status_code for _ in range(8)]
    assert codes[:4] == [200] * 4 and 429 in codes[4:]
    other = {"Authorization": "Bearer " + issuer.token(roles=["viewer"], sub="u-2")}
    assert c.get("/v1/me", headers=other).status_code == 200, "limits are per caller"
