"""Runtime settings from the environment (``FORECAST_*``), validated at start-up.

Settings are built once by an entry point (CLI, API, scheduler) and passed in; no module reads
the environment on its own.

FORECAST_DATABASE_URL    SQLAlchemy URL (default: SQLite file forecast.db in the data dir);
                         PostgreSQL: postgresql+psycopg://user@host:5432/db
FORECAST_DATA_DIR        working directory for the SQLite file and caches (default ./var)
FORECAST_CATALOGUE       river catalogue YAML (default config/rivers.yaml)
FORECAST_MODELS_DIR      model registry root (default ./models)
FORECAST_LOG_LEVEL       DEBUG | INFO | WARNING | ERROR (default INFO)
FORECAST_LOG_JSON        true for JSON-lines logs (default false)
FORECAST_HTTP_HOST/PORT  where the API listens (default 127.0.0.1:8000)
FORECAST_SEED            seed of the simulated demo data (default 20240601)
FORECAST_TICK_MINUTES    minutes past the hour the scheduler ticks (default "20,50": after
                         JMA's 降水短時間予報 deliveries); each tick runs issue time
                         floor(now - FORECAST_TICK_DELAY_MIN, 30 min)
FORECAST_TICK_DELAY_MIN  minutes between an issue time and its tick (default 20)
FORECAST_CATCHUP_LIMIT   at most this many issue times per tick, oldest first: the current one
                         and missed ones after downtime (default 6 = 3 hours)
FORECAST_MISFIRE_GRACE_S a tick that starts this late is still run (default 600)
FORECAST_SOURCE_TIMEOUT_S time limit of each source's fetching in a tick (default 60)
FORECAST_REPLAY          replay file (``forecast demo`` writes one): ticks ingest from it
                         instead of the live sources
FORECAST_CLOCK_SPEED     demo clock speed (default 1 = wall clock); with
FORECAST_CLOCK_ORIGIN    the simulated time at process start (ISO 8601 with offset)
FORECAST_SCHEDULER       false: ``forecast serve`` runs the API only (default true)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forecast.catalogue import default_catalogue_path
from forecast.errors import SettingsError


class Settings(BaseModel):
    """All runtime settings; see the module docstring for the environment variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = ""
    data_dir: Path = Path("var")
    catalogue: Path = Field(default_factory=default_catalogue_path)
    models_dir: Path = Path("models")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    seed: int = 20240601
    tick_minutes: str = "20,50"
    tick_delay_min: int = Field(default=20, ge=0, le=29)
    catchup_limit: int = Field(default=6, ge=1, le=96)
    misfire_grace_s: int = Field(default=600, ge=1)
    source_timeout_s: float = Field(default=60.0, gt=0)
    replay: Path | None = None
    clock_speed: float = Field(default=1.0, gt=0, le=10000)
    clock_origin: datetime | None = None
    scheduler: bool = True

    @field_validator("tick_minutes")
    @classmethod
    def _minutes(cls, v: str) -> str:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if not parts or not all(p.isdigit() and 0 <= int(p) <= 59 for p in parts):
            raise ValueError("must be minutes past the hour, comma-separated, e.g. 20,50")
        return ",".join(str(int(p)) for p in parts)

    @field_validator("clock_origin")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-12-01T09:00Z")
        return v

    @field_validator("database_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return v

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to SQLite in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'forecast.db').resolve()}"


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from the process environment (or ``env``) plus explicit overrides.

    Raises ``SettingsError`` naming the variable and the problem.
    """
    import os

    source = dict(os.environ if env is None else env)
    values: dict[str, object] = {
        k[len("FORECAST_"):].lower(): v
        for k, v in source.items()
        if k.startswith("FORECAST_") and not k.startswith("FORECAST_TEST_")
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "FORECAST_" + ".".join(str(p) for p in first["loc"]).upper()
        msg = "unknown setting" if first["type"] == "extra_forbidden" else first["msg"]
        raise SettingsError(f"{key}: {msg}") from exc
