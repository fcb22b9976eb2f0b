"""The command line, run in-process through ``forecast.cli.main`` on a temporary SQLite file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forecast.cli import main
from forecast.settings import load_settings
from forecast.storage.engine import create_engine
from forecast.storage.observations import read_observations
from forecast.storage.repository import read_rain_vintages

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FORECAST_CATALOGUE", str(ROOT / "config" / "reference_rivers.yaml"))
    return tmp_path


def test_catalogue_check_real_catalogues(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalogue", "check", str(ROOT / "config" / "rivers.yaml")]) == 0
    out = capsys.readouterr().out
    assert "38 rivers" in out and "provisional" in out


def test_catalogue_check_refuses_bad_file(env: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "config" / "reference_rivers.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace("standby_m: 3.80", "standby_m: 5.20"), encoding="utf-8")
    assert main(["catalogue", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "river koto" in err and "thresholds" in err and str(bad) in err


def test_init_db_simulate_and_import(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init-db"]) == 0
    assert main(["simulate", "--start", "2023-06-01", "--end", "2023-06-15", "--seed", "3"]) == 0
    engine = create_engine(load_settings().db_url)
    obs = read_observations(engine, station_ids=["jiseiji"])
    assert obs["time"].min() >= pd.Timestamp("2023-06-01", tz="UTC")
    assert obs["time"].max() < pd.Timestamp("2023-06-15", tz="UTC")
    assert set(obs["source"]) == {"simulated"}
    assert not read_rain_vintages(engine, product="simulated_forecast").empty
    # simulate --out writes canonical CSV that `import` reads back
    csv = env / "sim.csv"
    assert main(["simulate", "--start", "2023-07-01", "--end", "2023-07-03", "--out",
                 str(csv)]) == 0
    assert main(["import", "--source", "canonical_csv", str(csv)]) == 0
    assert "imported" in capsys.readouterr().out
    bad = env / "bad.csv"
    bad.write_text("station_id,time,value\nx,2024-01-01T00:00,1\n", encoding="utf-8")
    assert main(["import", "--source", "canonical_csv", str(bad)]) == 1
    assert "FAILED" in capsys.readouterr().err


def test_bad_setting_exits_2(env: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORECAST_HTTP_PORT", "0")
    assert main(["init-db"]) == 2
    assert "FORECAST_HTTP_PORT" in capsys.readouterr().err


def test_backtest_bad_observations_file_names_it(env: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    obs = tmp_path / "OBS.csv"
    obs.write_text("station,time,value\njiseiji,2023-06-01T00:00+09:00,2.5\n", encoding="utf-8")
    rain = tmp_path / "RAIN.csv"
    rain.write_text("station_id,time,value\nkotogawa_dam_rain,2023-06-01T00:00+09:00,0\n",
                    encoding="utf-8")
    folds = tmp_path / "FOLDS.csv"
    folds.write_text("fold,train_end,test_start,test_end\n"
                     "1,2023-06-20T00:00+09:00,2023-06-20T00:00+09:00,2023-06-25T00:00+09:00\n",
                     encoding="utf-8")
    code = main(["backtest", "--catalogue", str(ROOT / "config" / "reference_rivers.yaml"),
                 "--observations", str(obs), "--rain", str(rain), "--folds", str(folds),
                 "--future-rain", "none", "--out", str(tmp_path / "F.csv")])
    assert code == 1
    err = capsys.readouterr().err
    assert str(obs) in err and "station_id" in err


def test_demo_prepares_data_models_and_a_forecast(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(env / "models"))
    args = ["demo", "--years", "0.25", "--end", "2024-07-10T03:00Z", "--no-serve"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "forecast cycle" in out
    engine = create_engine(load_settings().db_url)
    from forecast.storage.repository import has_simulated_data, latest_forecasts

    fc = latest_forecasts(engine)
    assert set(fc["river_id"]) == {"koto"} and len(fc) == 6
    assert (fc["issued_at"] == pd.Timestamp("2024-07-10T03:00Z")).all()
    assert has_simulated_data(engine)
    assert (env / "models" / "koto" / "champion.json").exists()
    # a second start reuses data and models
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "already present" in out and "training models" not in out


def test_train_writes_report_and_registers(env: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(env / "models"))
    assert main(["simulate", "--start", "2024-03-01", "--end", "2024-07-10T04:00Z",
                 "--seed", "5"]) == 0
    reports = env / "reports"
    assert main(["train", "--all", "--pooled", "--no-backtest"]) == 2
    assert "drop --no-backtest" in capsys.readouterr().err
    assert main(["train", "--river", "koto", "--end", "2024-07-10T03:00Z", "--days", "100",
                 "--report-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "koto: registered" in out
    pages = list(reports.glob("koto/*/index.html"))
    assert len(pages) == 1 and "koto" in pages[0].read_text(encoding="utf-8").lower()
    assert main(["models", "--river", "koto"]) == 0
    assert "koto" in capsys.readouterr().out
    v1 = pages[0].parent.name
    assert main(["promote", "koto", v1]) == 0
    assert "first champion" in capsys.readouterr().out
    # a challenger judged on another window: the CLI re-scores both on one hold-out
    assert main(["train", "--river", "koto", "--end", "2024-07-10T03:00Z", "--days", "90"]) == 0
    v2 = capsys.readouterr().out.split("registered ")[1].split()[0]
    assert v2 != v1
    code = main(["promote", "koto", v2, "--actor", "tester"])
    out, err = capsys.readouterr()
    if code == 0:
        assert "re-scored" in out and f"{v2} is champion" in out
        assert main(["rollback", "koto"]) == 0
        assert f"champion is again {v1}" in capsys.readouterr().out
    else:   # refused: both figures and the reason are in the message
        assert code == 1 and "re-scored" in err and "worse than champion" in err
    engine = create_engine(load_settings().db_url)
    with engine.connect() as conn:
        actions = [r[0] for r in conn.exec_driver_sql(
            "SELECT action FROM audit_log ORDER BY id").fetchall()]
    assert "model.promote" in actions
