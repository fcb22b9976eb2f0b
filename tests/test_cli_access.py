"""``forecast keys …`` and ``forecast dev-token``, in-process on a temporary SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forecast.api.app import create_app
from forecast.cli import main
from forecast.pipeline.context import Context

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FORECAST_CATALOGUE", str(ROOT / "config" / "reference_rivers.yaml"))
    assert main(["init-db"]) == 0
    return tmp_path


def test_keys_create_list_revoke(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["keys", "create", "--name", "BI export", "--role", "viewer",
                 "--actor", "admin"]) == 0
    out = capsys.readouterr().out
    key = next(line for line in out.splitlines() if line.startswith("fk_"))
    key_id = key.split("_")[1]
    assert main(["keys", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["key_id"] == key_id and row["state"] == "active" and row["roles"] == ["viewer"]
    assert "secret" not in json.dumps(row) and key.split("_", 2)[2] not in json.dumps(row)
    client = TestClient(create_app(Context.from_settings()))
    assert client.get("/v1/rivers", headers={"X-API-Key": key}).status_code == 200
    assert main(["keys", "revoke", key_id, "--actor", "admin"]) == 0
    assert client.get("/v1/rivers", headers={"X-API-Key": key}).status_code == 401
    assert main(["keys", "revoke", key_id, "--actor", "admin"]) == 1
    assert capsys.readouterr().err.strip().endswith("is already revoked")
    assert main(["keys", "revoke", "nope", "--actor", "admin"]) == 1
    with pytest.raises(SystemExit) as bad:
        main(["keys", "create", "--name", "x", "--role", "root", "--actor", "a"])
    assert bad.value.code == 2


def test_dev_token_only_with_the_development_issuer(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["dev-token"]) == 2
    assert "FORECAST_AUTH_DEV=true" in capsys.readouterr().err
    monkeypatch.setenv("FORECAST_AUTH_DEV", "true")
    assert main(["dev-token", "--user", "tanaka"]) == 0
    token = capsys.readouterr().out.strip()
    client = TestClient(create_app(Context.from_settings()))
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["roles"] == ["viewer"] and me["name"] == "田中 (閲覧)"
    refused = client.post("/v1/notifications/1/acknowledge",
                          headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403


def test_runs_forecasts_and_audit_from_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """CLI parity with /v1/runs, /v1/rivers/{id}/forecasts and /v1/audit, on a database that
    ticks filled (the notification world)."""


    from helpers import rising_world

    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FORECAST_CATALOGUE", str(tmp_path / "rivers.yaml"))
    cat = rising_world(tmp_path, ticks=4).catalogue
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in runs] == ["tick"] * 4 and runs[0]["rivers"]
    river = cat.rivers[0].id
    assert main(["forecasts", "--river", river, "--issued-at", "2024-07-01T01:00Z",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["horizon_h"] for r in rows] == list(range(1, 7))
    assert main(["forecasts", "--river", "nope"]) == 2
    assert main(["keys", "create", "--name", "x", "--role", "viewer", "--actor", "chief"]) == 0
    capsys.readouterr()
    assert main(["audit", "--action", "key.create", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["actor"] == "chief"
