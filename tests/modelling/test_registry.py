"""Model registry: round trip, champion–challenger promotion, rollback, refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from forecast.errors import ManifestError, RegistryError
from forecast.features import build_features, targets
from forecast.modelling import registry
from forecast.modelling.lgbm import LeadModels, LgbmSettings

from .synth import synthetic_hourly

AT = datetime(2024, 7, 1, tzinfo=UTC)
SPEC = {"folds": [["2024-05-01", "2024-06-01"]], "future_rain": "none"}


@pytest.fixture(scope="module")
def trained() -> tuple[LeadModels, str]:
    hourly = synthetic_hourly(1500, seed=2)
    times = hourly.index[48:-6]
    X = build_features(hourly, times)
    lm = LeadModels.train(X, targets(hourly, times), high_water_m=2.0,
                          settings=LgbmSettings(num_rounds=30, fallbacks=False))
    return lm, registry.data_hash(X)


def _reg(root: Path, trained, rmse: float, second: int, spec=SPEC) -> registry.Version:  # type: ignore[no-untyped-def]
    lm, sha = trained
    return registry.register(
        root, "koto", lm, created_at=AT.replace(second=second), window=(AT, AT),
        data_sha256=sha, backtest={"spec": spec, "rmse_event": {str(h): rmse for h in range(1, 7)}})


def test_round_trip_and_listing(tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    v = _reg(tmp_path, trained, 0.5, 1)
    got, models = registry.load_version(tmp_path, "koto", v.version)
    assert got.manifest["features"] == list(trained[0].features)
    assert got.manifest["data_sha256"] == trained[1]
    hourly = synthetic_hourly(300, seed=9)
    X = build_features(hourly, hourly.index[60:80])
    pd.testing.assert_frame_equal(models.predict(X), trained[0].predict(X))
    assert got.event_rmse == pytest.approx(0.5)
    assert registry.load_champion(tmp_path, "koto") is None
    listing = registry.list_versions(tmp_path)
    assert listing["version"].tolist() == [v.version] and not listing["champion"].any()


def test_promotion_is_champion_challenger_and_rollback_restores(tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    good = _reg(tmp_path, trained, 0.50, 1)
    worse = _reg(tmp_path, trained, 0.60, 2)
    better = _reg(tmp_path, trained, 0.40, 3)
    other = _reg(tmp_path, trained, 0.10, 4, spec={"folds": "different"})
    registry.promote(tmp_path, "koto", good.version, at=AT)
    with pytest.raises(RegistryError, match="worse"):
        registry.promote(tmp_path, "koto", worse.version, at=AT)
    with pytest.raises(RegistryError, match="different backtests"):
        registry.promote(tmp_path, "koto", other.version, at=AT)
    assert registry.champion(tmp_path, "koto") == good.version
    registry.promote(tmp_path, "koto", better.version, at=AT)
    assert registry.load_champion(tmp_path, "koto")[0] == better.version  # type: ignore[index]
    assert registry.rollback(tmp_path, "koto", at=AT) == good.version
    assert registry.champion(tmp_path, "koto") == good.version
    registry.promote(tmp_path, "koto", worse.version, at=AT, force=True)
    assert registry.champion(tmp_path, "koto") == worse.version


def test_rollback_without_history_is_refused(tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    v = _reg(tmp_path, trained, 0.5, 1)
    registry.promote(tmp_path, "koto", v.version, at=AT)
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(tmp_path, "koto", at=AT)


@pytest.mark.parametrize("damage", ["truncate", "format", "features", "package"])
def test_damaged_or_mismatching_manifest_is_refused(tmp_path: Path, trained, damage: str) -> None:  # type: ignore[no-untyped-def]
    v = _reg(tmp_path, trained, 0.5, 1)
    mf = v.path / "manifest.json"
    m = json.loads(mf.read_text())
    if damage == "truncate":
        mf.write_text(mf.read_text()[:40])
    else:
        if damage == "format":
            m["manifest_format"] = 99
        elif damage == "features":
            m["features"] = m["features"][:-1]
        else:
            m["package_version"] = "9.0.0"
        mf.write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="koto") as info:
        registry.load_version(tmp_path, "koto", v.version)
    assert str(v.path) in str(info.value)
