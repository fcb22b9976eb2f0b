"""The staff web page: the rivers overview (levels, map, active notifications) at ``/`` and
one river's hydrograph at ``/rivers/{river_id}``.

Both need a signed-in viewer (the sign-in's cookie ``forecast_session``); without one the
browser is sent (303) to ``/auth/login?next=…``. Templates are Jinja2 with autoescaping;
every script and style is a file under ``static/`` (the CSP has no ``'unsafe-inline'``).
Japanese by default, English with ``?lang=en`` (remembered in a cookie).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from forecast import __version__
from forecast.api.auth import SESSION_COOKIE, Principal, Role
from forecast.api.security import PAGE_HEADER, require
from forecast.api.web import model
from forecast.api.web.i18n import LANG_COOKIE, LANGS, words
from forecast.catalogue import AlertLevel
from forecast.errors import AuthenticationError, CatalogueError
from forecast.pipeline import status, views
from forecast.pipeline.context import Context

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


def environment() -> Environment:
    """The page's Jinja2 environment: autoescape on for every template."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["jst"] = model.jst
    return env


def _text_colour(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def levels_css() -> str:
    """Classes ``lv-<n>`` (chip), ``lvb-<n>`` (left border) and ``lvs-<n>`` (SVG stroke)
    from ``AlertLevel.colour``: one source for the page's level colours."""
    rules = [".lv-0{background:#e6e6e6;color:#222}", ".lvb-0{border-left-color:#9a9a9a}"]
    for lv in AlertLevel:
        c = lv.colour
        rules += [f".lv-{int(lv)}{{background:{c};color:{_text_colour(c)}}}",
                  f".lvb-{int(lv)}{{border-left-color:{c}}}",
                  f".lvs-{int(lv)}{{stroke:{c}}}", f".lvf-{int(lv)}{{fill:{c}}}"]
    return "\n".join(rules) + "\n"


class _NotSignedIn(Exception):
    pass


def router(ctx: Context, data_label: str) -> APIRouter:
    """The page's routes on ``ctx``."""
    web = APIRouter(include_in_schema=False)
    templates = Jinja2Templates(env=environment())
    viewer = require(Role.VIEWER)
    css = levels_css()

    def principal(request: Request) -> Principal | None:
        """The signed-in viewer, None when there are no credentials or they are not valid
        (expired: sign in again); a signed-in user without the viewer role gets the 403."""
        h = request.headers
        if not h.get("authorization") and not request.cookies.get(SESSION_COOKIE):
            return None
        try:
            return viewer(request)
        except AuthenticationError:
            return None

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/auth/login?next={quote(target, safe='')}", status_code=303)

    def language(request: Request) -> tuple[str, bool]:
        asked = request.query_params.get("lang")
        if asked in LANGS:
            return str(asked), True
        kept = request.cookies.get(LANG_COOKIE)
        return (kept if kept in LANGS else "ja"), False

    def page(request: Request, name: str, who: Principal, **extra: Any) -> Response:
        lang, asked = language(request)
        w = words(lang)
        ready = status.readiness(ctx)
        other = "en" if lang == "ja" else "ja"
        toggle = request.url.include_query_params(lang=other)
        context = {"request": request, "w": w, "lang": lang, "other_lang": other,
                   "who": who, "operator": who.can(Role.OPERATOR),
                   "simulated": views.simulated(ctx), "data_label": data_label,
                   "version": __version__, "now": ctx.clock.now(), "ready": ready,
                   "page_header": PAGE_HEADER, "lang_href": f"{toggle.path}?{toggle.query}",
                   "levels": list(AlertLevel), **extra}
        response = templates.TemplateResponse(request, name, context)
        response.headers["Cache-Control"] = "no-store"
        if asked:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict",
                                httponly=True)
        return response

    def notification_rows(river_id: str | None = None) -> list[dict[str, Any]]:
        rows = views.notifications(ctx, active=True, river_id=river_id)
        names = {r.id: r for r in ctx.catalogue.rivers}
        out = []
        for n in rows:
            msg = n.get("last_message") or {}
            river = names.get(n["river_id"])
            out.append({**n, "river_name_ja": river.name_ja if river else n["river_id"],
                        "river_name_en": river.name_en if river else n["river_id"],
                        "summary": msg.get("summary_ja") or msg.get("title_ja") or ""})
        return out

    @web.get("/web/levels.css")
    def level_colours() -> Response:
        return Response(css, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})

    @web.get("/")
    def overview(request: Request) -> Response:
        who = principal(request)
        if who is None:
            return to_login(request)
        states = model.river_states(ctx)
        lang, _ = language(request)
        w = words(lang)
        return page(request, "overview.html", who, states=states,
                    ages={s.river.id: model.age_text(s.age, w) for s in states},
                    notifications=notification_rows())

    @web.get("/rivers/{river_id}")
    def river_page(request: Request, river_id: str,
                   hours: int = Query(24, ge=6, le=48)) -> Response:
        who = principal(request)
        if who is None:
            return to_login(request)
        try:
            river = ctx.catalogue.river(river_id)
        except CatalogueError as exc:
            raise CatalogueError(f"unknown river {river_id!r}") from exc
        state = model.river_states(ctx, [river])[0]
        lang, _ = language(request)
        w = words(lang)
        return page(request, "river.html", who, s=state, g=model.hydrograph(ctx, state, hours),
                    g_phone=model.hydrograph(ctx, state, hours, model.PHONE),
                    hours=hours, age=model.age_text(state.age, w),
                    notifications=notification_rows(river.id))

    @web.get("/web/map.json")
    def map_data(request: Request) -> JSONResponse:
        """The gauges coloured by their worst of observed and forecast level, and each
        river's catchment outline, as GeoJSON (the base layer is a static file)."""
        viewer(request)
        features: list[dict[str, Any]] = []
        for s in model.river_states(ctx):
            r = s.river
            if r.catchment.polygon:
                ring = [list(p) for p in r.catchment.polygon]
                features.append({"type": "Feature", "properties": {"kind": "catchment",
                                                                   "river": r.id},
                                 "geometry": {"type": "Polygon",
                                              "coordinates": [[*ring, ring[0]]]}})
            lv = AlertLevel(s.worst) if s.worst else None
            features.append({"type": "Feature", "geometry": {
                "type": "Point", "coordinates": [r.gauge.lon, r.gauge.lat]},
                "properties": {"kind": "gauge", "river": r.id, "name_ja": r.name_ja,
                               "name_en": r.name_en, "gauge_ja": r.gauge.name_ja,
                               "level": s.worst, "colour": lv.colour if lv else "#9a9a9a",
                               "level_ja": lv.short_ja if lv else "",
                               "observed_m": s.observed_m, "href": f"/rivers/{r.id}"}})
        return JSONResponse({"type": "FeatureCollection", "features": features},
                            headers={"Cache-Control": "no-store"})

    return web
