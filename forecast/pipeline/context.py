"""The context every pipeline function runs on, built once by an entry point."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue, load_catalogue
from forecast.clock import Clock, ScaledClock, SystemClock
from forecast.settings import Settings, load_settings
from forecast.storage.engine import create_engine, redact

if TYPE_CHECKING:
    from forecast.ingest.fetch import Fetcher


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Context:
    """Settings, catalogue, database engine, clock, model registry root and HTTP fetcher of one
    process.

    ``owner`` (host:pid) names this process in cycle runs and issue-time locks. ``fetcher`` is
    the live sources' HTTP client (``ingest.fetch.Fetcher``: timeouts, retries, per-source
    limits, conditional requests); tests give one on an ``httpx.MockTransport``.
    """

    settings: Settings
    catalogue: Catalogue
    engine: Engine
    clock: Clock = field(default_factory=SystemClock)
    models_root: Path = Path("models")
    owner: str = field(default_factory=_owner)
    fetcher: Fetcher | None = None

    @property
    def database_label(self) -> str:
        """The database URL without its password (for messages)."""
        return redact(self.engine.url.render_as_string(hide_password=False))

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, clock: Clock | None = None
                      ) -> Context:
        """The context of an entry point: settings from the environment unless given. With a
        replay (``FORECAST_REPLAY``) ticks read the replay, not the network: no HTTP client is
        made (nor httpx imported)."""
        settings = settings or load_settings()
        if clock is None and (settings.clock_speed != 1 or settings.clock_origin is not None):
            clock = ScaledClock(settings.clock_origin or SystemClock().now(),
                                settings.clock_speed)
        clock = clock or SystemClock()
        fetcher = None
        if settings.replay is None:
            import httpx

            from forecast.ingest.fetch import Fetcher

            fetcher = Fetcher(httpx.Client(follow_redirects=True), clock=clock.now)
        return cls(settings=settings, catalogue=load_catalogue(settings.catalogue),
                   engine=create_engine(settings.db_url), clock=clock,
                   models_root=settings.models_dir, fetcher=fetcher)

    @classmethod
    def of(cls, engine: Engine, catalogue: Catalogue, *, clock: Clock,
           models_root: Path = Path("models"), settings: Settings | None = None,
           fetcher: Fetcher | None = None) -> Context:
        """A context on an existing engine and catalogue (tests, notebooks, benchmarks)."""
        return cls(settings=settings or load_settings({}), catalogue=catalogue, engine=engine,
                   clock=clock, models_root=Path(models_root), fetcher=fetcher)
