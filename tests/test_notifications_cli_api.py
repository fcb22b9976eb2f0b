"""Operators' view of the notifications: ``forecast notifications …`` in-process and the API
(list, CAP feed and messages), on a SQLite file that ticks over a rising river filled."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from fastapi.testclient import TestClient
from helpers import rising_world
from test_notify_stage import CAP_XSD

from forecast.api.app import create_app
from forecast.cli import main
from forecast.pipeline.context import Context

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """Two rivers, 10 h of ticks: the first rises through standby and caution, the second's
    gauge is never heard from (a data problem)."""
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FORECAST_CATALOGUE", str(tmp_path / "rivers.yaml"))
    return rising_world(tmp_path, ticks=20)


def test_list_ack_cap_and_wrong_input(filled: Context, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["notifications", "list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {"river_id", "level", "state", "raised_at"} <= set(items[0])
    by_state = {(i["river_id"], i["level_key"]): i["state"] for i in items}
    first, second = filled.catalogue.ids
    assert by_state == {(first, "caution"): "active", (first, "standby"): "superseded",
                        (second, "data"): "active"}
    caution = next(i for i in items if i["level_key"] == "caution")
    assert main(["notifications", "list", "--river", "nope"]) == 2
    assert "unknown river 'nope'" in capsys.readouterr().err
    assert main(["notifications", "ack", str(caution["id"]), "--user", "suzuki"]) == 0
    assert "acknowledged by suzuki" in capsys.readouterr().out
    assert main(["notifications", "ack", str(caution["id"]), "--user", "tanaka"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: already acknowledged by suzuki") and err.count("\n") == 1
    assert main(["notifications", "list", "--active"]) == 0
    assert "suzuki" in capsys.readouterr().out
    assert main(["notifications", "test", "webhook"]) == 2
    assert "no delivery channel is configured" in capsys.readouterr().err
    assert main(["notifications", "dead-letters"]) == 0
    assert "no dead letters" in capsys.readouterr().out
    out = tmp_path / "cap"
    assert main(["notifications", "cap", "--out", str(out)]) == 0
    files = sorted(out.glob("*.xml"))
    assert files and f"wrote {len(files)} CAP message(s)" in capsys.readouterr().out
    schema = xmlschema.XMLSchema(CAP_XSD)
    for f in files:
        schema.validate(str(f))


def test_api_lists_notifications_and_serves_the_cap_feed(filled: Context) -> None:
    from dataclasses import replace

    from forecast.api.auth import SESSION_COOKIE
    from forecast.pipeline.access import dev_issuer

    assert TestClient(create_app(filled)).get("/v1/cap/feed.atom").status_code == 401
    dev = replace(filled, settings=filled.settings.model_copy(update={"auth_dev": True}))
    client = TestClient(create_app(dev))
    client.headers["Authorization"] = "Bearer " + dev_issuer(dev).mint(
        subject="u-1", name="suzuki", roles=["viewer"])
    got = client.get("/v1/notifications", params={"active": "true"}).json()
    assert {n["level_key"] for n in got} == {"caution", "data"}
    assert client.get("/v1/notifications", params={"river_id": "nope"}).status_code == 404
    feed = client.get("/v1/cap/feed.atom")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith(
        "application/atom+xml")
    entries = ET.fromstring(feed.content).findall(f"{ATOM}entry")
    assert len(entries) == 1    # the level stream's open event (data problems have no CAP)
    link = entries[0].find(f"{ATOM}link").get("href")
    cap = client.get(link[link.index("/v1/cap/"):])
    assert cap.status_code == 200 and cap.headers["content-type"].startswith(
        "application/cap+xml")
    xmlschema.XMLSchema(CAP_XSD).validate(cap.text)
    assert "<msgType>Update</msgType>" in cap.text   # the newest of its event
    assert client.get("/v1/cap/nope.xml").status_code == 404
    anonymous = TestClient(create_app(dev))
    assert anonymous.get("/", follow_redirects=False).status_code == 303   # the page signs in
    page_client = TestClient(create_app(dev))
    page_client.cookies.set(SESSION_COOKIE, dev_issuer(dev).mint(
        subject="u-1", name="suzuki", roles=["viewer"]))
    page = page_client.get("/").text
    assert "水位予測通知" in page and "氾濫注意水位" in page
