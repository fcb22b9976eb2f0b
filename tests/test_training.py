"""Training service on stored simulated data: judged, registered, promotable, loadable by the
cycle; a river without data is reported and the others go on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from forecast.catalogue import load_catalogue
from forecast.cycle import run_cycle
from forecast.modelling import registry
from forecast.simulate import simulate
from forecast.storage.observations import upsert_observations
from forecast.storage.repository import upsert_rain_vintages
from forecast.training import train_all

ROOT = Path(__file__).resolve().parent.parent
END = datetime(2024, 7, 10, 3, tzinfo=UTC)
NOW = datetime(2024, 7, 10, 3, 10, tzinfo=UTC)


def test_train_register_promote_and_forecast(engine: Engine, tmp_path: Path) -> None:
    cat = load_catalogue(ROOT / "config" / "reference_rivers.yaml")
    sim = simulate(cat, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 7, 10, 4, tzinfo=UTC),
                   seed=5)
    upsert_observations(engine, sim.observations.drop(columns=["received_at"]),
                        source="simulated", now=NOW)
    upsert_rain_vintages(engine, sim.rain_forecasts, now=NOW)
    first = train_all(engine, cat, end=END, days=100, models_root=tmp_path, now=NOW)
    assert not first.failed
    v1 = first.versions["koto"]
    score, basis = v1.score
    assert score is not None and score > 0 and basis in ("event RMSE", "all-hours RMSE")
    assert v1.manifest["training_window"][1] == END.isoformat()
    registry.promote(tmp_path, "koto", v1.version, at=NOW)
    # the same judging backtest on the same data: the challenger is not worse → promotable
    later = NOW.replace(minute=20)
    second = train_all(engine, cat, end=END, days=100, models_root=tmp_path, now=later)
    v2 = second.versions["koto"]
    assert v2.manifest["backtest"]["spec"] == v1.manifest["backtest"]["spec"]
    registry.promote(tmp_path, "koto", v2.version, at=later)
    report = run_cycle(engine, cat, END, models=lambda r: registry.load_champion(tmp_path, r),
                       now=later, rain_product="simulated_forecast")
    assert [o.status for o in report.outcomes] in (["ok"], ["degraded"])
    assert set(report.forecasts["model_version"]) == {v2.version}
    assert (report.forecasts["issued_at"] == pd.Timestamp(END)).all()


def test_river_without_data_is_reported(engine: Engine, tmp_path: Path) -> None:
    cat = load_catalogue(ROOT / "config" / "reference_rivers.yaml")
    report = train_all(engine, cat, end=END, days=30, models_root=tmp_path, now=NOW)
    assert set(report.failed) == {"koto"} and not report.versions
