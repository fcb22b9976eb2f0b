"""API v1 on a database filled by real ticks (a rising river, notifications, CAP): what each
endpoint answers, and wrong input as one problem each, never a 500."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from helpers import rising_world
from test_notify_stage import T0, _path

from forecast.api.app import create_app
from forecast.ingest.replay import Replay
from forecast.pipeline.access import dev_issuer
from forecast.pipeline.context import Context
from forecast.pipeline.tick import Feeds, run_tick

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, Context, dict]:
    ctx = rising_world(tmp_path_factory.mktemp("v1"), ticks=20,
                       env={"FORECAST_AUTH_DEV": "true"})
    cat = ctx.catalogue
    obs, _ = _path(cat)
    feeds = Feeds(replay=Replay.of(obs, name="simulated"))
    run_tick(ctx, T0 + timedelta(hours=9), feeds=feeds, models=lambda r: None, force=True)
    token = dev_issuer(ctx).mint(subject="dev:tanaka", name="田中", roles=["viewer"])
    client = TestClient(create_app(ctx), headers={"Authorization": f"Bearer {token}"})
    return client, ctx, {"river": cat.rivers[0].id, "gauge": cat.rivers[0].primary_gauge}


def test_observations_with_flag_names_and_the_window_rules(world) -> None:  # type: ignore[no-untyped-def]
    c, _, w = world
    got = c.get(f"/v1/rivers/{w['river']}/observations", params={
        "start": "2024-07-01T00:00:00+09:00", "end": "2024-07-01T12:00:00+00:00"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["station"] == w["gauge"] and body["flags"]["GOOD"] == 0
    times = [o["time"] for o in body["observations"]]
    assert times == sorted(times) and times[0] >= "2024-06-30T15:00:00"
    assert {o["flag_name"] for o in body["observations"]} <= set(body["flags"])
    naive = c.get(f"/v1/rivers/{w['river']}/observations", params={"end": "2024-07-01T12:00"})
    assert naive.status_code == 422
    assert naive.headers["content-type"].startswith("application/problem+json")
    for params in ({"end": "9999-12-31T00:00:00Z"}, {"start": "2024-07-02T00:00Z",
                                                      "end": "2024-07-01T00:00Z"},
                   {"start": "2020-01-01T00:00Z", "end": "2024-07-01T00:00Z"}):
        bad = c.get(f"/v1/rivers/{w['river']}/observations", params=params)
        assert bad.status_code == 422, (params, bad.text)
        assert bad.json()["status"] == 422 and bad.json()["detail"]
    unknown = c.get("/v1/rivers/nope/observations")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "unknown river 'nope'"
    other = c.get(f"/v1/rivers/{w['river']}/observations", params={"station": "ZZZ"})
    assert other.status_code == 404


def test_the_archive_keeps_every_revision(world) -> None:  # type: ignore[no-untyped-def]
    c, _, w = world
    issued = (T0 + timedelta(hours=9)).isoformat()
    got = c.get(f"/v1/rivers/{w['river']}/forecasts", params={"issued_at": issued}).json()
    assert [r["revision"] for r in got["revisions"]] == [1, 2]
    assert all(len(r["values"]) == 6 for r in got["revisions"])
    one = c.get(f"/v1/rivers/{w['river']}/forecasts",
                params={"issued_at": issued, "revision": 2}).json()
    assert [r["revision"] for r in one["revisions"]] == [2]


def test_runs_page_with_a_cursor(world) -> None:  # type: ignore[no-untyped-def]
    c, _, _ = world
    first = c.get("/v1/runs", params={"limit": 8}).json()
    assert len(first["runs"]) == 8 and first["next_cursor"] == first["runs"][-1]["id"]
    second = c.get("/v1/runs", params={"limit": 8, "cursor": first["next_cursor"]}).json()
    ids = [r["id"] for r in first["runs"] + second["runs"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 16
    run = first["runs"][0]
    assert run["kind"] == "tick" and {r["river_id"] for r in run["rivers"]} and run["sources"]
    everything = c.get("/v1/runs", params={"limit": 200}).json()
    assert everything["next_cursor"] is None and len(everything["runs"]) == 21


def test_latest_forecasts_etag_and_geojson_and_cap(world) -> None:  # type: ignore[no-untyped-def]
    c, _, w = world
    got = c.get("/v1/forecasts/latest")
    assert got.status_code == 200 and got.headers["cache-control"].startswith("private")
    assert c.get("/v1/forecasts/latest",
                 headers={"If-None-Match": got.headers["etag"]}).status_code == 304
    geo = c.get("/v1/gauges.geojson").json()
    assert geo["type"] == "FeatureCollection"
    primary = [f for f in geo["features"] if f["properties"]["code"] == w["gauge"]]
    assert primary[0]["geometry"]["type"] == "Point"
    feed = c.get("/v1/cap/feed.atom")
    entries = ET.fromstring(feed.content).findall(f"{ATOM}entry")
    link = entries[0].find(f"{ATOM}link").get("href")
    assert "/v1/cap/" in link
    assert c.get(link[link.index("/v1/cap/"):]).headers["content-type"].startswith(
        "application/cap+xml")
    assert c.get("/v1/freshness").json()["stations"]
    assert c.get("/v1/models").json() == []   # persistence only: no model registered


def test_the_openapi_schema_is_typed(world) -> None:  # type: ignore[no-untyped-def]
    c, _, _ = world
    paths = c.get("/openapi.json").json()["paths"]
    for path, ops in paths.items():
        if not path.startswith("/v1") or "/cap/" in path:
            continue
        for op in ops.values():
            schema = op["responses"][next(iter(op["responses"]))]["content"][
                "application/json"]["schema"]
            assert schema, f"{path} has no response schema"


def test_rain_observed_by_hour_and_the_newest_forecast_vintage(world) -> None:  # type: ignore[no-untyped-def]
    c, ctx, w = world
    got = c.get(f"/v1/rivers/{w['river']}/rain", params={
        "start": "2024-07-01T00:00:00Z", "end": "2024-07-01T06:00:00Z"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert [h["valid_at"] for h in body["observed"]] == [
        f"2024-07-01T{h:02d}:00:00Z" for h in range(0, 7)]
    assert body["rain_gauges"] == [g.code for g in ctx.catalogue.river(w["river"]).rain_gauges]
    # the world stores no rain: unknown, not zero, and no forecast vintage
    assert all(h["rain_mm"] is None for h in body["observed"])
    assert body["forecast"] == [] and body["forecast_issued_at"] is None
    assert c.get("/v1/rivers/nope/rain").status_code == 404
    assert c.get(f"/v1/rivers/{w['river']}/rain", params={"end": "2024-07-01T06:00"}
                 ).status_code == 422
