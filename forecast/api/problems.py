"""One error format for the API: RFC 9457 problem details (``application/problem+json``),
from one table mapping the project's errors (and FastAPI's) to HTTP statuses.

A problem never carries a traceback, a SQL statement, a token or a secret: the project's
errors are written to be shown (``forecast.errors``); anything else becomes a plain 500
"internal error" and is logged with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from forecast.errors import (
    AuthenticationError,
    CatalogueError,
    ConfigError,
    ConflictError,
    CycleError,
    DataError,
    ForecastError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

TABLE: list[tuple[type[Exception], int, str]] = [
    (AuthenticationError, 401, "not signed in"),
    (PermissionDeniedError, 403, "not allowed"),
    (NotFoundError, 404, "not found"),
    (InvalidRequestError, 422, "invalid request"),
    (ConflictError, 409, "conflict"),
    (CatalogueError, 404, "not found"),
    (DataError, 422, "unusable input"),
    (CycleError, 409, "conflict"),
    (StorageError, 503, "storage unavailable"),
    (ConfigError, 500, "service misconfigured"),
    (ForecastError, 400, "request refused"),
]
"""First match wins: the project's error classes, most specific first."""


def problem(status: int, title: str, detail: str, *, instance: str | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            **({"instance": instance} if instance else {}), **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="forecast"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def project_error(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, title in TABLE:
            if isinstance(exc, cls):
                if status >= 500:
                    log.error("%s %s: %s", request.method, request.url.path, exc)
                    detail = ("the service cannot answer this now" if status == 503
                              else "the service is misconfigured; the operators are told")
                    return problem(status, title, detail, instance=request.url.path)
                return problem(status, title, str(exc), instance=request.url.path)
        return await unexpected(request, exc)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "not found", 405: "method not allowed", 429: "too many requests"}.get(
            exc.status_code, "request refused")
        return problem(exc.status_code, title, str(exc.detail), instance=request.url.path)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))}
                  for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"][1:]) or "request"
        return problem(422, "invalid request", f"{where}: {first['msg']}",
                       instance=request.url.path, errors=errors)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed unexpectedly", request.method, request.url.path,
                  exc_info=exc)
        return problem(500, "internal error", "the service failed on this request; the "
                       "operators can find it in the log", instance=request.url.path)

    app.add_exception_handler(ForecastError, project_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
