"""The notification stage through the tick, end to end: a level path rising through a river's
ladder and falling again, replayed tick by tick (every 30 min) through ``run_tick`` with the
real notify stage and the real outbox delivery to a loopback receiver (Slack Web API and a
signed webhook), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xmlschema
from helpers import run
from sqlalchemy.engine import Engine

from forecast.catalogue import AlertLevel
from forecast.clock import FixedClock
from forecast.ingest.replay import Replay
from forecast.notify.receiver import Receiver
from forecast.pipeline.context import Context
from forecast.pipeline.deliver import deliver_due, senders_from_settings
from forecast.pipeline.notify import acknowledge_notification
from forecast.pipeline.tick import Feeds, run_tick
from forecast.settings import load_settings
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage import alerts, audit, outbox

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
SECRET = "s3cret-for-tests"
TOKEN = "xoxb-test-token"
CAP_XSD = "tests/data/cap-1.2/CAP-v1.2.xsd"


def _path(cat) -> tuple[pd.DataFrame, list[tuple[AlertLevel, float]]]:  # type: ignore[no-untyped-def]
    """10-min levels at the first river's primary gauge: 6 h calm, a rise through caution,
    a 2 h crest, a fall back to calm over 4 h, then 8 h calm; the other river's gauge is never
    heard from (a data problem)."""
    river = cat.rivers[0]
    ladder = [(AlertLevel.from_key(n), v) for n, v in river.thresholds.ladder()]
    low, caution = ladder[0][1] - 0.6, ladder[1][1]
    times = pd.date_range(T0 - timedelta(days=2), T0 + timedelta(hours=20), freq="10min")
    hours = (times - pd.Timestamp(T0)) / pd.Timedelta(hours=1)
    crest = caution + 0.15
    level = np.select([hours < 6, hours < 9, hours < 11, hours < 15],
                      [low, low + (crest - low) * (hours - 6) / 3, crest,
                       crest - (crest - low) * (hours - 11) / 4], low)
    obs = pd.DataFrame({"station_id": river.primary_gauge, "variable": "level_m",
                        "time": times, "value": level, "flag": 0, "qc_rule": None,
                        "provisional": False})
    return obs, ladder


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    with Receiver(webhook_secret=SECRET, slack_token=TOKEN) as r:
        yield r


def _ctx(engine: Engine, cat, clock: FixedClock, r: Receiver) -> Context:  # type: ignore[no-untyped-def]
    settings = load_settings({
        "FORECAST_WEBHOOK_URL": r.webhook_url, "FORECAST_WEBHOOK_SECRET": SECRET,
        "FORECAST_SLACK_TOKEN": TOKEN, "FORECAST_SLACK_CHANNEL": "C-STAFF",
        "FORECAST_SLACK_OPS_CHANNEL": "C-OPS", "FORECAST_SLACK_API_URL": r.slack_api_url,
        "FORECAST_PUBLIC_URL": "http://127.0.0.1:8000", "FORECAST_DELIVERY_TIMEOUT_S": "2"})
    return Context.of(engine, cat, clock=clock, settings=settings)


def test_a_rise_and_fall_raises_escalates_lowers_clears_and_delivers_once(
        engine: Engine, receiver: Receiver) -> None:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    obs, ladder = _path(cat)
    river = cat.rivers[0]
    clock = FixedClock(T0)
    ctx = _ctx(engine, cat, clock, receiver)
    senders = senders_from_settings(ctx.settings)
    feeds = Feeds(replay=Replay.of(obs, name="simulated"))
    for k in range(40):   # 20 h of ticks
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        tick = run_tick(ctx, t, feeds=feeds, models=lambda r: None,
                        deliver=lambda c: deliver_due(c, senders))
        assert tick.cycle is not None
    with ctx.engine.connect() as conn:
        msgs = list(reversed(alerts.read_messages(conn, river_id=river.id)))
        rows = alerts.read_notifications(conn, river_id=river.id)
        other = alerts.read_notifications(conn, river_id=cat.rivers[1].id)
        sent = outbox.status_counts(conn)
    level_msgs = [(m["kind"], m["level"]) for m in msgs if m["topic"] == "level"]
    # standby at the first tick ≥ its crossing, then caution (reminders between them while
    # unacknowledged); falls: caution held by the dead band, lowered after 60 min below it,
    # below every level, all-clear 180 min after that
    changes = [(k, lv) for k, lv in level_msgs if k != "remind"]
    assert changes == [("raise", int(AlertLevel.STANDBY)), ("escalate", int(AlertLevel.CAUTION)),
                       ("lower", int(AlertLevel.STANDBY)), ("lower", None), ("clear", None)], \
        level_msgs
    assert [k for k, _ in level_msgs if k in ("raise", "clear")] == ["raise", "clear"]
    kinds = [k for k, _ in level_msgs]
    assert kinds.index("clear") > kinds.index("lower")
    assert {n["level"]: n["state"] for n in rows if n["topic"] == "level"} == {
        int(AlertLevel.STANDBY): "cleared", int(AlertLevel.CAUTION): "cleared"}
    # the crossings, independently from the path: first 10-min reading at or above
    first = {lv: obs.loc[obs["value"] >= h, "time"].min() for lv, h in ladder[:2]}
    raised = {m["level"]: m["occurred_at"] for m in msgs if m["kind"] in ("raise", "escalate")}
    for lv, crossed in first.items():
        assert crossed <= raised[int(lv)] < crossed + timedelta(minutes=30)
    # the never-heard gauge of the other river is a data problem for the duty officer
    assert [(n["topic"], n["level"], n["state"]) for n in other] == [("data", 0, "active")]
    # every message delivered, exactly once after deduplication, signed, and threaded
    assert sent.get(("webhook", "pending"), 0) == sent.get(("slack", "pending"), 0) == 0
    hooks = [r for r in receiver.received if r["path"] == "/webhook"]
    assert len({r["headers"]["X-Forecast-Delivery"] for r in hooks}) == len(
        [m for m in msgs]) + 1   # + the other river's data problem
    slack = [r for r in receiver.received if r["path"].endswith("chat.postMessage")]
    ev = [r for r in slack if r["body"].get("channel") == "C-STAFF"]
    assert ev[0]["body"].get("thread_ts") is None
    assert all(r["body"].get("thread_ts") for r in ev[1:]), "later messages thread"
    assert any(r["body"].get("channel") == "C-OPS" for r in slack)
    # CAP: one message per level message, Alert → Update … → Cancel, schema-valid
    schema = xmlschema.XMLSchema(CAP_XSD)
    caps = [m for m in msgs if m["cap_xml"]]
    assert len(caps) == len(level_msgs)
    for m in caps:
        schema.validate(m["cap_xml"])
    assert "<msgType>Alert</msgType>" in caps[0]["cap_xml"]
    assert "<msgType>Cancel</msgType>" in caps[-1]["cap_xml"]
    assert caps[0]["cap_identifier"] in caps[-1]["cap_xml"]   # referenced


def test_acknowledge_is_audited_threaded_and_stops_reminders(
        engine: Engine, receiver: Receiver) -> None:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    obs, _ = _path(cat)
    river = cat.rivers[0]
    clock = FixedClock(T0)
    ctx = _ctx(engine, cat, clock, receiver)
    feeds = Feeds(replay=Replay.of(obs, name="simulated"))
    for k in range(0, 20):   # up to 9 h 30: caution reached at ~8 h
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        run_tick(ctx, t, feeds=feeds, models=lambda r: None)
    (active,) = [n for n in run(engine, alerts.read_notifications, active=True,
                                river_id=river.id)]
    assert active["level"] == int(AlertLevel.CAUTION)
    got = acknowledge_notification(ctx, active["id"], user="suzuki", note="pumps started")
    assert (got["state"], got["acknowledged_by"]) == ("acknowledged", "suzuki")
    (entry,) = run(engine, audit.read_audit, action="notification.acknowledge")
    assert entry["actor"] == "suzuki" and entry["details"]["notification_id"] == active["id"]
    with pytest.raises(Exception, match="already acknowledged by suzuki"):
        acknowledge_notification(ctx, active["id"], user="tanaka")
    with pytest.raises(Exception, match="no notification 999"):
        acknowledge_notification(ctx, 999, user="tanaka")
    before = len(run(engine, alerts.read_messages, river_id=river.id))
    for k in range(20, 23):   # the crest persists: no reminder once acknowledged
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        run_tick(ctx, t, feeds=feeds, models=lambda r: None)
    kinds = [m["kind"] for m in run(engine, alerts.read_messages, river_id=river.id)]
    assert "remind" not in kinds[: len(kinds) - before]


def test_a_forced_rerun_or_an_older_issue_time_never_notifies_again(engine: Engine) -> None:
    cat = synthetic_catalogue(2, seed=4, crisis_share=0.0)
    obs, _ = _path(cat)
    clock = FixedClock(T0)
    ctx = Context.of(engine, cat, clock=clock)
    feeds = Feeds(replay=Replay.of(obs, name="simulated"))
    for k in range(20):
        t = T0 + timedelta(minutes=30 * k)
        clock.set(t + timedelta(minutes=20))
        run_tick(ctx, t, feeds=feeds, models=lambda r: None)
    before = run(engine, alerts.read_messages)
    states = run(engine, alerts.read_streams)
    assert before, "the path raises notifications"
    # the newest issue time again, then older ones (stepped, T3 would start the release
    # clock and T14, 5.5 h later, would lower the level)
    for k in (19, 3, 14):
        run_tick(ctx, T0 + timedelta(minutes=30 * k), feeds=feeds, models=lambda r: None,
                 force=True)
    assert run(engine, alerts.read_messages) == before
    assert {k: v["state"] for k, v in run(engine, alerts.read_streams).items()} == {
        k: v["state"] for k, v in states.items()}
