"""Real-data benchmark converters (benchmarks/realdata) on tiny excerpts, and the peer fast paths.

The 厚東川 excerpt comes from tests/data/kotogawa; the USGS, BOM and EA excerpts are a few
rows written here in the sources' own layouts (headers copied from the shared READMEs).
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is not installed

import itertools

from benchmarks.realdata import datasets, peers
from forecast.catalogue import load_catalogue
from forecast.pipeline.backtest_files import read_folds, read_series

KOTO = Path(__file__).parent / "data" / "kotogawa"
KOTO_CSV = "kotogawa_jiseiji_level_kotogawa_dam_2023-06_2023-07.csv"


@pytest.fixture(scope="module")
def koto(tmp_path_factory):
    data = tmp_path_factory.mktemp("real")
    (data / "kotogawa_yamaguchi").mkdir()
    shutil.copy(KOTO / KOTO_CSV, data / "kotogawa_yamaguchi" / KOTO_CSV)
    return datasets.koto(data, tmp_path_factory.mktemp("out"))


def test_koto_files_follow_the_contract(koto):
    raw = pd.read_csv(KOTO / KOTO_CSV, encoding="utf-8-sig")
    cat = load_catalogue(koto.catalogue)
    river = cat.rivers[0]
    assert [v for _, v in river.thresholds.ladder()] == [3.80, 5.00, 5.10, 5.50]
    assert river.upstream_gauges == ("kotogawa_dam_release",)
    obs = read_series(koto.obs, {"jiseiji", "kotogawa_dam_release"})
    stage = obs[obs["station_id"] == "jiseiji"].set_index("time")["value"]
    assert len(stage) == len(raw)
    # zeros are missing, everything else copied; JST 00:10 is 15:10 UTC the day before
    assert stage.isna().sum() == (raw["水位_水位"] == 0).sum()
    assert stage.index[0] == pd.Timestamp("2023-05-31T15:10", tz="UTC")
    assert pd.read_csv(koto.obs)["time"].iloc[0].endswith("+09:00")
    peak = stage.idxmax()
    assert stage.max() == raw["水位_水位"].max()
    assert peak.tz_convert("Asia/Tokyo").strftime("%m-%d %H:%M") == "07-01 04:30"
    rain = read_series(koto.rain, {"kotogawa_dam_rain"})
    assert rain["value"].isna().sum() == (raw["ダム_貯水位"] == 0).sum()
    # the variant without upstream inputs only carries the primary gauge
    assert set(pd.read_csv(koto.obs_no_upstream)["station_id"]) == {"jiseiji"}
    assert load_catalogue(koto.catalogue_no_upstream).rivers[0].upstream_gauges == ()


def test_koto_folds_put_the_flood_in_a_test_span(koto):
    folds = read_folds(koto.folds)
    flood = pd.Timestamp("2023-07-01T04:30+09:00")
    assert any(f.test_start <= flood < f.test_end for f in folds)
    assert all(f.train_end <= f.test_start for f in folds)
    starts = [f.test_start for f in folds]
    assert starts == sorted(starts)


@pytest.mark.parametrize("values", [np.arange(1000.0), np.r_[np.zeros(995), np.ones(5)]])
def test_quantile_thresholds_increase(values):
    th = datasets.quantile_thresholds(pd.Series(values))
    ladder = [th[k] for k in ("standby_m", "caution_m", "evacuation_m", "danger_m")]
    assert all(b > a for a, b in itertools.pairwise(ladder))
    assert th["provisional"] is True
    assert ladder[0] == pytest.approx(np.quantile(values, 0.95), abs=1e-3)


def test_usgs_feet_to_metres_and_edt(tmp_path):
    d = tmp_path / "usgs_01037000_maine"
    d.mkdir()
    rows = [",agency_cd,site_no,datetime,tz_cd,cfs,65564_00060_cd,65565_00065,65565_00065_cd,"
            "date,precip,temp"]
    rows += [f"{i},USGS,01037000,2014-05-01 {i:02d}:00:00,EDT,449,A,{4 + i / 10},A,"
             f"2014-05-01 {i:02d}:00:00,{i % 3},3.9" for i in range(1, 10)]
    (d / "keag_small.csv").write_text("\n".join(rows) + "\n")
    ds = datasets.usgs(tmp_path, tmp_path / "out")
    obs = read_series(ds.obs, {"usgs_01037000"})
    assert obs["value"].iloc[0] == pytest.approx(4.1 * 0.3048, abs=1e-4)
    assert obs["time"].iloc[0] == pd.Timestamp("2014-05-01T05:00", tz="UTC")
    rain = read_series(ds.rain, {"usgs_asos"})
    assert rain["value"].tolist() == [i % 3 for i in range(1, 10)]


def test_bom_day_first_dates_and_streamflow(tmp_path):
    d = tmp_path / "bom_hrs_australia"
    d.mkdir()
    lines = [",prec,qt,pet"] + [f"{day}/02/2012 {h}:00,{h * 0.5},{10 + h},0.01"
                                for day in (1, 2) for h in range(24)]
    (d / "GR4H_climatedata_303203_hr.csv").write_text("\n".join(lines) + "\n")
    ds = datasets.bom(tmp_path, tmp_path / "out", "303203", (2012,))
    obs = read_series(ds.obs, {"bom_303203"})
    assert obs["time"].iloc[24] == pd.Timestamp("2012-02-01T14:00", tz="UTC")  # 2/02 0:00 AEST
    assert obs["value"].iloc[:24].tolist() == [10.0 + h for h in range(24)]
    assert [f.fold for f in read_folds(ds.folds)] == ["2012"]


def test_calder_upstream_gauges_and_rain_weights(tmp_path):
    d = tmp_path / "ea_calder_uk"
    d.mkdir()
    head = '"measure","dateTime","date","value","completeness","quality","qcode"'
    for fname in (*datasets.CALDER_LEVELS.values(), *datasets.CALDER_RAIN.values()):
        rows = [f'"m","2025-08-16T00:{m:02d}:00","2025-08-16","{m / 100}","","Unchecked",""'
                for m in (0, 15, 30, 45)]
        (d / fname).write_text("\n".join([head, *rows]) + "\n")
    ds = datasets.calder(tmp_path, tmp_path / "out")
    river = load_catalogue(ds.catalogue).rivers[0]
    assert river.primary_gauge == "mytholmroyd" and len(river.upstream_gauges) == 4
    assert sum(g.weight for g in river.rain_gauges) == pytest.approx(1.0)
    obs = read_series(ds.obs, {river.primary_gauge, *river.upstream_gauges})
    assert len(obs) == 20 and obs["time"].iloc[1] == pd.Timestamp("2025-08-16T00:15", tz="UTC")


def _synthetic_hourly(n: int = 700) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    idx = pd.date_range("2023-01-01", periods=n, freq="h", tz="UTC")
    rain = rng.gamma(0.3, 4.0, n) * (rng.random(n) < 0.2)
    level = 1.0 + np.convolve(rain, np.exp(-np.arange(24) / 6.0) / 10.0)[:n]
    return pd.DataFrame({"level_m": level, "rain_mm": rain}, index=idx)


@pytest.mark.parametrize("config,mode", [("strong", "perfect"), ("doc", "none")])
def test_skforecast_fast_path_equals_predict_with_last_window(config, mode):
    level, exog = peers.peer_inputs(_synthetic_hourly(), config, mode)
    f = peers.skforecast_fit(level, exog, level.index[500], config)
    issue = level.index[[510, 560, 650]]
    fast = peers.skforecast_predict_all(f, level, exog, issue)
    assert peers.check_skforecast(f, level, exog, issue, fast, n=3) < 1e-9


def test_mlforecast_batch_equals_one_series_at_a_time():
    level, exog = peers.peer_inputs(_synthetic_hourly(), "strong", "perfect")
    te = level.index[500]
    issue = level.index[[520, 600]]
    both = peers.mlforecast_fold(level, exog, te, issue, "strong")
    for i, t in enumerate(issue):
        one = peers.mlforecast_fold(level, exog, te, pd.DatetimeIndex([t]), "strong")
        np.testing.assert_allclose(one[0], both[i], rtol=0, atol=1e-9)
    # forecasts start from the last observed level (differenced target)
    assert np.abs(both[:, 0] - level.loc[issue].to_numpy()).max() < 0.5
