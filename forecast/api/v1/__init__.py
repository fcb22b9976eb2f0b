"""API v1 (``/v1``): every endpoint authenticated and authorised (``security.require``), with a
response model so the OpenAPI schema is complete. Times are ISO 8601 with offset (UTC).

First set (the rest of the issue's list follows the same pattern): who am I, rivers with their
threshold ladder in Japanese, the latest forecast per river (ETag, caching headers),
notifications (list, acknowledge as the signed-in operator), API keys and the audit log
(admin).
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as FPath
from pydantic import TypeAdapter

from forecast.api.auth import Principal, Role
from forecast.api.security import require
from forecast.api.v1.schemas import (
    PROBLEMS,
    Acknowledge,
    AuditEntry,
    ForecastOut,
    Gauge,
    KeyIn,
    KeyOut,
    LatestForecasts,
    Me,
    NewKey,
    NotificationOut,
    RiverOut,
    Threshold,
)
from forecast.catalogue import AlertLevel, River
from forecast.errors import CatalogueError, NotFoundError
from forecast.pipeline import access, views
from forecast.pipeline.context import Context

MAX_ID = 2**31 - 1   # ids are 32-bit integers in both databases
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def _river(r: River) -> RiverOut:
    ladder = [(AlertLevel.from_key(n), v) for n, v in r.thresholds.ladder()]
    return RiverOut(
        id=r.id, name_ja=r.name_ja, name_en=r.name_en, system_ja=r.system_ja,
        office=r.office,
        thresholds=[Threshold(level=int(lv), key=lv.key, name_ja=lv.name_ja, name_en=lv.name_en,
                              level_m=v, colour=lv.colour) for lv, v in ladder],
        gauges=[Gauge(code=g.code, name_ja=g.name_ja, name_en=g.name_en, kind=g.kind,
                      lat=g.lat, lon=g.lon, primary=g.code == r.primary_gauge)
                for g in r.gauges],
        provisional=r.provisional_parts)


def _latest(frame: Any, data_label: str) -> LatestForecasts:
    """The response body of ``/v1/forecasts/latest`` from ``views.latest_forecasts``."""
    records: list[dict[str, Any]] = ([{str(k): v for k, v in r.items()}
                                     for r in frame.to_dict("records")])
    by_river: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_river.setdefault(str(rec["river_id"]), []).append(rec)
    out = [ForecastOut.model_validate({"river_id": rid, "issued_at": rows[0]["issued_at"],
                                       **revision_fields(rows)})
           for rid, rows in sorted(by_river.items())]
    return LatestForecasts(data=data_label, forecasts=out)


def revision_fields(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``Revision`` fields of one forecast run's rows (``views`` frames, one per lead)."""
    first = rows[0]
    return {"revision": int(first["revision"]), "model_version": first["model_version"],
            "model_variant": first["model_variant"], "degraded": bool(first["degraded"]),
            "low_confidence": bool(first["low_confidence"]),
            "reasons": list(first["reasons"]),
            "values": [{k: r[k] for k in ("horizon_h", "valid_at", "q10", "q50", "q90")}
                       for r in sorted(rows, key=lambda r: int(r["horizon_h"]))]}


def router(ctx: Context, data_label: str) -> APIRouter:
    """The ``/v1`` router on ``ctx``."""
    api = APIRouter(prefix="/v1", responses=PROBLEMS)
    # the latest forecasts per query, kept until a new forecast run is stored
    latest_cache: dict[str | None, tuple[int | None, str, str]] = {}
    checked: list[Any] = [float("-inf"), None]   # [when, forecasts version]

    def river_or_404(river_id: str) -> River:
        try:
            return ctx.catalogue.river(river_id)
        except CatalogueError as exc:
            raise NotFoundError(f"unknown river {river_id!r}") from exc

    @api.get("/me", response_model=Me, tags=["access"])
    def me(who: Viewer) -> Me:
        return Me(subject=who.subject, name=who.name, kind=who.kind,
                  roles=sorted(r.value for r in who.roles))

    rivers_json = TypeAdapter(list[RiverOut]).dump_json(
        [_river(r) for r in ctx.catalogue.rivers])   # the catalogue does not change

    @api.get("/rivers", response_model=list[RiverOut], tags=["rivers"])
    def rivers(who: Viewer) -> Response:
        return Response(rivers_json, media_type="application/json")

    @api.get("/rivers/{river_id}", response_model=RiverOut, tags=["rivers"])
    def river(river_id: str, who: Viewer) -> RiverOut:
        return _river(river_or_404(river_id))

    @api.get("/forecasts/latest", response_model=LatestForecasts, tags=["forecasts"])
    def latest(request: Request, who: Viewer, river_id: str | None = None) -> Response:
        if river_id is not None:
            river_or_404(river_id)
        now = time.monotonic()
        if now - checked[0] >= ctx.settings.api_cache_s:   # the "anything new?" query
            checked[:] = [now, views.forecasts_version(ctx)]
        version = checked[1]
        cached = latest_cache.get(river_id)
        if cached is None or cached[0] != version:   # a new run was stored: rebuild
            body = _latest(views.latest_forecasts(ctx, river_id), data_label).model_dump_json()
            etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
            cached = (version, body, etag)
            latest_cache[river_id] = cached
        _, body, etag = cached
        headers = {"ETag": etag, "Cache-Control": "private, max-age=60, must-revalidate"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @api.get("/notifications", response_model=list[NotificationOut], tags=["notifications"])
    def notifications(who: Viewer, active: bool = False, river_id: str | None = None,
                      limit: int = Query(200, ge=1, le=1000)) -> list[NotificationOut]:
        if river_id is not None:
            river_or_404(river_id)
        rows = views.notifications(ctx, active=True if active else None, river_id=river_id,
                                   limit=limit)
        return [NotificationOut(**{k: r[k] for k in NotificationOut.model_fields
                                   if k in r},
                                summary_ja=(r["last_message"] or {}).get("summary_ja"))
                for r in rows]

    @api.post("/notifications/{notification_id}/acknowledge", response_model=NotificationOut,
              tags=["notifications"])
    def acknowledge(notification_id: Annotated[int, FPath(ge=1, le=MAX_ID)], who: Operator,
                    body: Acknowledge | None = None) -> NotificationOut:
        from forecast.pipeline.notify import acknowledge_notification

        got = acknowledge_notification(ctx, notification_id, user=who.label,
                                       note=body.note if body else None)
        level = AlertLevel(got["level"]) if got["level"] else None
        return NotificationOut(**{k: got[k] for k in NotificationOut.model_fields if k in got},
                               level_key=level.key if level else "data",
                               level_name_ja=level.name_ja if level else "データ異常")

    @api.get("/keys", response_model=list[KeyOut], tags=["admin"])
    def keys(who: Admin) -> list[KeyOut]:
        return [KeyOut(**k) for k in access.list_keys(ctx)]

    @api.post("/keys", response_model=NewKey, status_code=201, tags=["admin"])
    def create_key(body: KeyIn, who: Admin) -> NewKey:
        key, rec = access.create_key(ctx, name=body.name, roles=list(body.roles),
                                     actor=who.label,
                                     days=body.days)
        row = next(k for k in access.list_keys(ctx) if k["key_id"] == rec.key_id)
        return NewKey(key=key, **row)

    @api.post("/keys/{key_id}/revoke", response_model=KeyOut, tags=["admin"])
    def revoke(key_id: str, who: Admin) -> KeyOut:
        access.revoke_key(ctx, key_id, actor=who.label)
        return KeyOut(**next(k for k in access.list_keys(ctx) if k["key_id"] == key_id))

    @api.get("/audit", response_model=list[AuditEntry], tags=["admin"])
    def audit_log(who: Admin, action: str | None = None,
                  limit: int = Query(100, ge=1, le=1000)) -> list[AuditEntry]:
        return [AuditEntry(**e) for e in access.read_audit(ctx, limit=limit, action=action)]

    return api
