"""Delivery under faults, end to end: ticks of a replayed rise (the notify stage commits the
messages and their outbox rows), the real outbox delivery (``pipeline.deliver``) and the real
senders to a loopback receiver (``notify.receiver``) whose fault mode changes while the
replayed clock runs: down for an hour, HTTP 500, hanging past the client's timeout, slow,
a deliverer SIGKILLed after claiming, dead letters and their replay, a revoked Slack token.
On SQLite and PostgreSQL.

Each test ends by checking that every message was delivered exactly once after
deduplication at the receiver (webhook: the receiver's ``unique`` delivery ids are the outbox
``dedup_key``s and cover every ``alert_messages`` id; Slack, which does not deduplicate: the
successful ``chat.postMessage`` requests are the sent Slack rows, text for text), that nothing
is left pending, and what the outbox recorded (attempts, last_error)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from test_notify_stage import SECRET, T0, TOKEN, _path

from forecast.clock import FixedClock
from forecast.ingest.replay import Replay
from forecast.notify.receiver import Receiver
from forecast.notify.slack import render
from forecast.pipeline.context import Context
from forecast.pipeline.deliver import (
    DeliveryReport,
    Sender,
    deliver_due,
    replay_dead_letters,
    senders_from_settings,
)
from forecast.pipeline.tick import Feeds, run_tick
from forecast.settings import load_settings
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage import outbox
from forecast.storage.engine import transaction
from forecast.storage.tables import alert_messages

NO_JITTER = lambda: 0.0  # noqa: E731  (backoff = base · 2^(n−1) · 0.5: deterministic)


def _env(slack: Receiver | None, hook: Receiver | None, **extra: str) -> dict[str, str]:
    env = {"FORECAST_PUBLIC_URL": "http://127.0.0.1:8000", "FORECAST_DELIVERY_TIMEOUT_S": "2"}
    if slack is not None:
        env |= {"FORECAST_SLACK_TOKEN": TOKEN, "FORECAST_SLACK_CHANNEL": "C-STAFF",
                "FORECAST_SLACK_OPS_CHANNEL": "C-OPS",
                "FORECAST_SLACK_API_URL": slack.slack_api_url}
    if hook is not None:
        env |= {"FORECAST_WEBHOOK_URL": hook.webhook_url, "FORECAST_WEBHOOK_SECRET": SECRET}
    return env | extra


class World:
    """A two-river synthetic catalogue, the replayed rise of ``test_notify_stage``, a
    FixedClock, and the delivery channels pointing at the given receivers."""

    def __init__(self, engine: Engine, env: dict[str, str]) -> None:
        self.cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
        obs, _ = _path(self.cat)
        self.feeds = Feeds(replay=Replay.of(obs, name="simulated"))
        self.clock = FixedClock(T0)
        self.env = env
        self.ctx = Context.of(engine, self.cat, clock=self.clock, settings=load_settings(env))
        self.senders: dict[str, Sender] = senders_from_settings(self.ctx.settings)
        self.reports: list[DeliveryReport] = []

    def deliver(self, c: Context | None = None) -> DeliveryReport:
        got = deliver_due(c or self.ctx, self.senders, rand=NO_JITTER)
        self.reports.append(got)
        return got

    def ticks(self, ks: range, *, deliver: bool = True) -> None:
        """Ticks every 30 min (k: T0 + 30 min · k), each run 20 min after its issue time,
        delivering after each (a first tick at 07:00 opens the other river's data problem;
        the level rises through standby and caution from 07:30 to 11:00)."""
        for k in ks:
            t = T0 + timedelta(minutes=30 * k)
            self.clock.set(t + timedelta(minutes=20))
            tick = run_tick(self.ctx, t, feeds=self.feeds, models=lambda r: None,
                            deliver=(lambda c: self.deliver(c)) if deliver else None)
            assert tick.cycle is not None

    def drain(self, *, step: timedelta = timedelta(minutes=5), rounds: int = 20) -> None:
        """Deliver with the clock advancing until nothing is pending (backoffs pass)."""
        for _ in range(rounds):
            if not self.rows(status="pending"):
                return
            self.clock.advance(step)
            self.deliver()
        raise AssertionError(f"still pending: {self.rows(status='pending')}")

    def rows(self, *, channel: str | None = None, status: str | None = None
             ) -> list[dict[str, Any]]:
        with self.ctx.engine.connect() as conn:
            got = outbox.read_outbox(conn, status=status, limit=10_000)
        return sorted((r for r in got if channel is None or r["channel"] == channel),
                      key=lambda r: r["id"])

    def message_ids(self) -> set[int]:
        with self.ctx.engine.connect() as conn:
            return {int(i) for i in conn.execute(sa.select(alert_messages.c.id)).scalars()}


def _slack_ok(r: Receiver) -> list[dict[str, Any]]:
    """Successful chat.postMessage requests (the receiver answered them ``ok``)."""
    return [e for e in r.received if e["path"].endswith("chat.postMessage")
            and e["status"] == 200 and e["mode"] in ("ok", "slow")]


def _hooks(r: Receiver) -> list[dict[str, Any]]:
    return [e for e in r.received if e["path"] == "/webhook"]


def assert_exactly_once(w: World, *, slack: Receiver | None, hook: Receiver | None) -> None:
    """Every outbox row sent, none pending or dead; each delivered exactly once after dedupe."""
    rows = w.rows()
    assert rows, "the ticks queued messages"
    assert {r["status"] for r in rows} == {"sent"}, [(r["id"], r["status"]) for r in rows]
    assert all(r["last_error"] is None and r["attempts"] >= 1 for r in rows)
    ids = w.message_ids()
    if hook is not None:
        keys = {r["dedup_key"] for r in rows if r["channel"] == "webhook"}
        assert set(hook.unique) == keys
        # every lifecycle message reached the webhook (ops messages have no message id)
        assert {int(k.split(":")[1]) for k in keys if k.split(":")[1].isdigit()} == ids
        assert len(_hooks(hook)) >= len(keys)
    if slack is not None:
        sent = [r for r in rows if r["channel"] == "slack"]
        got = Counter(e["body"]["text"] for e in _slack_ok(slack))
        assert got == Counter(render(r["payload"])["text"] for r in sent)
        assert {r["message_id"] for r in sent if r["message_id"] is not None} == ids


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    with Receiver(webhook_secret=SECRET, slack_token=TOKEN, delay_s=0.3, hang_s=1.0) as r:
        yield r


@pytest.mark.parametrize("fault", ["down", "error500"])
def test_receiver_failing_for_an_hour_then_back_delivers_everything_once(
        engine: Engine, receiver: Receiver, fault: str) -> None:
    w = World(engine, _env(receiver, receiver))
    receiver.mode = fault
    w.ticks(range(14, 17))   # 07:20 → 08:20 replayed: an hour of failures, tried every tick
    pending = w.rows(status="pending")
    assert {r["channel"] for r in pending} == {"slack", "webhook"} and not w.rows(status="sent")
    first = min(pending, key=lambda r: r["id"])
    assert first["attempts"] == 3   # queued at 07:20, tried at 07:20, 07:50, 08:20
    expected = ({"slack": "cannot reach the Slack API", "webhook": "cannot reach 127.0.0.1"}
                if fault == "down" else {"slack": "(HTTP 500)", "webhook": "HTTP 500 from"})
    for r in pending:
        assert expected[r["channel"]] in r["last_error"], r["last_error"]
    assert sum(rep.retried for rep in w.reports) == sum(r["attempts"] for r in pending)
    assert not any(rep.dead for rep in w.reports)
    if fault == "error500":   # the receiver saw the attempts and refused them
        assert len([e for e in _hooks(receiver) if e["status"] == 500]) == sum(
            r["attempts"] for r in pending if r["channel"] == "webhook")
    tried = {r["id"]: r["attempts"] for r in pending}
    receiver.mode = "ok"
    w.clock.advance(timedelta(minutes=2))   # past the longest backoff so far (30 s · 2² · ½)
    got = w.deliver()
    assert got.sent == len(pending) and not got.retried
    w.ticks(range(17, 21))   # the rise goes on, delivered as it comes
    assert_exactly_once(w, slack=receiver, hook=receiver)
    after = {r["id"]: r["attempts"] for r in w.rows()}
    assert all(after[i] == n + 1 for i, n in tried.items())   # one successful attempt more
    assert any(n > 1 for n in after.values())
    assert all(n == 1 for i, n in after.items() if i not in tried)


def test_receiver_hanging_past_the_timeout_is_retried_then_delivered_once(
        engine: Engine, receiver: Receiver) -> None:
    w = World(engine, _env(receiver, receiver, FORECAST_DELIVERY_TIMEOUT_S="0.5"))
    receiver.mode = "hang"
    w.ticks(range(14, 16))
    pending = w.rows(status="pending")
    assert len(pending) == 4 and not w.rows(status="sent")
    for r in pending:
        assert ("no answer from 127.0.0.1" if r["channel"] == "webhook"
                else "cannot reach the Slack API") in r["last_error"], r["last_error"]
        assert "timeout" in r["last_error"].lower() or "timed out" in r["last_error"].lower()
    assert not receiver.unique   # nothing was accepted while it hung
    receiver.mode = "ok"
    w.clock.advance(timedelta(minutes=2))
    w.deliver()
    w.ticks(range(16, 19))
    assert_exactly_once(w, slack=receiver, hook=receiver)
    assert sorted(r["attempts"] for r in w.rows() if r["id"] in {p["id"] for p in pending}) \
        == [2, 2, 3, 3]


def test_slow_receiver_within_the_timeout_is_delivered_at_the_first_attempt(
        engine: Engine, receiver: Receiver) -> None:
    w = World(engine, _env(receiver, receiver))   # timeout 2 s, the receiver waits 0.3 s
    receiver.mode = "slow"
    w.ticks(range(14, 19))
    assert_exactly_once(w, slack=receiver, hook=receiver)
    assert {r["attempts"] for r in w.rows()} == {1}
    assert not any(rep.retried or rep.dead or rep.errors for rep in w.reports)
    assert {e["mode"] for e in receiver.received} == {"slow"}
    assert len(_hooks(receiver)) == len(receiver.unique)   # no duplicate either


_DYING_DELIVERER = """
import json, sys, time
from datetime import datetime
from forecast.clock import FixedClock
from forecast.pipeline.context import Context
from forecast.pipeline.deliver import deliver_due, senders_from_settings
from forecast.settings import load_settings
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage.engine import create_engine

url, at, env = sys.argv[1], datetime.fromisoformat(sys.argv[2]), json.loads(sys.argv[3])
settings = load_settings(env)
ctx = Context.of(create_engine(url), synthetic_catalogue(2, seed=4, crisis_share=0.0),
                 clock=FixedClock(at), settings=settings)
real = senders_from_settings(settings)["webhook"]

def send_then_hang(payload, *, delivery_id, thread_ts):
    real(payload, delivery_id=delivery_id, thread_ts=thread_ts)   # sent, never marked
    print("sent", delivery_id, flush=True)
    time.sleep(120)

deliver_due(ctx, {"webhook": send_then_hang})
print("not killed", flush=True)
"""


def test_a_deliverer_killed_after_claiming_is_replaced_when_its_lease_runs_out(
        engine: Engine, receiver: Receiver) -> None:
    """A real deliverer process claims the due messages (committed), sends the first one and
    is SIGKILLed before marking it or sending the others: the next deliverer, once the lease
    ran out, sends them all; the first twice (at least once), deduplicated by the receiver."""
    w = World(engine, _env(None, receiver))
    w.ticks(range(14, 19), deliver=False)   # queued and committed by the notify stage
    queued = w.rows()
    assert len(queued) >= 4 and {r["status"] for r in queued} == {"pending"}
    now = w.clock.now()
    with subprocess.Popen(
            [sys.executable, "-c", _DYING_DELIVERER,
             engine.url.render_as_string(hide_password=False), now.isoformat(),
             json.dumps(w.env)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}) as child:
        try:
            assert child.stdout is not None and child.stderr is not None
            line = child.stdout.readline()
            if not line.startswith("sent webhook:"):
                child.kill()
                pytest.fail(f"the deliverer did not send: {line!r} {child.stderr.read()}")
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
    lease = timedelta(seconds=w.ctx.settings.delivery_timeout_s * 3 + 60)
    claimed = w.rows()
    assert {r["status"] for r in claimed} == {"pending"}
    assert {r["attempts"] for r in claimed} == {0}   # nobody marked anything
    assert {_utc(r["next_attempt_at"]) for r in claimed} == {now + lease}
    assert len(receiver.unique) == 1 and line.split()[1] in receiver.unique
    w.clock.set(now + lease - timedelta(seconds=1))   # the lease still holds: nothing due
    assert w.deliver().sent == 0 and len(_hooks(receiver)) == 1
    w.clock.set(now + lease)
    assert w.deliver().sent == len(queued)
    assert_exactly_once(w, slack=None, hook=receiver)
    assert len(_hooks(receiver)) == len(queued) + 1 >= len(receiver.unique)   # ≥ 1 each
    dup = Counter(e["headers"]["X-Forecast-Delivery"] for e in _hooks(receiver))
    assert dup[line.split()[1]] == 2 and all(n >= 1 for n in dup.values())
    assert {r["attempts"] for r in w.rows()} == {1}


def test_a_claim_committed_without_sending_is_delivered_after_the_lease(
        engine: Engine, receiver: Receiver) -> None:
    """The same death in process, on both channels: the claim committed, nothing sent."""
    w = World(engine, _env(receiver, receiver))
    w.ticks(range(14, 18), deliver=False)
    now = w.clock.now()
    lease = timedelta(seconds=w.ctx.settings.delivery_timeout_s * 3 + 60)
    with transaction(w.ctx.engine, "a deliverer that dies after claiming") as conn:
        claimed = outbox.claim(conn, now=now, lease=lease)
    assert len(claimed) == len(w.rows()) >= 6
    w.clock.advance(lease / 2)
    assert w.deliver().sent == 0 and not receiver.received
    w.clock.set(now + lease)
    assert w.deliver().sent == len(claimed)
    assert_exactly_once(w, slack=receiver, hook=receiver)
    assert {r["attempts"] for r in w.rows()} == {1}


def test_dead_letters_raise_an_ops_message_and_replay_delivers_them_once(
        engine: Engine) -> None:
    with (Receiver(slack_token=TOKEN) as slack,
          Receiver(webhook_secret=SECRET) as hook):
        w = World(engine, _env(slack, hook, FORECAST_DELIVERY_MAX_ATTEMPTS="3"))
        hook.mode = "down"
        w.ticks(range(14, 19))
        w.drain()
        dead = w.rows(status="dead")
        assert dead and {r["channel"] for r in dead} == {"webhook"}
        assert all(r["attempts"] == 3 and "cannot reach 127.0.0.1" in r["last_error"]
                   for r in dead)
        assert sum(rep.dead for rep in w.reports) == len(dead)
        with w.ctx.engine.connect() as conn:
            assert [r["id"] for r in outbox.dead_letters(conn)] == [r["id"] for r in dead]
        # one ops message per dead letter, to the other channel, delivered there
        ops = [r for r in w.rows(channel="slack") if r["payload"].get("topic") == "ops"]
        assert sorted(r["dedup_key"] for r in ops) == sorted(f"slack:dead:{r['id']}"
                                                             for r in dead)
        assert all(r["status"] == "sent" and r["attempts"] == 1 for r in ops)
        for r in ops:
            d = r["payload"]["delivery"]
            assert (d["channel"], d["attempts"]) == ("webhook", 3)
            assert r["payload"]["problems"] == [
                f"delivery to webhook failed 3 times: {d['error']}"]
        to_ops = [e for e in _slack_ok(slack) if e["body"]["channel"] == "C-OPS"]
        assert Counter(e["body"]["text"] for e in to_ops) >= Counter(
            render(r["payload"])["text"] for r in ops)
        assert not hook.unique
        # replay with the receiver back: each delivered once, no new ops message
        hook.mode = "ok"
        assert sorted(replay_dead_letters(w.ctx)) == [r["id"] for r in dead]
        assert replay_dead_letters(w.ctx) == []
        got = w.deliver()
        assert got.sent == len(dead) and not got.errors
        assert_exactly_once(w, slack=slack, hook=hook)
        assert len(_hooks(hook)) == len(hook.unique) == len(dead)
        assert len([r for r in w.rows() if r["payload"].get("topic") == "ops"]) == len(ops)


def test_a_revoked_slack_token_dead_letters_at_once_without_retrying(
        engine: Engine, receiver: Receiver) -> None:
    w = World(engine, _env(receiver, receiver, FORECAST_SLACK_TOKEN="xoxb-revoked"))
    w.ticks(range(14, 17))
    w.clock.advance(timedelta(hours=1))
    w.deliver()
    slack_rows = w.rows(channel="slack")
    assert slack_rows and {r["status"] for r in slack_rows} == {"dead"}
    assert {r["attempts"] for r in slack_rows} == {1}
    assert all("invalid_auth" in r["last_error"] for r in slack_rows)
    posts = [e for e in receiver.received if e["path"].endswith("chat.postMessage")]
    assert len(posts) == len(slack_rows)   # each tried once, never again
    assert not any(rep.retried for rep in w.reports)
    # the webhook got everything once, and the operators heard of each dead letter there
    hook_rows = w.rows(channel="webhook")
    assert {r["status"] for r in hook_rows} == {"sent"} and not w.rows(status="pending")
    assert set(receiver.unique) == {r["dedup_key"] for r in hook_rows}
    ops = {r["dedup_key"] for r in hook_rows if r["payload"].get("topic") == "ops"}
    assert ops == {f"webhook:dead:{r['id']}" for r in slack_rows}
    assert {int(r["dedup_key"].split(":")[1]) for r in hook_rows
            if r["payload"].get("topic") != "ops"} == w.message_ids()
    for key in ops:
        assert receiver.unique[key]["delivery"]["channel"] == "slack"
        assert "invalid_auth" in receiver.unique[key]["delivery"]["error"]


def _utc(t: datetime) -> datetime:
    """SQLite gives naive UTC back."""
    from datetime import UTC

    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
