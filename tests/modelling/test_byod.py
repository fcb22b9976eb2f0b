"""BYOD backtest end to end on the real 厚東川 data, and every bad-input case."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.errors import InputFileError, InsufficientDataError
from forecast.modelling.lgbm import LgbmSettings
from forecast.modelling.metrics import rmse
from forecast.pipeline.backtest_files import OUT_COLUMNS, run_backtest_files

DATA = Path(__file__).parent.parent / "data" / "kotogawa"
CSV = DATA / "kotogawa_jiseiji_level_kotogawa_dam_2023-06_2023-07.csv"
CAT = Path(__file__).parent.parent.parent / "config" / "reference_rivers.yaml"
FAST = LgbmSettings(fallbacks=False)
FOLD = ("fold,train_end,test_start,test_end\n"
        "1,2023-07-06T00:00:00+09:00,2023-07-06T00:00:00+09:00,2023-07-13T00:00:00+09:00\n")


def _convert(out: Path, end: str = "2023-07-20") -> tuple[Path, Path]:
    df = pd.read_csv(CSV, encoding="utf-8-sig")
    t = pd.to_datetime(df["時刻"], format="%Y/%m/%d %H:%M").dt.tz_localize("Asia/Tokyo")
    keep = (t < pd.Timestamp(end, tz="Asia/Tokyo")).to_numpy()
    df, t = df[keep], t[keep]
    iso = t.map(lambda x: x.isoformat())

    def rows(col, sid, zero_missing):
        v = df[col].astype(float)
        return pd.DataFrame({"station_id": sid, "time": iso,
                             "value": v.where(v != 0) if zero_missing else v})

    obs = pd.concat([rows("水位_水位", "jiseiji", True),
                     rows("ダム_全放流量", "kotogawa_dam_release", True)])
    rain = rows("ダム_60分雨量", "kotogawa_dam_rain", False)
    rain.loc[(df["ダム_貯水位"] == 0).to_numpy(), "value"] = np.nan  # dam logger outage
    obs.to_csv(out / "obs.csv", index=False)
    rain.to_csv(out / "rain.csv", index=False)
    return out / "obs.csv", out / "rain.csv"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("byod")
    obs, rain = _convert(d)
    folds = d / "folds.csv"
    folds.write_text(FOLD)
    return d, obs, rain, folds


def test_end_to_end_contract_and_beats_persistence(files):
    d, obs, rain, folds = files
    out = d / "fc.csv"
    res = run_backtest_files(CAT, obs, rain, folds, "none", out, settings=FAST,
                             models=("lgbm", "persistence"))
    fc = pd.read_csv(out)
    assert tuple(fc.columns) == OUT_COLUMNS
    issues = pd.date_range("2023-07-06", "2023-07-12 23:00", freq="h", tz="Asia/Tokyo")
    assert fc["issued_at"].nunique() == len(issues)     # every hour observed in this span
    assert len(fc) == len(issues) * 6
    assert sorted(fc["horizon_h"].unique()) == [1, 2, 3, 4, 5, 6]
    assert fc["issued_at"].str.endswith("+00:00").all()
    iss = pd.to_datetime(fc["issued_at"])
    assert ((pd.to_datetime(fc["valid_at"]) - iss) / pd.Timedelta(hours=1)
            == fc["horizon_h"]).all()
    assert (fc["q10"] <= fc["q50"]).all() and (fc["q50"] <= fc["q90"]).all()
    # skill on the flood (the 07-08..10 rise above 3.80 m), computed here from the raw CSV
    src = pd.read_csv(obs)
    lv = src[src.station_id == "jiseiji"].assign(time=lambda x: pd.to_datetime(x.time, utc=True))
    lv = lv.set_index("time")["value"]
    f3 = fc[fc["horizon_h"] == 3].assign(valid=lambda x: pd.to_datetime(x.valid_at, utc=True),
                                         iss=lambda x: pd.to_datetime(x.issued_at, utc=True))
    o = lv.reindex(f3["valid"]).to_numpy()
    now = lv.reindex(f3["iss"]).to_numpy()
    # the project's flood-event window: valid time within 12 h of an hour at >= 3.80 m
    high = lv[lv >= 3.8].index
    valid = pd.DatetimeIndex(f3["valid"])
    flood = np.array([(abs(high - v) <= pd.Timedelta(hours=12)).any() for v in valid])
    assert flood.sum() > 40
    assert rmse(o[flood], f3["level"].to_numpy()[flood]) < rmse(o[flood], now[flood])
    assert res.failures == {}
    sc = res.scores.set_index(["model", "horizon_h"])
    assert sc.loc[("lgbm", 3), "skill_event"] > 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _err(files, **over):
    _, obs, rain, folds = files
    args = {"obs": obs, "rain": rain, "folds": folds, "mode": "none", "cat": CAT}
    args.update(over)
    return run_backtest_files(args["cat"], args["obs"], args["rain"], args["folds"],
                              args["mode"], None, settings=FAST, models=("persistence",))


SMALL = "station_id,time,value\njiseiji,2023-07-01T00:00:00+09:00,3.0\n"


@pytest.mark.parametrize(("text", "row", "column", "words"), [
    ("station,time,value\njiseiji,2023-07-01T00:00:00+09:00,3.0\n", None, "station_id",
     "missing column"),
    ("station_id,when,value\n", None, "time", "missing column"),
    (SMALL + "jiseiji,2023-07-01 01:00,3.1\n", 3, "time", "UTC offset"),
    (SMALL + "jiseiji,yesterday+09:00,3.1\n", 3, "time", "ISO 8601"),
    (SMALL + "jiseiji,2023-07-01T00:00:00+09:00,3.2\n", 3, "", "duplicate"),
    (SMALL + "nowhere,2023-07-01T01:00:00+09:00,3.2\n", 3, "station_id", "not in the catalogue"),
    (SMALL + "jiseiji,2023-07-01T01:00:00+09:00,high\n", 3, "value", "not a number"),
])
def test_bad_observation_files(files, tmp_path, text, row, column, words):
    with pytest.raises(InputFileError, match=words) as exc:
        _err(files, obs=_write(tmp_path / "o.csv", text))
    assert exc.value.file.endswith("o.csv")
    assert exc.value.row == row
    assert exc.value.column == column


def test_rain_station_from_obs_is_unknown(files, tmp_path):
    with pytest.raises(InputFileError, match="not in the catalogue") as exc:
        _err(files, rain=_write(tmp_path / "r.csv", SMALL))
    assert exc.value.row == 2


@pytest.mark.parametrize(("text", "words"), [
    ("fold,train_end,test_start\n", "missing column"),
    ("fold,train_end,test_start,test_end\n1,2023-07-06T00:00+09:00,2023-07-05T00:00+09:00,"
     "2023-07-07T00:00+09:00\n", "train_end <= test_start"),
    (FOLD + "2,2023-07-06T00:00:00+09:00,2023-07-08T00:00:00+09:00,2023-07-09T00:00:00+09:00\n",
     "overlaps"),
    ("fold,train_end,test_start,test_end\n1,2023-07-06T00:00:00+09:00,"
     "2023-09-01T00:00:00+09:00,2023-09-02T00:00:00+09:00\n", "no observed level"),
])
def test_bad_folds(files, tmp_path, text, words):
    with pytest.raises(InputFileError, match=words) as exc:
        _err(files, folds=_write(tmp_path / "f.csv", text))
    assert exc.value.file.endswith("f.csv")


def test_archive_mode_needs_rain_forecasts(files):
    with pytest.raises(InputFileError, match="rain-forecasts"):
        _err(files, mode="archive")


def _two_river_catalogue(tmp_path: Path) -> Path:
    text = CAT.read_text(encoding="utf-8")
    body = text[text.index("  - id: koto"):]
    second = (body.replace("id: koto", "id: koto_b").replace('"jiseiji"', '"jiseiji_b"')
              .replace('"kotogawa_dam_release"', '"rel_b"').replace('"kotogawa_dam_rain"',
                                                                     '"rain_b"'))
    return _write(tmp_path / "cat.yaml", text + second)


def test_multi_river_reports_failure_and_goes_on(files, tmp_path):
    _, obs, rain, folds = files
    cat = _two_river_catalogue(tmp_path)
    src = pd.read_csv(obs)
    short = src[src.station_id == "jiseiji"].iloc[-200:].assign(station_id="jiseiji_b")
    obs2 = tmp_path / "obs2.csv"
    pd.concat([src, short]).to_csv(obs2, index=False)
    res = run_backtest_files(cat, obs2, rain, folds, "none", None, settings=FAST,
                             models=("lgbm",))
    assert "koto_b" in res.failures and "koto" not in res.failures
    assert set(res.forecasts["river_id"]) == {"koto"}


def test_single_river_with_too_little_data_raises(files, tmp_path):
    _, obs, rain, _ = files
    src = pd.read_csv(obs)
    lv = src[src.station_id == "jiseiji"]
    t = pd.to_datetime(lv["time"], utc=True)
    short = lv[(t >= pd.Timestamp("2023-07-03", tz="UTC")).to_numpy()]
    o = tmp_path / "short.csv"
    short.to_csv(o, index=False)
    with pytest.raises(InsufficientDataError, match="koto"):
        run_backtest_files(CAT, o, rain, files[3], "none", None, settings=FAST,
                           models=("lgbm",))


def test_archive_mode_reads_rain_forecasts(files, tmp_path):
    from forecast.catalogue import load_catalogue
    from forecast.pipeline.backtest_files import read_rain_forecasts

    _, obs, rain, folds = files
    rows = ["station_id,issued_at,valid_at,value"]
    for k in range(0, 48):
        iss = pd.Timestamp("2023-07-06T00:00:00+09:00") + pd.Timedelta(hours=k)
        for h in range(1, 7):
            rows.append(f"kotogawa_dam_rain,{iss.isoformat()},"
                        f"{(iss + pd.Timedelta(hours=h)).isoformat()},{h}.5")
    rf = _write(tmp_path / "rf.csv", "\n".join(rows) + "\n")
    vint = read_rain_forecasts(rf, load_catalogue(CAT))
    assert set(vint["catchment_id"]) == {"koto"} and len(vint) == 48 * 6
    assert str(vint["issued_at"].dt.tz) == "UTC"
    res = run_backtest_files(CAT, obs, rain, folds, "archive", None, rain_forecasts_path=rf,
                             settings=FAST, models=("persistence", "sarimax"))
    sar = res.all_forecasts[res.all_forecasts["model"] == "sarimax"]
    assert sar["level"].notna().all()
    bad = _write(tmp_path / "rf_bad.csv", rows[0] + "\nkotogawa_dam_rain,2023-07-06T00:00,"
                 "2023-07-06T01:00:00+09:00,1\n")
    with pytest.raises(InputFileError, match="offset") as exc:
        read_rain_forecasts(bad, load_catalogue(CAT))
    assert exc.value.row == 2


def test_cli_backtest_writes_forecasts_and_html_reports(files, tmp_path, capsys):
    from forecast.cli import main

    _d, obs, rain, folds = files
    out, reports = tmp_path / "fc.csv", tmp_path / "reports"
    assert main(["backtest", "--catalogue", str(CAT), "--observations", str(obs), "--rain",
                 str(rain), "--folds", str(folds), "--future-rain", "perfect", "--out", str(out),
                 "--models", "lgbm,persistence", "--report-dir", str(reports)]) == 0
    assert tuple(pd.read_csv(out).columns) == OUT_COLUMNS
    page = reports / "koto" / "index.html"
    assert f"koto: report {page}" in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    # the test week holds the 07-08..10 rise above 3.80 m: at least one event hydrograph
    events = sorted(page.parent.glob("event_*.png"))
    assert events and all(e.name in html for e in events)
    assert "persistence" in html and "SIMULATED" not in html
    scores = pd.read_csv(page.parent / "scores.csv")
    assert set(scores["model"]) == {"lgbm", "persistence"}
    assert set(scores["horizon_h"]) == {1, 2, 3, 4, 5, 6}
