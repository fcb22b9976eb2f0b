"""The page through the app (TestClient): sign-in redirect, rivers coloured by level,
Japanese by default and English on request, autoescaping, CSP-compatible markup (no inline
script or style), the hydrograph's drawn parts, acknowledge buttons for operators only, the
CSRF header on cookie POSTs, and the vendored assets with their licences."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import signed_in
from fastapi.testclient import TestClient
from world import World, build_world

from forecast.api.app import create_app
from forecast.api.web.routes import STATIC, environment, levels_css
from forecast.catalogue import AlertLevel
from forecast.pipeline import views
from forecast.pipeline.context import Context


def test_not_signed_in_is_sent_to_the_sign_in(client: TestClient, world: World) -> None:
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/auth/login?next=%2F"
    r = client.get(f"/rivers/{world.flooded}?hours=12")
    assert r.headers["location"] == f"/auth/login?next=%2Frivers%2F{world.flooded}%3Fhours%3D12"
    signed_in(client, "not-a-token")   # expired or forged: sign in again
    assert client.get("/").status_code == 303
    assert client.get("/web/map.json").status_code == 401


def test_signed_in_without_the_viewer_role_is_refused(client: TestClient, world: World) -> None:
    r = signed_in(client, world.token()).get("/")
    assert r.status_code == 403 and "viewer" in r.json()["detail"]


def test_overview_lists_rivers_coloured_by_level(client: TestClient, world: World) -> None:
    html = signed_in(client, world.token("viewer")).get("/").text
    items = re.findall(r'<li class="river lvb-(\d)" data-river="(\w+)" data-worst="(\d)"', html)
    assert [(i, w) for _, i, w in items] == [(world.flooded, "3"), (world.quiet, "0")]
    assert 'class="chip lv-3" data-observed-level="evacuation"' in html
    assert 'data-forecast-level="evacuation"' in html
    assert 'data-observed-level="none"' in html   # the silent gauge says so
    css = client.get("/web/levels.css")
    assert css.headers["content-type"].startswith("text/css")
    for lv in AlertLevel:
        assert f".lv-{int(lv)}{{background:{lv.colour}" in css.text
    assert ".lv-2{background:#f2e700;color:#000000}" in levels_css()   # black on yellow


def test_japanese_by_default_english_on_request_and_remembered(client: TestClient,
                                                                world: World) -> None:
    signed_in(client, world.token("viewer"))
    ja = client.get("/").text
    assert '<html lang="ja">' in ja and "河川一覧" in ja and "水位予測通知" in ja
    en = client.get(f"/rivers/{world.flooded}?lang=en")
    assert '<html lang="en">' in en.text and "Observed now" in en.text
    assert "氾濫危険" in en.text   # the threshold names stay Japanese
    assert en.cookies.get("forecast_lang") == "en"
    assert '<html lang="en">' in client.get("/").text   # remembered
    toggle = re.search(r'href="([^"]+)" lang="ja" data-lang-toggle', en.text)
    assert toggle is not None and "lang=ja" in toggle.group(1)
    for html in (ja, en.text):
        assert "警報" not in html and "注意報" not in html
    client.get("/?lang=ja")


def test_the_simulated_label_is_on_every_page(client: TestClient, world: World) -> None:
    signed_in(client, world.token("viewer"))
    for path in ("/", f"/rivers/{world.flooded}"):
        html = client.get(path).text
        assert 'data-simulated' in html and "SIMULATED" in html


PAGES = ["/", "/rivers/{flooded}", "/rivers/{flooded}?hours=48&lang=en", "/rivers/{quiet}"]


@pytest.mark.parametrize("path", PAGES)
def test_markup_fits_the_csp(client: TestClient, world: World, path: str) -> None:
    signed_in(client, world.token("operator"))
    r = client.get(path.format(flooded=world.flooded, quiet=world.quiet))
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert '<meta name="viewport"' in html
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(re.search(r'\bsrc="/static/', s) for s in scripts), scripts
    assert not re.search(r"<style\b", html)
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert "http://" not in html.replace(str(client.base_url), "") and "https://" not in html


def test_templates_autoescape(world: World, tmp_path: Path) -> None:
    assert environment().autoescape is True
    cat = world.cat
    evil = "<script>alert(1)</script>川"
    rivers = (cat.rivers[0].model_copy(update={"name_ja": evil}), *cat.rivers[1:])
    ctx = Context.of(world.ctx.engine, cat.model_copy(update={"rivers": rivers}),
                     clock=world.ctx.clock, settings=world.ctx.settings)
    c = signed_in(TestClient(create_app(ctx)), world.token("viewer"))
    for path in ("/", f"/rivers/{world.flooded}"):
        html = c.get(path).text
        assert evil not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;川" in html


def test_the_river_page_draws_the_hydrograph(client: TestClient, world: World) -> None:
    html = signed_in(client, world.token("viewer")).get(f"/rivers/{world.flooded}").text
    for hook in ('data-series="observed"', 'data-series="p50"', 'data-band="p10-p90"',
                 "data-issue-time"):
        assert html.count(hook) == 2, hook   # the desk and the phone drawing
    river = world.cat.river(world.flooded)
    for name, m in river.thresholds.ladder():
        lv = AlertLevel.from_key(name)
        assert f'data-threshold="{lv.key}"' in html
        assert f"{lv.short_ja} {m:.2f} m" in html and lv.name_ja in html
    assert html.count('data-rain="obs"') >= 2 * 6 and html.count('data-rain="fc"') == 2 * 6
    assert "data-low-confidence" in html and "persistence forecast" in html
    assert "発表: 07/01 19:30 JST" in html   # the issue time in JST
    assert "データ: 0分前 (07/01 19:50)" in html   # data age and the newest reading (JST)
    # the drawn P50 starts at the level at T and goes through every lead
    d = re.search(r'class="p50" data-series="p50" d="([^"]+)"', html)
    assert d is not None and d.group(1).count("L") == 6


def test_observed_catchment_rain_is_the_hourly_sum(world: World) -> None:
    now = world.ctx.clock.now()
    got = views.catchment_rain(world.ctx, world.flooded, now - timedelta(hours=12), now)
    river = world.cat.river(world.flooded)
    obs = views.level_observations(world.ctx, river.gauge.code, now, now)   # warm-up: no rows
    assert obs.empty
    from forecast.frames import RAIN
    from forecast.storage.engine import transaction
    from forecast.storage.observations import read_observations

    with transaction(world.ctx.engine, "test") as conn:
        raw = read_observations(conn, station_ids=[river.rain_gauges[0].code], variable=RAIN,
                                start=now - timedelta(hours=14), end=now)
    for hour in got.index[-8:]:   # the naive sum over (T-1 h, T]
        part = raw[(raw["time"] > hour - timedelta(hours=1)) & (raw["time"] <= hour)]
        assert len(part) == 6
        assert got[hour] == pytest.approx(part["value"].sum())
    fc = views.forecast_rain(world.ctx, world.flooded, now)
    assert len(fc) == 6 and fc["issued_at"].nunique() == 1
    assert fc["issued_at"].iloc[0] <= now


def test_acknowledge_buttons_only_for_operators(client: TestClient, world: World) -> None:
    viewer = signed_in(client, world.token("viewer")).get("/").text
    assert "data-notification=" in viewer and "data-ack=" not in viewer
    operator = signed_in(client, world.token("operator")).get("/").text
    assert "data-ack=" in operator


def test_a_cookie_post_needs_the_page_header(tmp_path: Path) -> None:
    w = build_world(tmp_path)
    c = signed_in(TestClient(create_app(w.ctx)), w.token("operator"))
    nid = next(n["id"] for n in views.notifications(w.ctx, active=True))
    r = c.post(f"/v1/notifications/{nid}/acknowledge", json={})
    assert r.status_code == 403 and "X-Requested-With" in r.json()["detail"]
    assert next(n for n in views.notifications(w.ctx, active=True)
                if n["id"] == nid)["acknowledged_by"] is None
    r = c.post(f"/v1/notifications/{nid}/acknowledge", json={},
               headers={"X-Requested-With": "forecast-page"})
    assert r.status_code == 200 and r.json()["acknowledged_by"]
    # a bearer token (no cookie) needs no such header: not a browser's ambient credential
    bare = TestClient(create_app(w.ctx))
    other = next(n["id"] for n in views.notifications(w.ctx, active=True) if n["id"] != nid)
    r = bare.post(f"/v1/notifications/{other}/acknowledge", json={},
                  headers={"Authorization": f"Bearer {w.token('operator')}"})
    assert r.status_code == 200


def test_vendored_assets_are_served_with_their_licences(client: TestClient) -> None:
    vendor = STATIC / "vendor"
    dirs = [d for d in vendor.iterdir() if d.is_dir()]
    assert dirs and all(re.fullmatch(r"[a-z0-9.-]+-\d+\.\d+\.\d+", d.name) for d in dirs)
    for d in dirs:
        assert (d / "LICENSE").read_text(encoding="utf-8").strip()
    leaflet = vendor / "leaflet-1.9.4"
    assert "BSD 2-Clause" in (leaflet / "LICENSE").read_text(encoding="utf-8")
    assert "Leaflet 1.9.4" in (leaflet / "leaflet.js").read_text(encoding="utf-8")[:300]
    assert (vendor / "README.md").exists()
    geo = STATIC / "geo"
    land = json.loads((geo / "mie-land.geojson").read_text(encoding="utf-8"))
    assert land["type"] == "FeatureCollection"
    assert (geo / "mie-land.geojson").stat().st_size < 50_000
    readme = (geo / "README.md").read_text(encoding="utf-8")
    assert "Natural Earth" in readme and "public domain" in readme
    for path in ("/static/vendor/leaflet-1.9.4/leaflet.js", "/static/page.js",
                 "/static/page.css", "/static/map.js", "/static/geo/mie-land.geojson"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "content-security-policy" in r.headers
