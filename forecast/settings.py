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

Notifications (水位予測通知; a channel without its settings is off):
FORECAST_PUBLIC_URL      the page's address, for links in messages (e.g. https://suii.example.jp)
FORECAST_SLACK_WEBHOOK_URL / FORECAST_SLACK_OPS_WEBHOOK_URL
                         Slack incoming webhooks for staff / for the duty officer (data problems,
                         dead letters; default: the staff one)
FORECAST_SLACK_TOKEN     a bot token (chat:write) for the Web API instead: messages of an event
                         thread under its first one; with FORECAST_SLACK_CHANNEL and
                         FORECAST_SLACK_OPS_CHANNEL (channel ids) and FORECAST_SLACK_API_URL
                         (default https://slack.com/api/)
FORECAST_WEBHOOK_URL     generic JSON webhook, signed with FORECAST_WEBHOOK_SECRET (HMAC-SHA256)
FORECAST_CAP_URL         POST each CAP 1.2 message here (the Atom feed is served either way)
FORECAST_CAP_SENDER      CAP sender id (default forecast.pref.mie.example)
FORECAST_DRILL           true: every message is a drill (CAP status Exercise, as simulated
                         data always are)
FORECAST_DELIVERY_MAX_ATTEMPTS  attempts before a message is a dead letter (default 12, about 3 h)
FORECAST_DELIVERY_BACKOFF_S     first retry delay, doubled per attempt up to 30 min, with jitter
                                (default 30)
FORECAST_DELIVERY_TIMEOUT_S     per request (default 10)
FORECAST_DELIVERY_INTERVAL_S    how often the scheduler delivers due messages (default 30)

Access (API v1; the README documents the Entra ID app registration):
FORECAST_AUTH_ISSUER     the OIDC issuer whose tokens are accepted, e.g.
                         https://login.microsoftonline.com/<tenant id>/v2.0
FORECAST_AUTH_AUDIENCE   the token audience: the API's application (client) id or its
                         Application ID URI
FORECAST_AUTH_JWKS_URL   the issuer's key set, e.g.
                         https://login.microsoftonline.com/<tenant id>/discovery/v2.0/keys
FORECAST_AUTH_ROLE_PREFIX  prefix of the app-role values (e.g. "Forecast." for Forecast.Operator)
FORECAST_AUTH_JWKS_COOLDOWN_S  a token with an unknown key id refetches the key set at most
                         this often (default 30: a rotated key is picked up within 30 s)
FORECAST_AUTH_DEV        true: also accept the local development issuer's tokens (the demo;
                         never where real users sign in)
FORECAST_AUTH_CLIENT_ID, FORECAST_AUTH_CLIENT_SECRET, FORECAST_AUTH_AUTHORIZE_URL,
FORECAST_AUTH_TOKEN_URL, FORECAST_AUTH_SCOPE
                         the page's sign-in (authorization code with PKCE): the app
                         registration's client id (and secret for a web app), its endpoints,
                         the scopes (e.g. "openid profile api://<app id>/Forecast.Read")
FORECAST_SESSION_SECRET  signs the sign-in flow's cookie (default: a key in the data dir)
FORECAST_CORS_ORIGINS    comma-separated origins allowed to call the API from a browser
                         (default none)
FORECAST_RATE_LIMIT      requests per second per caller (default 50, bursts of 4x)
FORECAST_API_CACHE_S     the latest forecasts are served from memory and checked for a newer
                         run at most this often (default 1 s; 0: every request)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

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
    public_url: str | None = None
    slack_webhook_url: SecretStr | None = None
    slack_ops_webhook_url: SecretStr | None = None
    slack_token: SecretStr | None = None
    slack_channel: str | None = None
    slack_ops_channel: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    cap_url: str | None = None
    cap_sender: str = "forecast.pref.mie.example"
    drill: bool = False
    delivery_max_attempts: int = Field(default=12, ge=1, le=100)
    delivery_backoff_s: float = Field(default=30.0, gt=0, le=3600)
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=120)
    delivery_interval_s: float = Field(default=30.0, gt=0, le=3600)
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_jwks_url: str | None = None
    auth_role_prefix: str = ""
    auth_jwks_cooldown_s: float = Field(default=30.0, ge=0, le=3600)
    auth_client_id: str | None = None
    auth_client_secret: SecretStr | None = None
    auth_authorize_url: str | None = None
    auth_token_url: str | None = None
    auth_scope: str = "openid profile"
    session_secret: SecretStr | None = None
    auth_dev: bool = False
    cors_origins: str = ""
    rate_limit: float = Field(default=50.0, gt=0, le=100_000)
    api_cache_s: float = Field(default=1.0, ge=0, le=60)

    @field_validator("public_url", "webhook_url", "cap_url", "slack_api_url", "auth_issuer",
                     "auth_jwks_url", "auth_authorize_url", "auth_token_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

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

    def channel_problems(self) -> list[str]:
        """Half-configured channels, one line each (checked at start-up)."""
        out = []
        if self.slack_token is not None and not self.slack_channel:
            out.append("FORECAST_SLACK_TOKEN is set without FORECAST_SLACK_CHANNEL (a channel id)")
        if self.auth_issuer and not (self.auth_audience and self.auth_jwks_url):
            out.append("FORECAST_AUTH_ISSUER needs FORECAST_AUTH_AUDIENCE and "
                       "FORECAST_AUTH_JWKS_URL (README: Entra ID set-up)")
        if self.webhook_url and self.webhook_secret is None:
            out.append("FORECAST_WEBHOOK_URL is set without FORECAST_WEBHOOK_SECRET (receivers "
                       "verify the signature with it)")
        return out

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
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "FORECAST_" + ".".join(str(p) for p in first["loc"]).upper()
        msg = "unknown setting" if first["type"] == "extra_forbidden" else first["msg"]
        raise SettingsError(f"{key}: {msg}") from exc
    problems = settings.channel_problems()
    if problems:
        raise SettingsError(problems[0])
    return settings
