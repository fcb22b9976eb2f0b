"""Settings from the environment, frame contracts, error messages."""

from __future__ import annotations

import pandas as pd
import pytest

from forecast import frames
from forecast.errors import CatalogueError, FrameError, ParseError, SettingsError
from forecast.settings import load_settings


def test_settings_defaults_and_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load_settings({"FORECAST_DATA_DIR": str(tmp_path), "FORECAST_HTTP_PORT": "8123",
                       "FORECAST_TEST_POSTGRES_URL": "ignored", "PATH": "/bin"})
    assert s.http_port == 8123
    assert s.db_url == f"sqlite:///{(tmp_path / 'forecast.db').resolve()}"
    pg = load_settings({"FORECAST_DATABASE_URL": "postgresql+psycopg://u@h/db"})
    assert pg.db_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(("env", "key"), [
    ({"FORECAST_HTTP_PORT": "99999"}, "FORECAST_HTTP_PORT"),
    ({"FORECAST_DATABASE_URL": "mysql://x"}, "FORECAST_DATABASE_URL"),
    ({"FORECAST_LOG_LEVEL": "LOUD"}, "FORECAST_LOG_LEVEL"),
    ({"FORECAST_COLOUR": "blue"}, "FORECAST_COLOUR"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings(env)


def _obs() -> pd.DataFrame:
    return pd.DataFrame({"station_id": ["a"], "variable": ["level_m"],
                         "time": pd.to_datetime(["2024-01-01T00:00Z"], utc=True),
                         "value": [1.0]})


def test_observation_frame_defaults() -> None:
    df = frames.observations(_obs())
    assert list(df.columns) == list(frames.OBS_COLUMNS)
    assert df.loc[0, "flag"] == frames.Flag.GOOD and df.loc[0, "qc_rule"] == ""


@pytest.mark.parametrize("mutate", [
    lambda d: d.drop(columns=["value"]),
    lambda d: d.assign(time=d["time"].dt.tz_localize(None)),
    lambda d: d.assign(variable="level_cm"),
    lambda d: d.assign(flag=9),
])
def test_observation_frame_violations(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FrameError):
        frames.observations(mutate(_obs()))


def test_error_messages_say_where() -> None:
    e = CatalogueError("unknown key", file="rivers.yaml", river="kushida", key="thresholds.x")
    assert str(e) == "file rivers.yaml, river kushida, key thresholds.x: unknown key"
    p = ParseError("bad flag", source="mlit_dat", location="a.dat", position="line 12")
    assert str(p) == "[mlit_dat] a.dat at line 12: bad flag"
