"""API v1 and the page through the app (FastAPI TestClient) on a real migrated database,
signed in through the development issuer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers import context, run
from sqlalchemy.engine import Engine

from forecast.api.app import create_app
from forecast.api.auth import SESSION_COOKIE
from forecast.catalogue import load_catalogue
from forecast.clock import FixedClock
from forecast.errors import MigrationError
from forecast.pipeline.access import dev_issuer
from forecast.pipeline.context import Context
from forecast.settings import load_settings
from forecast.storage.engine import create_engine
from forecast.storage.forecasts import save_forecast
from forecast.storage.observations import upsert_observations

NOW = datetime(2024, 7, 1, 12, tzinfo=UTC)


def _signed_in(engine: Engine, catalogue_path: Path, tmp_path: Path) -> TestClient:
    """A client of an app accepting the development issuer, signed in (the page's cookie)
    as a viewer."""
    settings = load_settings({"FORECAST_AUTH_DEV": "true", "FORECAST_DATA_DIR": str(tmp_path),
                              "FORECAST_API_CACHE_S": "0"})   # see a new run at once
    ctx = Context.of(engine, load_catalogue(catalogue_path), clock=FixedClock(NOW),
                     settings=settings)
    client = TestClient(create_app(ctx))
    client.cookies.set(SESSION_COOKIE, dev_issuer(ctx).mint(subject="u-1", name="suzuki",
                                                            roles=["viewer"]))
    return client


def _write(engine: Engine, source: str) -> None:
    t = pd.date_range("2024-07-01 00:00", periods=12, freq="h", tz="UTC")
    run(engine, upsert_observations, pd.DataFrame({
        "station_id": "jiseiji", "variable": "level_m", "time": t,
        "value": np.linspace(2.5, 4.0, 12)}), source=source, now=NOW)


@pytest.mark.parametrize("source", ["simulated", "kotogawa_csv"])
def test_rivers_observations_and_data_label(engine: Engine, reference_catalogue_path,  # type: ignore[no-untyped-def]
                                            source: str, tmp_path: Path) -> None:
    _write(engine, source)
    anonymous = TestClient(create_app(context(engine, load_catalogue(reference_catalogue_path),
                                              NOW)))
    assert anonymous.get("/health").json()["status"] == "ok"
    assert anonymous.get("/v1/rivers").status_code == 401
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/", follow_redirects=False).status_code == 303   # sign in first
    client = _signed_in(engine, reference_catalogue_path, tmp_path)
    (koto,) = client.get("/v1/rivers").json()
    assert [(t["key"], t["level_m"], t["name_ja"]) for t in koto["thresholds"]] == [
        ("standby", 3.8, "水防団待機水位"), ("caution", 5.0, "氾濫注意水位"),
        ("evacuation", 5.1, "避難判断水位"), ("danger", 5.5, "氾濫危険水位")]
    assert "catchment" in koto["provisional"]
    obs = client.get("/v1/rivers/koto/observations",
                     params={"start": "2024-07-01T06:00:00+00:00",
                             "end": "2024-07-01T12:00:00+00:00"}).json()
    assert [o["time"] for o in obs["observations"]][:1] == ["2024-07-01T06:00:00Z"]
    assert len(obs["observations"]) == 6
    assert obs["data"].startswith("SIMULATED") == (source == "simulated")
    assert {o["source"] for o in obs["observations"]} == {source}
    page = client.get("/").text
    assert "厚東川" in page and "気象庁の発表ではありません" in page  # not a JMA product
    assert ("SIMULATED" in page) == (source == "simulated")
    assert client.get("/v1/rivers/nope/observations").status_code == 404
    assert "forecast_ticks" in client.get("/metrics").text


def test_latest_forecasts(engine: Engine, reference_catalogue_path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = pd.Timestamp(NOW)
    h = np.arange(1, 7)
    fc = pd.DataFrame({"river_id": "koto", "issued_at": t,
                       "valid_at": t + pd.to_timedelta(h, unit="h"), "horizon_h": h,
                       "level": 3.0 + 0.1 * h, "q10": 2.8 + 0.1 * h, "q50": 3.0 + 0.1 * h,
                       "q90": 3.3 + 0.1 * h, "model_version": "v1"})
    reason = "crisis gauge silent 5 h; not read as low water"
    run(engine, save_forecast, fc, model_variant="full", input_cutoff=NOW, degraded=False,
        inputs={}, created_at=NOW, low_confidence=True, reasons=[reason])
    client = _signed_in(engine, reference_catalogue_path, tmp_path)
    (got,) = client.get("/v1/forecasts/latest").json()["forecasts"]
    assert [g["horizon_h"] for g in got["values"]] == list(range(1, 7))
    assert got["values"][0]["valid_at"] == "2024-07-01T13:00:00Z"
    assert got["low_confidence"] is True and got["reasons"] == [reason]
    assert got["revision"] == 1
    page = client.get("/").text
    assert "低信頼" in page and reason in page
    # a re-run adds revision 2; the archive shows both, the latest endpoint the newer
    run(engine, save_forecast, fc.assign(q50=fc["q50"] + 1.0), model_variant="full",
        input_cutoff=NOW, degraded=False, inputs={}, created_at=NOW)
    assert client.get("/v1/forecasts/latest").json()["forecasts"][0]["revision"] == 2
    arch = client.get("/v1/rivers/koto/forecasts",
                      params={"issued_at": "2024-07-01T21:00:00+09:00"}).json()
    assert [r["revision"] for r in arch["revisions"]] == [1, 2]
    assert arch["revisions"][0]["values"][0]["q50"] == pytest.approx(3.1)
    assert arch["revisions"][1]["values"][0]["q50"] == pytest.approx(4.1)
    assert arch["revisions"][0]["reasons"] == [reason]
    assert client.get("/v1/rivers/koto/forecasts",
                      params={"issued_at": "2024-07-01T12:00:00"}).status_code == 422
    assert client.get("/v1/rivers/nope/forecasts",
                      params={"issued_at": "2024-07-01T12:00Z"}).status_code == 404


def test_unmigrated_database_refused_at_start(tmp_path, reference_catalogue_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MigrationError):
        create_app(context(create_engine(f"sqlite:///{tmp_path}/x.db"),
                           load_catalogue(reference_catalogue_path), NOW))
