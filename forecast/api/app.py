"""FastAPI application factory: API v1 (``api.v1``), the staff page (``api.web``), sign-in
(``api.signin``, ``api.devoidc``), the docs, and health, readiness and metrics.

Every endpoint but ``/healthz`` and ``/readyz`` needs a signed-in user or an API key
(``api.security``). Every timestamp carries its offset (UTC in the API). Provisional
catalogue values and simulated data are labelled in every response that shows them. Outputs
are forecast notifications (水位予測通知) for staff, never JMA products.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from forecast import __version__
from forecast.pipeline import status, views
from forecast.pipeline.context import Context
from forecast.pipeline.schedule import Scheduler


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

    from fastapi import Depends

    from forecast.api.auth import Role
    from forecast.api.security import require

    @app.get("/metrics", tags=["health"], dependencies=[Depends(require(Role.VIEWER))])
    def metrics() -> Response:
        """Prometheus exposition (signed in: give Prometheus an API key with the viewer role
        as its bearer token)."""
        return Response(status.metrics_text(registry), media_type=CONTENT_TYPE_LATEST)

    return app
