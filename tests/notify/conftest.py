"""Fixtures of the notification tests: the catalogue, every kind of payload (``cases``), a
running test receiver and a short-timeout httpx client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from forecast.alerts.notice import Notice
from forecast.catalogue import AlertLevel, Catalogue, River, default_catalogue_path, load_catalogue
from forecast.notify import messages
from forecast.notify.receiver import Receiver
from notify.cases import BASE_URL, SECRET, SENDER, T0, TOKEN, build_event, make_notice


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(default_catalogue_path())


@pytest.fixture(scope="session")
def inabe(catalogue: Catalogue) -> River:
    return catalogue.river("inabe")


@pytest.fixture(scope="session")
def payloads(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """Every kind of payload, by name (see the module docstring)."""
    inabe = catalogue.river("inabe")
    out = build_event(inabe)
    out["forecast_within_1h"] = messages.build_payload(
        make_notice("raise", T0, level=AlertLevel.STANDBY, basis="forecast",
                event_key="inabe:MIE-L-001:level:20230630T1800Z-b", observed_m=2.10,
                observed_at=T0, crossing_at=T0 + timedelta(minutes=40), lead_h=0.67,
                crest_m=2.60, crest_at=T0 + timedelta(hours=2)),
        inabe, message_id=201, sequence=1, previous=[], base_url=BASE_URL, simulated=False,
        sender=SENDER)
    out["data_problem"] = messages.build_payload(
        make_notice("raise", T0, topic="data", event_key="inabe:MIE-L-001:data:20230630T1800Z",
                problems=("水位計 MIE-L-001 の観測値が 70 分間ありません",
                          "雨量計 MIE-R-001 欠測")),
        inabe, message_id=301, sequence=1, previous=[], base_url=BASE_URL, simulated=False,
        sender=SENDER)
    tempaku = catalogue.river("tempaku")
    out["flooding_crisis"] = messages.build_payload(
        Notice(kind="raise", topic="level", river_id="tempaku", gauge="MIE-C-001", at=T0,
               event_key="tempaku:MIE-C-001:level:20230630T1800Z", level=AlertLevel.FLOODING,
               basis="observed", observed_m=2.64, observed_at=T0),
        tempaku, message_id=401, sequence=1, previous=[], base_url=None, simulated=False,
        sender=SENDER)
    out["simulated_raise"] = build_event(inabe, simulated=True)["raise_observed"]
    out["test_message"] = messages.test_payload("slack", T0, SENDER, False)
    out["dead_letter"] = messages.dead_letter_payload(
        out["raise_observed"], "[slack] incoming webhook: HTTP 500 from "
        "https://hooks.slack.com/services/T000/B000/XXXXSECRET", 5, T0 + timedelta(hours=1),
        channel="slack")
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(webhook_secret=SECRET, slack_token=TOKEN, delay_s=0.2, hang_s=10.0) as r:
        yield r


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A short timeout (0.5 s): the ``hang`` tests wait for it."""
    with httpx.Client(timeout=0.5) as c:
        yield c
