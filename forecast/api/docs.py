"""API documentation without a CDN: Swagger UI at ``/docs`` and ReDoc at ``/redoc`` from
vendored files (``docs_assets/``, provenance and licences in its README). Both viewers set
inline styles and ReDoc starts a web worker from a blob, so these two pages get a CSP that
allows inline *styles* and blob workers; scripts stay ``'self'`` only."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).with_name("docs_assets")
SWAGGER = "swagger-ui-5.35.0"
REDOC = "redoc-2.5.4"
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
            "font-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")


def install(app: FastAPI, title: str) -> None:
    app.mount("/docs-assets", StaticFiles(directory=ASSETS), name="docs-assets")

    def page(body: str, head: str) -> HTMLResponse:
        html = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{title}</title>{head}</head><body>{body}</body></html>")
        return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP})

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return page("<div id='swagger-ui'></div>"
                    f"<script src='/docs-assets/{SWAGGER}/swagger-ui-bundle.js'></script>"
                    "<script src='/docs-assets/docs-init.js'></script>",
                    f"<link rel='stylesheet' href='/docs-assets/{SWAGGER}/swagger-ui.css'>")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return page("<div id='redoc'></div>"
                    f"<script src='/docs-assets/{REDOC}/redoc.standalone.js'></script>"
                    "<script src='/docs-assets/redoc-init.js'></script>", "")
