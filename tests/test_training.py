"""Training service on stored simulated data: judged, registered, promotable, loadable by the
cycle, reported; a river without data is reported and the others go on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from helpers import context, run
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue, load_catalogue
from forecast.errors import ManifestError, RegistryError
from forecast.features import build_features
from forecast.modelling import registry
from forecast.modelling.judging import holdout_evaluator, judge_folds
from forecast.modelling.pooled import PooledLeadModels
from forecast.pipeline import models as champions
from forecast.pipeline.collect import store_observations
from forecast.pipeline.cycle import run_cycle
from forecast.pipeline.training import load_river, promote_river, train_all
from forecast.simulate import simulate
from forecast.storage.models import list_model_versions
from forecast.storage.rain import upsert_rain_vintages

ROOT = Path(__file__).resolve().parent.parent
END = datetime(2024, 7, 10, 3, tzinfo=UTC)
NOW = datetime(2024, 7, 10, 3, 10, tzinfo=UTC)


def test_judge_folds_cover_the_last_fifth_on_whole_hours() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    folds = judge_folds(start, END, 2)
    assert folds[-1].test_end == pd.Timestamp(END)
    assert all(f.train_end == f.test_start and f.test_start == f.test_start.floor("h")
               for f in folds)
    assert folds[0].test_end == folds[1].test_start
    share = (pd.Timestamp(END) - folds[0].test_start) / (pd.Timestamp(END) - pd.Timestamp(start))
    assert share == pytest.approx(0.2, abs=0.001)


def test_train_register_promote_report_and_forecast(engine: Engine, tmp_path: Path) -> None:
    cat = load_catalogue(ROOT / "config" / "reference_rivers.yaml")
    sim = simulate(cat, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 7, 10, 4, tzinfo=UTC),
                   seed=5)
    models, reports = tmp_path / "models", tmp_path / "reports"
    ctx = context(engine, cat, NOW, models_root=models)
    store_observations(ctx, sim.observations.drop(columns=["received_at"]), source="simulated")
    run(engine, upsert_rain_vintages, sim.rain_forecasts, now=NOW)
    calls: list[str] = []
    first = train_all(ctx, end=END, days=100, report_dir=reports, progress=calls.append)
    assert not first.failed and calls == ["koto"]
    v1 = first.versions["koto"]
    score, basis = v1.score
    assert score is not None and score > 0 and basis in ("event RMSE", "all-hours RMSE")
    m = v1.manifest
    assert m["training_window"][1] == END.isoformat() and m["source"] == "simulated"
    assert m["future_rain"] == "archive" and m["upstream"] == ["kotogawa_dam_release"]
    assert len(m["backtest"]["spec"]["folds"]) == 2
    assert set(m["backtest"]["baselines"]) == {"persistence", "ar2"}
    # the judging backtest's report, labelled SIMULATED
    page = reports / "koto" / v1.version / "index.html"
    assert page.exists() and "SIMULATED DATA" in page.read_text(encoding="utf-8")
    assert (page.parent / "overview.png").stat().st_size > 1000
    listed = run(engine, list_model_versions, "koto")
    assert listed["version"].tolist() == [v1.version] and not listed["champion"].any()
    assert champions.promote(ctx, "koto", v1.version).endswith("(first champion)")
    # the same judging backtest on the same data: the challenger is not worse → promotable
    ctx.clock.set(NOW.replace(minute=20))  # type: ignore[attr-defined]
    second = train_all(ctx, end=END, days=100)
    v2 = second.versions["koto"]
    assert v2.manifest["backtest"]["spec"] == v1.manifest["backtest"]["spec"]
    assert "same stored backtest" in champions.promote(ctx, "koto", v2.version)
    # the champion loads from the registry and forecasts in the forecast-frame shape
    report = run_cycle(ctx, END, rain_product="simulated_forecast")
    assert [o.status for o in report.outcomes] in (["ok"], ["degraded"])
    assert set(report.forecasts["model_version"]) == {v2.version}
    assert (report.forecasts["issued_at"] == pd.Timestamp(END)).all()
    assert sorted(report.forecasts["horizon_h"]) == [1, 2, 3, 4, 5, 6]
    assert report.forecasts[["q10", "q50", "q90"]].notna().all(axis=None)
    assert (report.forecasts["q10"] <= report.forecasts["q90"]).all()
    # a challenger judged on another window is re-scored with the champion on one hold-out;
    # the decision must be the one an independent scoring of both models on it gives
    ctx.clock.set(NOW.replace(minute=30))  # type: ignore[attr-defined]
    v3 = train_all(ctx, end=END, days=90).versions["koto"]
    start = END - pd.Timedelta(days=90)
    hourly, rain, _ = load_river(ctx, cat.river("koto"), start, END)
    evaluate = holdout_evaluator(cat.river("koto"), hourly, vintages=rain, start=start, end=END)
    a, b, _ = registry.compare_backtests(
        evaluate(registry.load_version(models, "koto", v3.version)[1]),
        evaluate(registry.load_version(models, "koto", v2.version)[1]))
    assert a is not None and b is not None
    if a <= b:
        msg = promote_river(ctx, cat.river("koto"), v3.version, end=END, days=90)
        assert "re-scored" in msg and f"{a:.3f} m vs champion {b:.3f} m" in msg
        assert champions.champion(ctx, "koto") == v3.version
    else:
        with pytest.raises(RegistryError, match=rf"re-scored.*{a:.3f} m vs {b:.3f} m"):
            promote_river(ctx, cat.river("koto"), v3.version, end=END, days=90)
        assert champions.champion(ctx, "koto") == v2.version


def test_river_without_data_is_reported(engine: Engine, tmp_path: Path) -> None:
    cat = load_catalogue(ROOT / "config" / "reference_rivers.yaml")
    report = train_all(context(engine, cat, NOW, models_root=tmp_path), end=END, days=30)
    assert set(report.failed) == {"koto"} and not report.versions


def test_pooled_model_chosen_for_a_short_record_and_forecasts(engine: Engine,
                                                              tmp_path: Path) -> None:
    full = load_catalogue(ROOT / "config" / "rivers.yaml")
    cat = Catalogue(name="two rivers", rivers=(full.river("karei"), full.river("kaizo")))
    sim = simulate(cat, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 7, 10, 4, tzinfo=UTC),
                   seed=7)
    obs = sim.observations.drop(columns=["received_at"])
    # kaizo's level gauge was installed 12 days ago: too short for a model of its own
    short = cat.river("kaizo").primary_gauge
    installed = pd.Timestamp(END) - pd.Timedelta(days=12)
    obs = obs[(obs["station_id"] != short) | (obs["time"] >= installed)]
    models, reports = tmp_path / "models", tmp_path / "reports"
    ctx = context(engine, cat, NOW, models_root=models)
    store_observations(ctx, obs, source="simulated")
    run(engine, upsert_rain_vintages, sim.rain_forecasts, now=NOW)
    # without the pool kaizo cannot be trained
    alone = train_all(ctx, end=END, days=100, rivers=["kaizo"])
    assert "kaizo" in alone.failed and "usable training rows" in alone.failed["kaizo"]
    rep = train_all(ctx, end=END, days=100, pooled=True, short_record_h=60 * 24,
                    report_dir=reports)
    assert not rep.failed and set(rep.versions) == {"karei", "kaizo"}
    assert "karei" not in rep.choices          # a long record keeps its own model
    assert rep.choices["kaizo"].startswith("pooled model") and "own model failed" in rep.choices[
        "kaizo"]
    mk = rep.versions["kaizo"].manifest
    assert mk["pooled"]["rivers"] == ["karei", "kaizo"] and mk["upstream"] == []
    assert mk["pooled"]["choice"] == rep.choices["kaizo"]
    assert mk["pooled"]["attributes"]["area_km2"] == cat.river("kaizo").catchment.area_km2
    assert "attr_threshold_m" in mk["features"] and "pooled" not in rep.versions["karei"].manifest
    # judged on the same folds as an own model would be, with the baselines beside it
    assert mk["backtest"]["spec"]["folds"] == rep.versions["karei"].manifest["backtest"]["spec"][
        "folds"]
    assert set(mk["backtest"]["baselines"]) == set()   # no own run → no baseline forecasts
    assert (reports / "kaizo" / rep.versions["kaizo"].version / "index.html").exists()
    for rid, v in rep.versions.items():
        champions.promote(ctx, rid, v.version)
    _, loaded = registry.load_version(models, "kaizo", rep.versions["kaizo"].version)
    assert isinstance(loaded, PooledLeadModels)
    cycle = run_cycle(ctx, END, rain_product="simulated_forecast")
    fc = cycle.forecasts[cycle.forecasts["river_id"] == "kaizo"]
    assert sorted(fc["horizon_h"]) == [1, 2, 3, 4, 5, 6]
    assert set(fc["model_version"]) == {rep.versions["kaizo"].version}
    assert fc[["q10", "q50", "q90"]].notna().all(axis=None)
    assert (fc["q10"] <= fc["q50"]).all() and (fc["q50"] <= fc["q90"]).all()
    # a pooled manifest without the river's attributes is refused
    mpath = rep.versions["kaizo"].path / "manifest.json"
    m = json.loads(mpath.read_text(encoding="utf-8"))
    del m["pooled"]["attributes"]
    mpath.write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(ManifestError, match="attributes"):
        registry.load_version(models, "kaizo", rep.versions["kaizo"].version)


def test_training_in_two_processes_gives_the_same_models(engine: Engine, tmp_path: Path) -> None:
    full = load_catalogue(ROOT / "config" / "rivers.yaml")
    cat = Catalogue(name="two rivers", rivers=(full.river("karei"), full.river("kaizo")))
    sim = simulate(cat, datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 7, 10, 4, tzinfo=UTC),
                   seed=9)
    ctx = context(engine, cat, NOW, models_root=tmp_path / "serial")
    store_observations(ctx, sim.observations.drop(columns=["received_at"]), source="simulated")
    run(engine, upsert_rain_vintages, sim.rain_forecasts, now=NOW)
    calls: list[str] = []
    serial = train_all(ctx, end=END, days=60, judge=False)
    ctx2 = context(engine, cat, NOW.replace(minute=11), models_root=tmp_path / "parallel")
    parallel = train_all(ctx2, end=END, days=60, judge=False, workers=2,
                         progress=calls.append)
    assert not serial.failed and not parallel.failed and sorted(calls) == ["kaizo", "karei"]
    for rid in ("karei", "kaizo"):
        a, b = serial.versions[rid], parallel.versions[rid]
        assert a.manifest["data_sha256"] == b.manifest["data_sha256"]
        hourly, rain, _ = load_river(ctx, cat.river(rid), END - pd.Timedelta(days=3), END)
        X = build_features(hourly, hourly.index[-5:], future_rain="archive", vintages=rain,
                           catchment_id=rid)
        pa = registry.load_version(tmp_path / "serial", rid, a.version)[1].predict(X)
        pb = registry.load_version(tmp_path / "parallel", rid, b.version)[1].predict(X)
        pd.testing.assert_frame_equal(pa, pb)
    assert set(run(engine, list_model_versions)["version"]) == {
        v.version for r in (serial, parallel) for v in r.versions.values()}
