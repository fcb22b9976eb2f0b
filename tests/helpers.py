"""Small helpers shared by the tests (on the path through pytest's ``pythonpath``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue
from forecast.clock import FixedClock
from forecast.pipeline.context import Context
from forecast.storage.engine import transaction

T = TypeVar("T")


def run(engine: Engine, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call one repository function in its own transaction."""
    with transaction(engine) as conn:
        return fn(conn, *args, **kwargs)


def context(engine: Engine, catalogue: Catalogue, at: datetime,
            models_root: Path = Path("models")) -> Context:
    """A pipeline context on a test database with a fixed clock at ``at``."""
    return Context.of(engine, catalogue, clock=FixedClock(at), models_root=models_root)
