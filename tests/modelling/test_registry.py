"""Model registry (artifacts) and champions (``pipeline.models``, the one record in the
database): round trip, champion–challenger promotion, rollback, refusals, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import context, run
from sqlalchemy.engine import Engine

import forecast
from forecast.catalogue import load_catalogue
from forecast.errors import ManifestError, RegistryError
from forecast.features import build_features, targets
from forecast.modelling import registry
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.pipeline import models
from forecast.pipeline.context import Context
from forecast.storage.audit import read_audit

from .synth import synthetic_hourly

AT = datetime(2024, 7, 1, tzinfo=UTC)
SPEC = {"folds": [["2024-05-01", "2024-06-01"]], "future_rain": "none"}
FAST = LgbmSettings(num_rounds=30, fallbacks=False)
CAT = Path(__file__).resolve().parents[2] / "config" / "reference_rivers.yaml"


@pytest.fixture
def ctx(engine: Engine, tmp_path: Path) -> Context:
    return context(engine, load_catalogue(CAT), AT, models_root=tmp_path)


@pytest.fixture(scope="module")
def trained() -> tuple[LeadModels, str]:
    hourly = synthetic_hourly(1500, seed=2)
    times = hourly.index[48:-6]
    X = build_features(hourly, times)
    lm = LeadModels.train(X, targets(hourly, times), high_water_m=2.0, settings=FAST)
    return lm, registry.data_hash(X)


def _reg(root: Path, trained, rmse: float, second: int, spec=SPEC, **kw) -> registry.Version:  # type: ignore[no-untyped-def]
    lm, sha = trained
    return registry.register(
        root, "koto", lm, created_at=AT.replace(second=second), window=(AT, AT),
        data_sha256=sha, backtest={"spec": spec, "rmse_event": {str(h): rmse for h in range(1, 7)}},
        future_rain="none", upstream=["dam"], **kw)


def test_round_trip_manifest_and_listing(tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    v = _reg(tmp_path, trained, 0.5, 1)
    got, models = registry.load_version(tmp_path, "koto", v.version)
    m = got.manifest
    assert m["features"] == list(trained[0].features)
    assert m["data_sha256"] == trained[1] and v.version.endswith(trained[1][:8])
    assert m["parameters"]["num_rounds"] == 30 and m["package_version"] == forecast.__version__
    assert m["model_format"] == registry.model_format() and "status" not in m
    assert m["git_commit"] == "unknown" or len(m["git_commit"]) == 40
    hourly = synthetic_hourly(300, seed=9)
    X = build_features(hourly, hourly.index[60:80])
    pd.testing.assert_frame_equal(models.predict(X), trained[0].predict(X))
    assert got.event_rmse == pytest.approx(0.5)
    listing = registry.list_versions(tmp_path)
    assert listing["version"].tolist() == [v.version] and "champion" not in listing
    assert not [p for p in (tmp_path / "koto").iterdir() if p.name.startswith(".")]
    with pytest.raises(RegistryError, match="already exists"):
        _reg(tmp_path, trained, 0.5, 1)


def test_data_hash_sees_values_index_and_columns() -> None:
    df = synthetic_hourly(50, seed=1)
    base = registry.data_hash(df)
    assert registry.data_hash(df.copy()) == base
    changed = df.copy()
    changed.iloc[10, 0] += 1e-6
    assert registry.data_hash(changed) != base
    assert registry.data_hash(df.rename(columns={"rain_mm": "rain"})) != base
    assert registry.data_hash(df.set_axis(df.index + pd.Timedelta(hours=1))) != base


def test_promotion_is_champion_challenger_and_rollback_restores(
        ctx: Context, tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    good = _reg(tmp_path, trained, 0.50, 1)
    worse = _reg(tmp_path, trained, 0.60, 2)
    better = _reg(tmp_path, trained, 0.40, 3)
    other = _reg(tmp_path, trained, 0.10, 4, spec={"folds": "different"})
    models.promote(ctx, "koto", good.version)
    with pytest.raises(RegistryError, match=r"worse.*0\.600 m vs 0\.500 m"):
        models.promote(ctx, "koto", worse.version)
    with pytest.raises(RegistryError, match="different backtests"):
        models.promote(ctx, "koto", other.version)
    assert models.champion(ctx, "koto") == good.version
    models.promote(ctx, "koto", better.version)
    assert models.champion_models(ctx)("koto")[0] == better.version  # type: ignore[index]
    listing = models.list_versions(ctx, "koto").set_index("version")["champion"]
    assert listing.to_dict() == {good.version: False, worse.version: False,
                                 better.version: True, other.version: False}
    assert models.rollback(ctx, "koto") == good.version
    assert models.champion(ctx, "koto") == good.version
    models.promote(ctx, "koto", worse.version, force=True)
    assert models.champion(ctx, "koto") == worse.version


def test_rollback_walks_back_the_champion_stack(ctx: Context, tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    a, b, c = (_reg(tmp_path, trained, r, s) for r, s in ((0.5, 1), (0.4, 2), (0.3, 3)))
    for v in (a, b, c):
        models.promote(ctx, "koto", v.version)
    assert models.rollback(ctx, "koto") == b.version
    assert models.rollback(ctx, "koto") == a.version   # not back to c
    with pytest.raises(RegistryError, match="no earlier champion"):
        models.rollback(ctx, "koto")
    assert models.champion(ctx, "koto") == a.version


def test_rollback_without_history_is_refused(ctx: Context, tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    v = _reg(tmp_path, trained, 0.5, 1)
    models.promote(ctx, "koto", v.version)
    with pytest.raises(RegistryError, match="no earlier champion"):
        models.rollback(ctx, "koto")


def test_different_backtests_are_rescored_on_one_holdout(
        ctx: Context, tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    """The evaluate callable scores both real models; a model trained on noise loses."""
    hourly = synthetic_hourly(1500, seed=2)
    times = hourly.index[48:-6]
    X = build_features(hourly, times)
    noise = targets(hourly, times) * 0 + np.random.default_rng(0).normal(0, 0.5, (len(times), 6))
    bad = LeadModels.train(X, noise, high_water_m=2.0, settings=FAST)
    held = synthetic_hourly(800, seed=11)
    Xh = build_features(held, held.index[48:-6])
    truth = targets(held, held.index[48:-6])

    def evaluate(m: LeadModels):  # naive RMSE per lead of the point forecast
        p = m.predict(Xh)
        out = {}
        for h in range(1, 7):
            f = p.loc[p["horizon_h"] == h, "level"].to_numpy() - Xh["level_m"].to_numpy()
            out[str(h)] = float(np.sqrt(np.nanmean((f - truth[f"dh_{h}h"].to_numpy()) ** 2)))
        return {"rmse_event": out}

    good_v = _reg(tmp_path, trained, 0.5, 1)
    bad_v = registry.register(tmp_path, "koto", bad, created_at=AT.replace(second=2),
                              window=(AT, AT), data_sha256=registry.data_hash(noise),
                              backtest={"spec": {"other": 1}, "rmse_event": {}},
                              future_rain="none", upstream=["dam"])
    models.promote(ctx, "koto", good_v.version)
    with pytest.raises(RegistryError, match="re-scored"):
        models.promote(ctx, "koto", bad_v.version, evaluate=evaluate)
    models.promote(ctx, "koto", bad_v.version, force=True)
    msg = models.promote(ctx, "koto", good_v.version, evaluate=evaluate)
    assert "re-scored" in msg and models.champion(ctx, "koto") == good_v.version


@pytest.mark.parametrize("damage", ["truncate", "format", "model_format", "features",
                                    "upstream", "package", "moved"])
def test_damaged_or_mismatching_manifest_is_refused(tmp_path: Path, trained, damage: str) -> None:  # type: ignore[no-untyped-def]
    v = _reg(tmp_path, trained, 0.5, 1)
    mf = v.path / "manifest.json"
    m = json.loads(mf.read_text())
    if damage == "truncate":
        mf.write_text(mf.read_text()[:40])
    else:
        if damage == "format":
            m["manifest_format"] = 99
        elif damage == "model_format":
            m["model_format"] = 99
        elif damage == "features":
            m["features"] = m["features"][:-1]
        elif damage == "upstream":   # the code would build other features for this river
            m["upstream"] = []
        elif damage == "moved":
            m["version"] = "elsewhere"
        else:
            m["package_version"] = "9.0.0"
        mf.write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="koto") as info:
        registry.load_version(tmp_path, "koto", v.version)
    assert str(v.path) in str(info.value)
    if damage != "moved":
        assert "forecast train --river koto" in str(info.value)
    assert registry.list_versions(tmp_path)["status"].tolist() == (
        ["damaged"] if damage == "truncate" else ["ok"])


def test_caller_feature_list_is_checked(tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    v = _reg(tmp_path, trained, 0.5, 1)
    feats = list(trained[0].features)
    registry.load_version(tmp_path, "koto", v.version, features=feats)
    with pytest.raises(ManifestError, match="feature list differs"):
        registry.load_version(tmp_path, "koto", v.version, features=[*feats, "up_new"])


def test_one_truth_for_champions_with_an_audit_row_each(ctx: Context, engine: Engine,
                                                          trained) -> None:  # type: ignore[no-untyped-def]
    """Registration, promotion and rollback each commit with their audit row; the listing,
    the champion and the cycle's provider give the same answer."""
    lm, sha = trained
    backtest = {"spec": SPEC, "rmse_event": {str(h): 0.5 for h in range(1, 7)}}
    a = models.register(ctx, "koto", lm, window=(AT, AT), data_sha256=sha, backtest=backtest,
                        future_rain="none", upstream=["dam"], source="stored", actor="h1")
    ctx.clock.advance(pd.Timedelta(seconds=1))  # type: ignore[attr-defined]
    b = models.register(ctx, "koto", lm, window=(AT, AT), data_sha256=sha, backtest=backtest,
                        future_rain="none", upstream=["dam"], source="stored", actor="h1")
    models.promote(ctx, "koto", a.version, actor="hydrologist")
    models.promote(ctx, "koto", b.version, actor="hydrologist")
    assert models.rollback(ctx, "koto", actor="duty") == a.version
    for answer in (models.champion(ctx, "koto"), models.champion_models(ctx)("koto")[0],  # type: ignore[index]
                   models.list_versions(ctx, "koto").set_index("version")["champion"].idxmax()):
        assert answer == a.version
    audit = run(engine, read_audit)
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("model.rollback", "duty"), ("model.promote", "hydrologist"),
        ("model.promote", "hydrologist"), ("model.register", "h1"), ("model.register", "h1")]
    assert audit[1]["details"]["previous"] == a.version
    # a version written before the database was in use is recorded when first promoted
    c = _reg(ctx.models_root, trained, 0.3, 30)
    models.promote(ctx, "koto", c.version)
    assert models.list_versions(ctx, "koto").set_index("version")["champion"][c.version]
    assert not (ctx.models_root / "koto" / "champion.json").exists()
