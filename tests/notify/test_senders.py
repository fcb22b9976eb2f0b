"""Senders against the loopback receiver (real HTTP, no mocks, never the network): Slack Web
API and incoming webhooks, signed webhooks, CAP; and the fault modes (500, 429, hang within
the client's timeout, down) with the retryable decision."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import xmlschema

from forecast.errors import DeliveryError
from forecast.notify.cap import CapSender
from forecast.notify.receiver import Receiver
from forecast.notify.slack import SlackSender
from forecast.notify.webhook import WebhookSender, body_bytes
from notify.cases import CAP_DATA, SECRET, TOKEN

TIMEOUT_S = 0.5


def _web(r: Receiver, token: str = TOKEN) -> SlackSender:
    return SlackSender(token=token, staff_channel="#suibo", ops_channel="#ops",
                       base_url=r.slack_api_url, timeout_s=TIMEOUT_S)


def _posts(r: Receiver, path: str) -> list[dict[str, Any]]:
    return [e for e in r.received if e["path"].startswith(path)]


def test_slack_web_api_returns_ts_and_threads_the_event(receiver: Receiver,
                                                        payloads: dict[str, dict]) -> None:
    sender = _web(receiver)
    ts = sender.send(payloads["raise_observed"])
    assert ts is not None and sender.threads
    ts2 = sender.send(payloads["escalate_forecast"], thread_ts=ts)
    ts3 = sender.send(payloads["lower"], thread_ts=ts)
    assert len({ts, ts2, ts3}) == 3
    first, second, third = (e["body"] for e in _posts(receiver, "/api/chat.postMessage"))
    assert first["channel"] == "#suibo" and "thread_ts" not in first
    assert second["thread_ts"] == ts and second["reply_broadcast"] is True   # escalation
    assert third["thread_ts"] == ts and "reply_broadcast" not in third
    assert any(b["type"] == "header" for b in first["blocks"])
    assert "員弁川" in first["text"]
    # The token travelled in the Authorization header (the receiver checked it) and was not
    # kept in the record.
    headers = _posts(receiver, "/api/")[0]["headers"]
    assert headers["Authorization"] == "<redacted>"
    assert TOKEN not in json.dumps(receiver.received)


def test_slack_operators_messages_go_to_the_ops_channel(receiver: Receiver,
                                                        payloads: dict[str, dict]) -> None:
    _web(receiver).send(payloads["data_problem"])
    staff_only = SlackSender(token=TOKEN, staff_channel="#suibo", base_url=receiver.slack_api_url,
                             timeout_s=TIMEOUT_S)
    staff_only.send(payloads["dead_letter"])
    channels = [e["body"]["channel"] for e in _posts(receiver, "/api/chat.postMessage")]
    assert channels == ["#ops", "#suibo"]


def test_slack_bad_token_and_unknown_channel_are_not_retryable(
        receiver: Receiver, payloads: dict[str, dict]) -> None:
    with pytest.raises(DeliveryError) as bad:
        _web(receiver, token="xoxb-wrong-987").send(payloads["raise_observed"])
    assert bad.value.retryable is False and "invalid_auth" in str(bad.value)
    assert "xoxb-wrong-987" not in str(bad.value) and "xoxb-wrong-987" not in repr(bad.value)
    receiver.known_channels = {"#suibo"}
    with pytest.raises(DeliveryError) as unknown:
        _web(receiver).send(payloads["data_problem"])    # to #ops, which does not exist
    assert unknown.value.retryable is False and "channel_not_found" in str(unknown.value)


def test_slack_incoming_webhook(receiver: Receiver, payloads: dict[str, dict]) -> None:
    sender = SlackSender(staff_webhook_url=receiver.incoming_url("T000/B000/staff"),
                         ops_webhook_url=receiver.incoming_url("T000/B000/ops"),
                         timeout_s=TIMEOUT_S)
    assert sender.send(payloads["raise_observed"], thread_ts="123.456") is None
    assert not sender.threads
    sender.send(payloads["data_problem"])
    staff, ops = _posts(receiver, "/slack/incoming/")
    assert staff["path"].endswith("/staff") and staff["status"] == 200
    assert ops["path"].endswith("/ops")
    assert staff["body"]["blocks"][0]["type"] == "header"
    assert staff["body"]["attachments"][0]["color"] == "#f2e700"


def test_slack_webhook_4xx_is_not_retryable_and_hides_the_url(
        receiver: Receiver, payloads: dict[str, dict]) -> None:
    sender = SlackSender(staff_webhook_url=f"{receiver.url}/slack/gone/T0/B0/XXXXSECRET",
                         timeout_s=TIMEOUT_S)
    with pytest.raises(DeliveryError) as err:
        sender.send(payloads["raise_observed"])
    assert err.value.retryable is False and err.value.status == 404
    assert "XXXXSECRET" not in str(err.value) and "XXXXSECRET" not in repr(sender)


def test_webhook_is_verified_by_the_receiver_and_deduplicated(
        receiver: Receiver, client: httpx.Client, payloads: dict[str, dict]) -> None:
    sender = WebhookSender(receiver.webhook_url, SECRET, client)
    now = int(time.time())
    p = payloads["escalate_forecast"]
    sender.send(p, delivery_id="outbox-7", now=now)
    sender.send(p, delivery_id="outbox-7", now=now + 1)    # a retry of the same delivery
    sender.send(payloads["clear"], delivery_id="outbox-8", now=now)
    posts = _posts(receiver, "/webhook")
    assert [e["status"] for e in posts] == [200, 200, 200]
    assert set(receiver.unique) == {"outbox-7", "outbox-8"}
    assert receiver.unique["outbox-7"] == p       # the JSON body is the payload itself
    assert posts[0]["headers"]["X-Forecast-Delivery"] == "outbox-7"
    assert posts[0]["headers"]["Content-Type"] == "application/json"


def test_webhook_with_the_wrong_secret_or_a_stale_clock_is_refused(
        receiver: Receiver, client: httpx.Client, payloads: dict[str, dict]) -> None:
    with pytest.raises(DeliveryError) as wrong:
        WebhookSender(receiver.webhook_url, b"not the secret", client).send(
            payloads["raise_observed"], delivery_id="d1", now=int(time.time()))
    assert wrong.value.status == 401 and wrong.value.retryable is False
    with pytest.raises(DeliveryError) as stale:
        WebhookSender(receiver.webhook_url, SECRET, client).send(
            payloads["raise_observed"], delivery_id="d2", now=int(time.time()) - 600)
    assert stale.value.status == 401
    assert receiver.unique == {}


def test_cap_post(receiver: Receiver, client: httpx.Client, payloads: dict[str, dict]) -> None:
    CapSender(receiver.cap_url, client).send(payloads["escalate_forecast"])
    CapSender(receiver.cap_url, client).send(payloads["raise_observed"], status="Exercise")
    posts = _posts(receiver, "/cap")
    assert [e["status"] for e in posts] == [200, 200]
    assert posts[0]["headers"]["Content-Type"].startswith("application/cap+xml")
    schema = xmlschema.XMLSchema(str(CAP_DATA / "CAP-v1.2.xsd"))
    for e in posts:
        schema.validate(e["body"])
    assert "<status>Exercise</status>" in posts[1]["body"]


Send = Callable[[Receiver, httpx.Client, dict[str, Any]], object]
SENDERS: dict[str, Send] = {
    "slack_web_api": lambda r, c, p: _web(r).send(p),
    "slack_incoming": lambda r, c, p: SlackSender(staff_webhook_url=r.incoming_url(),
                                                  timeout_s=TIMEOUT_S).send(p),
    "webhook": lambda r, c, p: WebhookSender(r.webhook_url, SECRET, c).send(
        p, delivery_id="fault-1", now=int(time.time())),
    "cap": lambda r, c, p: CapSender(r.cap_url, c).send(p),
}


@pytest.mark.parametrize("mode", ["error500", "ratelimit", "hang", "down"])
@pytest.mark.parametrize("channel", sorted(SENDERS))
def test_fault_modes_are_retryable_and_delivery_resumes(
        mode: str, channel: str, receiver: Receiver, client: httpx.Client,
        payloads: dict[str, dict]) -> None:
    send, p = SENDERS[channel], payloads["raise_observed"]
    port = receiver.port
    receiver.mode = mode
    started = time.monotonic()
    with pytest.raises(DeliveryError) as err:
        send(receiver, client, p)
    elapsed = time.monotonic() - started
    assert err.value.retryable is True, str(err.value)
    assert err.value.status == {"error500": 500, "ratelimit": 429}.get(mode)
    if mode == "hang":
        # The client's timeout fired, not the receiver's 10 s hold.
        assert TIMEOUT_S * 0.8 <= elapsed < TIMEOUT_S + 1.5, elapsed
    else:
        assert elapsed < 1.0, elapsed
    receiver.mode = "ok"    # back up (on the same port after "down")
    assert receiver.port == port
    send(receiver, client, p)
    assert receiver.received[-1]["status"] == 200 and receiver.received[-1]["mode"] == "ok"


def test_slow_answers_within_the_timeout_are_delivered(
        receiver: Receiver, client: httpx.Client, payloads: dict[str, dict]) -> None:
    receiver.mode = "slow"    # delay_s = 0.2 < the 0.5 s timeout
    started = time.monotonic()
    WebhookSender(receiver.webhook_url, SECRET, client).send(
        payloads["raise_observed"], delivery_id="slow-1", now=int(time.time()))
    assert time.monotonic() - started >= 0.2
    assert "slow-1" in receiver.unique


def test_body_on_the_wire_is_the_signed_bytes(receiver: Receiver, client: httpx.Client,
                                              payloads: dict[str, dict]) -> None:
    p = payloads["test_message"]
    WebhookSender(receiver.webhook_url, SECRET, client).send(p, delivery_id="t", now=int(
        time.time()))
    assert json.dumps(receiver.unique["t"], ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode() == body_bytes(p)
