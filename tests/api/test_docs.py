"""/docs and /redoc from vendored files: no CDN, scripts only from this site."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from helpers import context
from sqlalchemy.engine import Engine
from test_app import NOW

from forecast.api.app import create_app
from forecast.api.docs import ASSETS
from forecast.catalogue import load_catalogue


def test_docs_pages_load_only_vendored_assets(engine: Engine, reference_catalogue_path) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(create_app(context(engine, load_catalogue(reference_catalogue_path),
                                           NOW)))
    for path in ("/docs", "/redoc"):
        got = client.get(path)
        assert got.status_code == 200
        csp = got.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
        refs = re.findall(r"(?:src|href)='([^']+)'", got.text)
        assert refs and all(r.startswith("/docs-assets/") for r in refs), refs
        assert "<script>" not in got.text   # no inline script
        for ref in refs:
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 100, ref
    assert (ASSETS / "README.md").read_text().count("SHA-256") == 1
    for licence in ("swagger-ui-5.35.0/LICENSE", "redoc-2.5.4/LICENSE"):
        assert (ASSETS / licence).stat().st_size > 500
