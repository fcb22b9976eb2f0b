"""The command line, run in-process through ``forecast.cli.main`` on a temporary SQLite file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers import run

from forecast.cli import IMPORT_SOURCES, main
from forecast.pipeline.importer import SOURCES
from forecast.settings import load_settings
from forecast.storage.engine import create_engine
from forecast.storage.forecasts import latest_forecasts
from forecast.storage.models import champion
from forecast.storage.observations import has_simulated_data, read_observations
from forecast.storage.rain import read_rain_vintages

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
    obs = run(engine, read_observations, station_ids=["jiseiji"])
    assert obs["time"].min() >= pd.Timestamp("2023-06-01", tz="UTC")
    assert obs["time"].max() < pd.Timestamp("2023-06-15", tz="UTC")
    assert set(obs["source"]) == {"simulated"}
    assert not run(engine, read_rain_vintages, product="simulated_forecast").empty
    # simulate --out writes canonical CSV that `import` reads back, still SIMULATED
    csv = env / "sim.csv"
    assert main(["simulate", "--start", "2023-07-01", "--end", "2023-07-03", "--out",
                 str(csv)]) == 0
    assert main(["import", "--source", "canonical_csv", str(csv)]) == 0
    assert "imported" in capsys.readouterr().out
    july = run(engine, read_observations, start=pd.Timestamp("2023-07-01", tz="UTC"))
    assert len(july) and set(july["source"]) == {"simulated"}
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
    fc = run(engine, latest_forecasts)
    assert set(fc["river_id"]) == {"koto"} and len(fc) == 6
    assert (fc["issued_at"] == pd.Timestamp("2024-07-10T03:00Z")).all()
    assert run(engine, has_simulated_data)
    # the demo's first champion is in the one champion record, with its audit row
    assert run(engine, champion, "koto") == fc["model_version"].iloc[0]
    with engine.connect() as conn:
        audit = conn.exec_driver_sql("SELECT action, actor FROM audit_log").fetchall()
    assert ("model.promote", "demo") in [tuple(r) for r in audit]
    assert not (env / "models" / "koto" / "champion.json").exists()
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
    # (whether the re-scored comparison promotes is checked against an independent scoring
    # in tests/test_training.py; here the forced path, the listing and the rollback)
    assert main(["promote", "koto", v2, "--force", "--actor", "tester"]) == 0
    assert f"{v2} is champion (forced)" in capsys.readouterr().out
    assert main(["models", "--river", "koto"]) == 0
    rows = {ln.split()[1]: ln.split()[3] for ln in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {v1: "False", v2: "True"}
    assert main(["rollback", "koto", "--actor", "duty"]) == 0
    assert f"champion is again {v1}" in capsys.readouterr().out
    assert main(["rollback", "koto"]) == 1
    assert "no earlier champion" in capsys.readouterr().err
    engine = create_engine(load_settings().db_url)
    with engine.connect() as conn:
        actions = [tuple(r) for r in conn.exec_driver_sql(
            "SELECT action, actor FROM audit_log WHERE action != 'model.register' "
            "ORDER BY id").fetchall()]
    assert actions == [("model.promote", "cli"), ("model.promote", "tester"),
                       ("model.rollback", "duty")]


@pytest.mark.parametrize("argv, names", [
    (["cycle", "--at", "yesterday"], "argument --at"),
    (["cycle", "--at", "2024-07-01T00:15Z"], "whole or half hour"),
    (["train", "--river", "koto", "--end", "garbage"], "argument --end"),
    (["train", "--river", "koto", "--days", "-3"], "argument --days"),
    (["train", "--all", "--workers", "0"], "argument --workers"),
    (["simulate", "--start", "99999-01-01"], "argument --start"),
    (["import", "--source", "nope", "x.csv"], "argument --source"),
    (["qc", "--station", "x"], "--recheck"),
])
def test_argument_errors_are_one_line_exit_2(env: Path, argv: list[str], names: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err and "Traceback" not in err


@pytest.mark.parametrize("argv, code, says", [
    (["train", "--river", "nope"], 2, "unknown river 'nope'"),
    (["promote", "nope", "v1"], 2, "unknown river 'nope'"),
    (["qc", "--recheck", "--station", "nope"], 2, "not in the catalogue"),
    (["simulate", "--start", "2024-07-02", "--end", "2024-07-01"], 2, "is not before"),
    (["import", "--source", "canonical_csv", "/nonexistent/x.csv"], 1, "cannot read"),
])
def test_user_errors_name_what_to_fix(env: Path, argv: list[str], code: int, says: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_cli_import_sources_are_the_importers() -> None:
    assert IMPORT_SOURCES == SOURCES


def test_database_password_never_appears(env: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture) -> None:
    """A PostgreSQL URL with a password to a port where nothing listens: the error names the
    database without the password, in the message and in the logs."""
    secret = "s3cr3t-Pa55"
    monkeypatch.setenv("FORECAST_DATABASE_URL",
                       f"postgresql+psycopg://forecast:{secret}@127.0.0.1:9/forecast")
    for argv in (["init-db"], ["cycle", "--at", "2024-07-01T00:00Z"], ["models"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert "error:" in err and secret not in out + err + caplog.text
        assert "Traceback" not in err
