"""Schemathesis against the OpenAPI document of /v1, with a valid (admin) token, on a database
filled by real ticks: no 5xx, no response that violates the schema, every status documented."""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from test_notify_stage import T0, _path

from forecast.api.app import create_app
from forecast.clock import FixedClock
from forecast.ingest.replay import Replay
from forecast.pipeline.access import dev_issuer
from forecast.pipeline.context import Context
from forecast.pipeline.demo import init_db
from forecast.pipeline.tick import Feeds, run_tick
from forecast.settings import load_settings
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage.engine import create_engine

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("schemathesis")
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    (d / "rivers.yaml").write_text(yaml.safe_dump(cat.model_dump(mode="json",
                                                                 exclude_none=True),
                                                  allow_unicode=True), encoding="utf-8")
    s = load_settings({"FORECAST_DATA_DIR": str(d), "FORECAST_AUTH_DEV": "true",
                       "FORECAST_RATE_LIMIT": "100000"})
    clock = FixedClock(T0)
    ctx = Context.of(create_engine(s.db_url), cat, clock=clock, settings=s)
    init_db(ctx)
    obs, _ = _path(cat)
    feeds = Feeds(replay=Replay.of(obs, name="simulated"))
    for k in range(18):
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        run_tick(ctx, t, feeds=feeds, models=lambda r: None)
    TOKEN["admin"] = dev_issuer(ctx).mint(subject="dev:admin", name="admin", roles=["admin"])
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(ctx)).include(
        path_regex="^/v1")


def test_v1_conforms_to_its_schema(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Each /v1 operation, 15 generated requests each (schemathesis' strategies driven by
    hypothesis directly: its pytest plugin does not run under this pytest)."""
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 18
    for operation in operations:
        strategy = operation.as_strategy()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        @given(case=strategy)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN['admin']}"})

        check()
