"""FastAPI application factory: read-only views of rivers, observations and forecasts.

Every timestamp carries its offset (UTC in the API). Provisional catalogue values and simulated
data are labelled in every response that shows them. Outputs are forecast notifications
(水位予測通知) for staff, never 警報/注意報.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from forecast import __version__
from forecast.catalogue import THRESHOLD_LABELS, River
from forecast.errors import CatalogueError
from forecast.pipeline import status, views
from forecast.pipeline.context import Context
from forecast.pipeline.schedule import Scheduler


def _river_json(r: River) -> dict[str, Any]:
    return {
        "id": r.id, "name_ja": r.name_ja, "name_en": r.name_en, "system_ja": r.system_ja,
        "office": r.office,
        "gauge": {"code": r.gauge.code, "name_ja": r.gauge.name_ja, "kind": r.gauge.kind,
                  "lat": r.gauge.lat, "lon": r.gauge.lon},
        "thresholds_m": {n: v for n, v in r.thresholds.ladder()},
        "threshold_labels": {n: THRESHOLD_LABELS[n][0] for n, _ in r.thresholds.ladder()},
        "provisional": bool(r.provisional_parts),
        "provisional_parts": r.provisional_parts,
    }


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def create_app(ctx: Context, *, scheduler: bool | Scheduler = False) -> FastAPI:
    """Build the app on a context whose database schema is migrated (checked here).

    ``scheduler``: also run the operational scheduler in this process (started and stopped
    with the app: ``forecast serve``); True builds one on ``ctx``. Whether the data are
    simulated is read from the stored observations' sources, so the label cannot be forgotten
    by whoever starts the server."""
    views.ready(ctx)
    catalogue = ctx.catalogue
    simulated = views.simulated(ctx)
    registry = status.metrics_registry(ctx)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sched = scheduler if isinstance(scheduler, Scheduler) else \
            Scheduler(ctx) if scheduler else None
        if sched is not None:
            sched.start()
        try:
            yield
        finally:
            if sched is not None:   # waits for a running tick
                sched.shutdown(wait=True)

    app = FastAPI(title="Mie river water-level forecasts (水位予測)", version=__version__,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    data_label = "SIMULATED (demo data, not real observations)" if simulated else "observed"
    from forecast.api import docs, problems, security, signin, v1

    docs.install(app, "Mie river forecasts API")
    problems.install(app)
    security.install(app, ctx)
    app.include_router(v1.router(ctx, data_label))
    from forecast.api.v1 import data as v1_data

    app.include_router(v1_data.router(ctx, data_label))
    app.include_router(signin.router(ctx))
    from fastapi.staticfiles import StaticFiles

    from forecast.api import web

    app.include_router(web.router(ctx, data_label))   # the staff page at / and /rivers/…
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    if ctx.settings.auth_dev:
        from forecast.api import devoidc

        app.include_router(devoidc.router(ctx))

    def river_or_404(river_id: str) -> River:
        try:
            return catalogue.river(river_id)
        except CatalogueError as exc:
            raise HTTPException(404, f"unknown river {river_id!r}") from exc

    @app.get("/healthz", tags=["health"])
    @app.get("/health", tags=["health"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__,
                "schema_revision": views.schema_revision(ctx), "data": data_label}

    @app.get("/readyz", tags=["health"])
    @app.get("/ready", tags=["health"])
    def ready() -> JSONResponse:
        """Readiness: 200 when the newest scheduled tick finished on time, else 503; lists
        stale inputs either way."""
        r = status.readiness(ctx)
        body = {"ready": r.ready, "checked_at": r.checked_at.isoformat(),
                "expected_issue_time": r.expected_issue_time.isoformat(),
                "problems": r.problems, "stale": r.stale, "data": data_label,
                "last_tick": _jsonable(r.last_tick)}
        return JSONResponse(body, status_code=200 if r.ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(status.metrics_text(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/rivers")
    def rivers() -> dict[str, Any]:
        return {"data": data_label, "rivers": [_river_json(r) for r in catalogue.rivers]}

    @app.get("/api/rivers/{river_id}/observations")
    def observations(river_id: str, hours: int = Query(48, ge=1, le=24 * 90),
                     end: datetime | None = None) -> dict[str, Any]:
        r = river_or_404(river_id)
        stop = (end or ctx.clock.now()).astimezone(UTC)
        df = views.level_observations(ctx, r.gauge.code, stop - timedelta(hours=hours), stop)
        sources = sorted(set(df["source"]))
        return {
            "river": river_id, "station": r.gauge.code, "unit": "m", "data": data_label,
            "sources": sources, "simulated": "simulated" in sources,
            "provisional_parts": r.provisional_parts,
            "observations": [
                {"time": t.isoformat(), "value": _num(v), "flag": int(f)}
                for t, v, f in zip(df["time"], df["value"], df["flag"], strict=True)
            ],
        }

    @app.get("/api/forecasts/latest")
    def latest(river_id: str | None = None) -> dict[str, Any]:
        df = views.latest_forecasts(ctx, river_id)
        df = df.drop(columns=["inputs", "cycle_id", "created_at"])
        for c in ("issued_at", "valid_at", "input_cutoff"):
            df[c] = df[c].map(lambda t: t.isoformat())
        for c in ("degraded", "low_confidence"):
            df[c] = df[c].astype(bool)
        out: dict[str, list[dict[str, Any]]] = {
            str(rid): [{str(k): v for k, v in rec.items()}
                       for rec in part.drop(columns="river_id").to_dict("records")]
            for rid, part in df.groupby("river_id", sort=True)
        }
        return {"data": data_label, "kind": "水位予測 (forecast, not a JMA warning)",
                "forecasts": out}

    @app.get("/api/rivers/{river_id}/forecasts")
    def archive(river_id: str, issued_at: datetime) -> dict[str, Any]:
        """Every stored revision of one issue time ("what did we say at 02:00")."""
        river_or_404(river_id)
        if issued_at.tzinfo is None:
            raise HTTPException(422, "issued_at needs a UTC offset, e.g. 2024-07-01T02:00Z")
        df = views.forecast_archive(ctx, river_id, issued_at.astimezone(UTC))
        revisions: list[dict[str, Any]] = []
        for rev in sorted(set(df["revision"])):
            rows: list[dict[str, Any]] = [
                {str(k): v for k, v in rec.items()}
                for rec in df[df["revision"] == rev].to_dict("records")]
            first = rows[0]
            revisions.append({
                "revision": int(rev), "created_at": first["created_at"].isoformat(),
                "model_version": first["model_version"], "model_variant": first["model_variant"],
                "low_confidence": bool(first["low_confidence"]),
                "reasons": list(first["reasons"]),
                "values": [{"horizon_h": int(r["horizon_h"]), "valid_at": r["valid_at"].isoformat(),
                            "q10": r["q10"], "q50": r["q50"], "q90": r["q90"]} for r in rows]})
        return {"data": data_label, "river": river_id,
                "issued_at": issued_at.astimezone(UTC).isoformat(), "revisions": revisions}

    @app.get("/api/notifications")
    def notifications(active: bool = False, river_id: str | None = None,
                      limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        if river_id is not None:
            river_or_404(river_id)
        rows = views.notifications(ctx, active=True if active else None, river_id=river_id,
                                   limit=limit)
        return {"data": data_label, "notifications": [
            {k: _jsonable(v) for k, v in r.items() if k != "last_message"} for r in rows]}

    @app.get("/cap/feed.atom")
    def cap_feed(request: Request) -> Response:
        from forecast.pipeline.notify import cap_feed as feed

        base = ctx.settings.public_url or str(request.base_url)
        return Response(feed(ctx, base), media_type="application/atom+xml")

    @app.get("/cap/{identifier}.xml")
    def cap_message(identifier: str) -> Response:
        xml = views.cap_message(ctx, identifier)
        if xml is None:
            raise HTTPException(404, f"no CAP message {identifier!r}")
        return Response(xml, media_type="application/cap+xml")

    return app
