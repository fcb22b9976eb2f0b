"""Schemathesis against the OpenAPI document of /v1, with a valid (admin) token, on a database
filled by real ticks: no 5xx, no response that violates the schema, every status documented."""

from __future__ import annotations

import pytest
import schemathesis
from helpers import rising_world
from hypothesis import HealthCheck, given, settings

from forecast.api.app import create_app
from forecast.pipeline.access import dev_issuer

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    ctx = rising_world(tmp_path_factory.mktemp("schemathesis"), ticks=18,
                       env={"FORECAST_AUTH_DEV": "true", "FORECAST_RATE_LIMIT": "100000"})
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
