from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from world import World, build_world

from forecast.api.app import create_app
from forecast.api.auth import SESSION_COOKIE


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="package")
def app(world: World):  # type: ignore[no-untyped-def]
    return create_app(world.ctx)


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, follow_redirects=False)


def signed_in(client: TestClient, token: str) -> TestClient:
    client.cookies.set(SESSION_COOKIE, token)
    return client
