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
"""

from __future__ import annotations

from collections.abc import Mapping
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
