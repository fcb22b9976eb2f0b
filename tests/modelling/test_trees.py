"""Loaded models predict through LightGBM's C library (``modelling.trees.TextBooster``):
bit-for-bit what ``lightgbm.Booster`` predicts; parsed when first used; a booster file that
changed since it was saved is refused; champions stay loaded between cycles."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from helpers import context

from forecast.catalogue import load_catalogue
from forecast.errors import ManifestError, ModelError
from forecast.features import build_features, targets
from forecast.modelling import registry
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.modelling.persist import load, save
from forecast.modelling.trees import TextBooster, lightgbm_version
from forecast.pipeline import models

from .synth import synthetic_hourly

AT = datetime(2024, 7, 1, tzinfo=UTC)
CAT = Path(__file__).resolve().parents[2] / "config" / "reference_rivers.yaml"


@pytest.fixture(scope="module")
def trained() -> tuple[LeadModels, pd.DataFrame]:
    h = synthetic_hourly(1200, seed=5)
    X = build_features(h, h.index, future_rain="perfect")
    tr = X.index < h.index[1000]
    lm = LeadModels.train(X[tr], targets(h, h.index)[tr], high_water_m=2.0,
                          settings=LgbmSettings(leads=(1, 2, 6), num_rounds=60))
    return lm, X[~tr]


def test_text_booster_predicts_exactly_like_lightgbm(trained) -> None:  # type: ignore[no-untyped-def]
    lm = trained[0]
    rng = np.random.default_rng(1)
    for key, booster in lm.boosters.items():
        assert isinstance(booster, lgb.Booster)   # trained in this process
        text = booster.model_to_string()
        mine = TextBooster(text)
        n = mine.num_feature()
        data = rng.normal(size=(40, n))
        data[rng.random(data.shape) < 0.2] = np.nan   # missing inputs go the trained way
        want = booster.predict(data, num_iteration=booster.best_iteration or None,
                               num_threads=1)
        again = lgb.Booster(model_str=text)
        for got in (mine.predict(data, num_iteration=-1, num_threads=1),
                    mine.predict(np.asfortranarray(data), num_threads=1),
                    pickle.loads(pickle.dumps(mine)).predict(data, num_threads=1),
                    again.predict(data, num_iteration=again.best_iteration or None,
                                  num_threads=1)):
            assert np.array_equal(got, want), key
        assert np.array_equal(mine.predict(data[:1], num_threads=1), want[:1])
    assert lightgbm_version() == lgb.__version__


def test_loaded_models_match_and_lazy_ones_parse_on_first_use(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lm, X = trained
    save(lm, tmp_path / "m")
    want = lm.predict(X)
    eager, lazy = load(tmp_path / "m"), load(tmp_path / "m", lazy=True)
    assert all("not parsed" not in repr(b) for b in eager.boosters.values())
    assert all("not parsed" in repr(b) for b in lazy.boosters.values())
    pd.testing.assert_frame_equal(eager.predict(X), want)
    full = X.dropna()
    pd.testing.assert_frame_equal(lazy.predict(full), lm.predict(full))
    parsed = {k for k, b in lazy.boosters.items() if "not parsed" not in repr(b)}
    assert parsed == {k for k in lazy.boosters if "/full/" in k}   # only the variant used
    pd.testing.assert_frame_equal(lazy.predict(X), want)


def test_a_booster_file_changed_after_saving_is_refused(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lm, X = trained
    save(lm, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    f = tmp_path / "m" / meta["files"]["h1/full/l2"]
    f.write_text(f.read_text().replace("leaf_value=", "leaf_value=1", 1))  # still parses
    with pytest.raises(ManifestError, match="sha256"):
        load(tmp_path / "m")
    lazy = load(tmp_path / "m", lazy=True)   # read only when first used: refused then
    with pytest.raises(ManifestError, match="sha256"):
        lazy.predict(X.dropna())
    f.write_text("not a model")
    meta.pop("sha256")   # saved before hashes were recorded: LightGBM's parse refuses it
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ManifestError, match="cannot load model"):
        load(tmp_path / "m")
    lazy = load(tmp_path / "m", lazy=True)
    with pytest.raises(ModelError, match="LightGBM loading"):
        lazy.predict(X.dropna())


def test_champions_stay_loaded_between_cycles(engine, trained, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lm, _ = trained
    cat = load_catalogue(CAT)
    river = cat.rivers[0].id
    ctx = context(engine, cat, AT, models_root=tmp_path)
    v = models.register(ctx, river, lm, window=(AT, AT), data_sha256="ab" * 32, backtest={},
                        future_rain="perfect", upstream=["dam"], source="test", actor="t")
    models.promote(ctx, river, v.version, force=True)
    models.forget_loaded_models()
    loads = []
    real = registry.load_version
    monkeypatch.setattr(registry, "load_version",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    first = models.champion_models(ctx)(river)
    second = models.champion_models(ctx)(river)
    assert first is not None and second is not None and first[1] is second[1]
    assert len(loads) == 1
    manifest = v.path / "manifest.json"   # a changed file is loaded (and checked) again
    manifest.write_text(manifest.read_text() + "\n")
    third = models.champion_models(ctx)(river)
    assert third is not None and third[1] is not first[1] and len(loads) == 2
    assert models.champion_models(ctx)("nowhere") is None
    models.forget_loaded_models()

