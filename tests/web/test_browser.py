"""End to end in headless Chromium (Debian's /usr/bin/chromium through Playwright): the app
served by uvicorn on a loopback port (real HTTP, the real CSP), signed in by the session
cookie (a development-issuer token), at desktop and phone sizes. Screenshots are kept in
``tests/web/artifacts/`` (git-ignored). Skipped, saying why, without the browser."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from world import World

from forecast.api.auth import SESSION_COOKIE
from forecast.pipeline import views

CHROMIUM = os.environ.get("FORECAST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800},
             "phone": {"width": 390, "height": 844}}

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:   # pragma: no cover - the venv has it
    sync_playwright = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed"),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(app: Any) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    assert sync_playwright is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _page(browser: Browser, base_url: str, token: str, viewport: str,
          errors: list[str]) -> Page:
    phone = viewport == "phone"
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="ja-JP",
                                  device_scale_factor=2 if phone else 1, is_mobile=phone,
                                  has_touch=phone, timezone_id="Asia/Tokyo")
    context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": base_url,
                          "httpOnly": True, "sameSite": "Strict"}])
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _drawn(page: Page, selector: str) -> dict[str, float]:
    loc = page.locator(f"svg.hydrograph:visible {selector}").first
    box = loc.bounding_box()
    assert box is not None, f"{selector} is not drawn"
    assert box["width"] > 0 and (box["height"] > 0 or selector.startswith("[data-threshold")), \
        f"{selector} has no size: {box}"
    return box


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_overview_and_the_flooded_river(browser: Browser, base_url: str, world: World,
                                        viewport: str) -> None:
    errors: list[str] = []
    page = _page(browser, base_url, world.token("viewer"), viewport, errors)
    page.goto(base_url + "/")
    assert page.locator("[data-simulated]").is_visible()
    flooded = page.locator(f'.river[data-river="{world.flooded}"]')
    assert flooded.get_attribute("data-worst") == "3"   # 避難判断 reached
    assert "避難判断" in flooded.inner_text()
    page.wait_for_selector("#map[data-ready=true]", timeout=10_000)
    assert page.locator("#map path.leaflet-interactive").count() >= 2   # the gauges
    assert page.locator("#map .gauge-label").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / f"overview-{viewport}.png"), full_page=True)

    page.locator(f'.river[data-river="{world.flooded}"] a.r-name').click()
    page.wait_for_url(f"**/rivers/{world.flooded}")
    observed = _drawn(page, '[data-series="observed"]')
    p50 = _drawn(page, '[data-series="p50"]')
    band = _drawn(page, '[data-band="p10-p90"]')
    for key in ("standby", "caution", "evacuation", "danger"):
        line = _drawn(page, f'[data-threshold="{key}"]')
        assert line["width"] > observed["width"]   # across the whole plot
        assert page.locator(f'svg.hydrograph:visible [data-threshold-label="{key}"]').is_visible()
    assert page.locator("svg.hydrograph:visible [data-rain=obs]").count() > 3
    assert page.locator("svg.hydrograph:visible [data-rain=fc]").count() >= 3
    issue = page.locator("svg.hydrograph:visible [data-issue-time]").bounding_box()
    assert issue is not None
    assert abs(band["x"] - issue["x"]) < 3 and abs(p50["x"] - issue["x"]) < 6   # from T on
    text = page.locator("main").inner_text()
    assert "発表" in text and "データ" in text and "氾濫危険" in text
    assert not errors, errors
    page.screenshot(path=str(ARTIFACTS / f"river-{viewport}.png"), full_page=True)
    page.context.close()


def _unacked(world: World) -> list[dict[str, Any]]:
    """Unacknowledged active notifications, the flooded river's first."""
    rows = [n for n in views.notifications(world.ctx, active=True) if not n["acknowledged_by"]]
    return sorted(rows, key=lambda n: n["river_id"] != world.flooded)


def test_an_operator_acknowledges_and_a_viewer_is_refused(browser: Browser, base_url: str,
                                                          world: World) -> None:
    errors: list[str] = []
    first, second = _unacked(world)[:2]
    page = _page(browser, base_url, world.token("operator", name="tanaka@pref.mie.example"),
                 "phone", errors)
    assert first["river_id"] == world.flooded and first["topic"] == "level"
    page.goto(f"{base_url}/")
    row = page.locator(f'[data-notification="{first["id"]}"]')
    row.locator("[data-ack]").click()
    # Playwright's own polling (wait_for_function would eval a string in the page, which the
    # CSP forbids: the test must not weaken it)
    expect(row.locator("[data-ack-state]")).to_contain_text("確認済", timeout=5000)
    assert row.locator("[data-ack]").count() == 0
    got = {n["id"]: n for n in views.notifications(world.ctx, active=True)}
    assert got[first["id"]]["acknowledged_by"].startswith("tanaka@pref.mie.example")
    page.screenshot(path=str(ARTIFACTS / "acknowledged-phone.png"), full_page=True)

    # the same page, now signed in as a viewer (roles changed since it was loaded)
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": world.token("viewer"),
                               "url": base_url, "httpOnly": True, "sameSite": "Strict"}])
    other = page.locator(f'[data-notification="{second["id"]}"]')
    other.locator("[data-ack]").click()
    msg = other.locator("[data-ack-msg]")
    msg.wait_for(state="visible", timeout=5000)
    assert "403" in msg.inner_text() and "operator" in msg.inner_text()
    assert "未確認" in other.locator("[data-ack-state]").inner_text()
    after = {n["id"]: n for n in views.notifications(world.ctx, active=True)}
    assert after[second["id"]]["acknowledged_by"] is None   # nothing changed server-side
    page.screenshot(path=str(ARTIFACTS / "refused-viewer-phone.png"), full_page=True)

    # a fresh viewer page has no acknowledge button at all
    page.reload()
    assert page.locator("[data-ack]").count() == 0
    assert page.locator(f'[data-notification="{second["id"]}"]').is_visible()
    page.context.close()
    assert not [e for e in errors if "403" not in e], errors


def test_english_and_the_page_reloads_when_a_new_run_lands(browser: Browser, base_url: str,
                                                           world: World) -> None:
    errors: list[str] = []
    page = _page(browser, base_url, world.token("viewer"), "desktop", errors)
    page.goto(f"{base_url}/rivers/{world.flooded}?lang=en")
    assert "Observed now" in page.locator("main").inner_text()
    page.screenshot(path=str(ARTIFACTS / "river-desktop-en.png"), full_page=True)
    # the poll keeps the ETag; a changed ETag reloads the page
    deadline = time.monotonic() + 5
    while not page.evaluate("() => !!(window.forecastPage && window.forecastPage.etag())"):
        assert time.monotonic() < deadline, "the page never fetched the latest forecasts"
        time.sleep(0.1)
    page.evaluate("() => { window.__marker = 1; }")
    page.route("**/v1/forecasts/latest", lambda route: route.fulfill(
        status=200, headers={"ETag": '"changed"', "Content-Type": "application/json"},
        body='{"data": "x", "forecasts": []}'))
    with page.expect_navigation(timeout=5000):
        page.evaluate("() => window.forecastPage.poll()")
    assert page.evaluate("() => window.__marker") is None   # reloaded
    page.context.close()
    assert not errors, errors


def test_sign_in_through_the_development_issuer(browser: Browser, world: World) -> None:
    """Not signed in → /auth/login → the development issuer's form → back on the page as the
    chosen user (authorization code with PKCE, the session cookie set by the callback)."""


    import uvicorn

    from forecast.api.app import create_app
    from forecast.pipeline.context import Context

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = world.ctx.settings.model_copy(update={"public_url": base})
    ctx = Context.of(world.ctx.engine, world.cat, clock=world.ctx.clock, settings=settings)
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        context = browser.new_context(viewport=VIEWPORTS["desktop"], locale="ja-JP")
        page = context.new_page()
        page.goto(f"{base}/rivers/{world.flooded}")
        assert "/dev-oidc/authorize" in page.url
        page.get_by_role("button", name="鈴木").click()
        page.wait_for_url(f"{base}/rivers/{world.flooded}")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies[SESSION_COOKIE]["httpOnly"] and cookies[SESSION_COOKIE]["sameSite"] == \
            "Strict"
        assert page.locator("svg.hydrograph").first.is_visible()
        page.screenshot(path=str(ARTIFACTS / "signed-in-desktop.png"), full_page=True)
        context.close()
    finally:
        server.should_exit = True
        thread.join(timeout=5)

