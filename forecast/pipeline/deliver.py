"""Outbox delivery: due messages to their channels, after the transaction that queued them.

``deliver_due`` claims due messages with a lease (``storage.outbox.claim``), sends each, and
marks it sent, or failed with the next attempt after an exponential backoff with jitter
(``FORECAST_DELIVERY_BACKOFF_S`` doubled per attempt, at most 30 min, times a random 0.5–1),
or dead after ``FORECAST_DELIVERY_MAX_ATTEMPTS`` (or at once for an error no retry can fix:
a revoked token, an unknown channel). A dead letter raises an ops message to the other
channels and stays until ``replay_dead_letters``. Delivery is at least once: a process killed
after sending but before marking sends again when the lease runs out; every message carries
its delivery id (the outbox ``dedup_key``), on which receivers deduplicate.

Slack: the first message of an event is remembered (``storage.alerts.slack_thread``) and later
ones thread under it (Web API only; incoming webhooks cannot thread).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from forecast.errors import DeliveryError
from forecast.pipeline.context import Context
from forecast.settings import Settings
from forecast.storage import alerts, outbox
from forecast.storage.engine import transaction

log = logging.getLogger(__name__)

BACKOFF_CAP = timedelta(minutes=30)


class Sender(Protocol):
    """One channel: send a payload; returns a thread id (Slack ``ts``) or None."""

    def __call__(self, payload: dict[str, Any], *, delivery_id: str,
                 thread_ts: str | None) -> str | None: ...


def backoff(attempts: int, base_s: float, rand: Callable[[], float] = random.random
            ) -> timedelta:
    """The wait before attempt ``attempts + 1``: ``base · 2^(attempts−1)``, at most 30 min,
    times a random factor in [0.5, 1) (jitter, so receivers coming back are not stampeded)."""
    raw = min(base_s * 2 ** max(attempts - 1, 0), BACKOFF_CAP.total_seconds())
    return timedelta(seconds=raw * (0.5 + 0.5 * rand()))


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def senders_from_settings(settings: Settings) -> dict[str, Sender]:
    """The configured channels' senders (``slack``, ``webhook``, ``cap``)."""
    import time

    import httpx

    from forecast.notify.cap import CapSender
    from forecast.notify.slack import SlackSender
    from forecast.notify.webhook import WebhookSender

    out: dict[str, Sender] = {}
    timeout = httpx.Timeout(settings.delivery_timeout_s)
    if settings.slack_token is not None or settings.slack_webhook_url is not None:
        def secret(v: Any) -> str | None:
            return None if v is None else str(v.get_secret_value())

        slack = SlackSender(token=secret(settings.slack_token),
                            staff_channel=settings.slack_channel,
                            ops_channel=settings.slack_ops_channel,
                            staff_webhook_url=secret(settings.slack_webhook_url),
                            ops_webhook_url=secret(settings.slack_ops_webhook_url),
                            base_url=settings.slack_api_url,
                            timeout_s=settings.delivery_timeout_s)

        def send_slack(payload: dict[str, Any], *, delivery_id: str,
                       thread_ts: str | None) -> str | None:
            return slack.send(payload, thread_ts=thread_ts)

        out["slack"] = send_slack
    if settings.webhook_url and settings.webhook_secret is not None:
        hook = WebhookSender(settings.webhook_url,
                             settings.webhook_secret.get_secret_value().encode(),
                             httpx.Client(timeout=timeout))

        def send_hook(payload: dict[str, Any], *, delivery_id: str,
                      thread_ts: str | None) -> str | None:
            hook.send(payload, delivery_id=delivery_id, now=int(time.time()))
            return None

        out["webhook"] = send_hook
    if settings.cap_url:
        cap = CapSender(settings.cap_url, httpx.Client(timeout=timeout))

        def send_cap(payload: dict[str, Any], *, delivery_id: str,
                     thread_ts: str | None) -> str | None:
            cap.send(payload)
            return None

        out["cap"] = send_cap
    return out


def _target(payload: dict[str, Any]) -> str:
    """The Slack thread key's target: who the message is for."""
    return str(payload.get("audience") or "staff")


def deliver_due(ctx: Context, senders: Mapping[str, Sender], *, limit: int = 100,
                rand: Callable[[], float] = random.random) -> DeliveryReport:
    """Deliver every due message once (see the module docstring)."""
    report = DeliveryReport()
    now = ctx.clock.now()
    lease = timedelta(seconds=ctx.settings.delivery_timeout_s * 3 + 60)
    with transaction(ctx.engine, "claiming due messages") as conn:
        due = outbox.claim(conn, now=now, limit=limit, lease=lease)
    for msg in due:
        _deliver_one(ctx, senders, msg, report, rand)
    return report


def _deliver_one(ctx: Context, senders: Mapping[str, Sender], msg: dict[str, Any],
                 report: DeliveryReport, rand: Callable[[], float]) -> None:
    payload: dict[str, Any] = msg["payload"]
    channel = str(msg["channel"])
    event_key = payload.get("event_key")
    sender = senders.get(channel)
    try:
        if sender is None:
            raise DeliveryError(f"channel {channel} is not configured any more",
                                retryable=False)
        thread = None
        if channel == "slack" and event_key:
            with transaction(ctx.engine, "reading the Slack thread") as conn:
                thread = alerts.slack_thread(conn, event_key, _target(payload))
        ts = sender(payload, delivery_id=str(msg["dedup_key"]), thread_ts=thread)
    except DeliveryError as exc:
        _failed(ctx, msg, exc, report, rand)
        return
    with transaction(ctx.engine, "marking a message sent") as conn:
        outbox.mark_sent(conn, int(msg["id"]), at=ctx.clock.now())
        if channel == "slack" and ts and event_key and thread is None:
            alerts.put_slack_thread(conn, event_key, _target(payload), ts)
    report.sent += 1


def _failed(ctx: Context, msg: dict[str, Any], exc: DeliveryError, report: DeliveryReport,
            rand: Callable[[], float]) -> None:
    attempts = int(msg["attempts"]) + 1
    now = ctx.clock.now()
    error = str(exc)
    report.errors.append(f"{msg['channel']} #{msg['id']}: {error}")
    dead = not exc.retryable or attempts >= ctx.settings.delivery_max_attempts
    retry_at = None if dead else now + backoff(attempts, ctx.settings.delivery_backoff_s, rand)
    with transaction(ctx.engine, "recording a failed delivery") as conn:
        outbox.mark_failed(conn, int(msg["id"]), at=now, error=error, retry_at=retry_at)
        if dead:
            _dead_letter_notice(ctx, conn, msg, error, attempts, now)
    if dead:
        report.dead += 1
        log.error("delivery: %s message %s is a dead letter after %d attempts: %s",
                  msg["channel"], msg["id"], attempts, error)
    else:
        report.retried += 1
        log.warning("delivery: %s message %s failed (attempt %d), retry at %s: %s",
                    msg["channel"], msg["id"], attempts, retry_at, error)


def _dead_letter_notice(ctx: Context, conn: Any, msg: dict[str, Any], error: str,
                        attempts: int, now: datetime) -> None:
    """Tell the operators through every other channel (an ops message that itself dies is
    only logged: no cascade)."""
    from forecast.notify.messages import dead_letter_payload
    from forecast.pipeline.notify import channels

    if msg["payload"].get("topic") == "ops":
        return
    payload = dead_letter_payload(msg["payload"], error, attempts, now,
                                  channel=str(msg["channel"]))
    for channel in channels(ctx):
        if channel in (msg["channel"], "cap"):
            continue
        outbox.enqueue(conn, channel=channel, dedup_key=f"{channel}:dead:{msg['id']}",
                       payload=payload, now=now)


def replay_dead_letters(ctx: Context, ids: list[int] | None = None) -> list[int]:
    """Give dead letters (all, or these ids) a fresh set of attempts; returns the ids
    requeued. ``ids`` that are not dead letters are left alone (not in the result)."""
    now = ctx.clock.now()
    with transaction(ctx.engine, "replaying dead letters") as conn:
        wanted = ids if ids is not None else [int(m["id"]) for m in outbox.dead_letters(conn)]
        return [i for i in wanted if outbox.requeue(conn, i, now=now)]
