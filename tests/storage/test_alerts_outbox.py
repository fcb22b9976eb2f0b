"""Alert state and events, the outbox, and the unit of work that commits a forecast with its
companions (alert state change, alert event, outbox rows, audit row) or none of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import run
from sqlalchemy.engine import Engine

from forecast.storage import alerts, audit, forecasts, outbox
from forecast.storage.engine import transaction
from forecast.storage.tables import (
    alert_messages,
    alert_streams,
    audit_log,
    forecast_runs,
    notifications,
)
from forecast.storage.tables import outbox as outbox_table

NOW = datetime(2024, 7, 1, 3, tzinfo=UTC)


def _forecast() -> pd.DataFrame:
    t = pd.Timestamp(NOW)
    h = np.arange(1, 7)
    return pd.DataFrame({"river_id": "koto", "issued_at": t,
                         "valid_at": t + pd.to_timedelta(h, unit="h"), "horizon_h": h,
                         "level": 5.0 + 0.1 * h, "q10": 4.8 + 0.1 * h, "q50": 5.0 + 0.1 * h,
                         "q90": 5.4 + 0.1 * h, "model_version": "v1"})


def _raise_on_forecast(conn: sa.Connection) -> None:
    """What the notification stage will do: forecast, state, event, outbox rows, audit."""
    run_id = forecasts.save_forecast(conn, _forecast(), model_variant="full", input_cutoff=NOW,
                                     degraded=False, inputs={}, created_at=NOW)
    key = "koto:jiseiji:level"
    event_key = f"{key}:20240701T0300Z"
    alerts.put_stream(conn, stream_key=key, river_id="koto", gauge="jiseiji", topic="level",
                      state={"level": 2}, updated_at=NOW)
    nid = alerts.add_notification(conn, event_key=event_key, stream_key=key, river_id="koto",
                                  gauge="jiseiji", topic="level", level=2, basis="forecast",
                                  raised_at=NOW, cycle_id=None, forecast_run_id=run_id,
                                  details={})
    mid = alerts.add_message(conn, event_key=event_key, stream_key=key, river_id="koto",
                             notification_id=nid, kind="raise", topic="level", level=2,
                             from_level=None, occurred_at=NOW, created_at=NOW, cycle_id=None)
    for channel in ("slack", "webhook"):
        outbox.enqueue(conn, channel=channel, dedup_key=f"{channel}:{mid}",
                       payload={"message_id": mid, "run": run_id}, now=NOW, message_id=mid)
    audit.audit(conn, at=NOW, actor="cycle", action="alert.raise", target="koto")


def _counts(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in (forecast_runs, alert_streams, notifications, alert_messages,
                          outbox_table, audit_log)]


def test_forecast_and_companions_commit_together(engine: Engine) -> None:
    with transaction(engine) as conn:
        _raise_on_forecast(conn)
    assert _counts(engine) == [1, 1, 1, 1, 2, 1]


def test_a_failure_leaves_none_of_them(engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as conn:
        _raise_on_forecast(conn)
        raise RuntimeError("the process died before commit")
    assert _counts(engine) == [0, 0, 0, 0, 0, 0]


def test_notification_states_follow_the_current_level(engine: Engine) -> None:
    ev = "koto:jiseiji:level:20240701T0300Z"
    ids = {}
    for level in (1, 2, 3):
        ids[level] = run(engine, alerts.add_notification, event_key=ev,
                         stream_key="koto:jiseiji:level", river_id="koto", gauge="jiseiji",
                         topic="level", level=level, basis="observed", raised_at=NOW,
                         cycle_id=None, forecast_run_id=None, details={})
    later = NOW + timedelta(hours=1)
    run(engine, alerts.set_notification_states, ev, at=later, current=2)

    def states() -> dict[int, str]:
        return {n["level"]: n["state"] for n in run(engine, alerts.read_notifications)}

    assert states() == {1: "superseded", 2: "active", 3: "lowered"}
    run(engine, alerts.acknowledge_notification, ids[2], by="suzuki", at=later)
    assert [n["level"] for n in run(engine, alerts.read_notifications, active=True)] == [2]
    run(engine, alerts.set_notification_states, ev, at=later, current=2)   # stays acknowledged
    assert states()[2] == "acknowledged"
    run(engine, alerts.set_notification_states, ev, at=later, current=None, cleared=True)
    assert set(states().values()) == {"cleared"}
    assert run(engine, alerts.read_notifications, active=True) == []
    assert run(engine, alerts.find_notification, ev, 2)["acknowledged_by"] == "suzuki"


def test_current_cap_keeps_open_events_and_recent_cancels(engine: Engine) -> None:
    def msg(ev: str, kind: str, at: datetime) -> None:
        mid = run(engine, alerts.add_message, event_key=ev, stream_key="s", river_id="koto",
                  notification_id=None, kind=kind, topic="level", level=1, from_level=None,
                  occurred_at=at, created_at=at, cycle_id=None)
        run(engine, alerts.set_message, mid, payload={}, cap_identifier=f"id{mid}",
            cap_xml=f"<alert>{mid}</alert>")

    msg("open", "raise", NOW)
    msg("open", "escalate", NOW + timedelta(hours=1))
    msg("old", "raise", NOW - timedelta(days=3))
    msg("old", "clear", NOW - timedelta(days=2))
    msg("recent", "raise", NOW)
    msg("recent", "clear", NOW + timedelta(hours=2))
    got = run(engine, alerts.current_cap, closed_since=NOW - timedelta(days=1))
    assert [(m["event_key"], m["kind"]) for m in got] == [("recent", "clear"),
                                                          ("open", "escalate")]
    assert run(engine, alerts.get_cap, "id2") == "<alert>2</alert>"
    assert len(run(engine, alerts.all_cap)) == 6


def test_outbox_dedups_retries_dead_letters_and_requeues(engine: Engine) -> None:
    first = run(engine, outbox.enqueue, channel="slack", dedup_key="k1", payload={"a": 1},
                now=NOW)
    assert first is not None
    assert run(engine, outbox.enqueue, channel="slack", dedup_key="k1", payload={"a": 2},
               now=NOW) is None                     # the same message is never queued twice
    second = run(engine, outbox.enqueue, channel="cap", dedup_key="k2", payload={}, now=NOW)
    assert [m["id"] for m in run(engine, outbox.claim, now=NOW)] == [first, second]
    assert run(engine, outbox.claim, now=NOW - timedelta(seconds=1)) == []   # not due yet
    retry = NOW + timedelta(minutes=2)
    run(engine, outbox.mark_failed, first, at=NOW, error="HTTP 503", retry_at=retry)
    run(engine, outbox.mark_sent, second, at=NOW)
    assert run(engine, outbox.claim, now=NOW + timedelta(minutes=1)) == []
    (due,) = run(engine, outbox.claim, now=retry)
    assert (due["id"], due["attempts"], due["last_error"]) == (first, 1, "HTTP 503")
    assert due["payload"] == {"a": 1}
    run(engine, outbox.mark_failed, first, at=retry, error="HTTP 503", retry_at=None)
    assert [m["id"] for m in run(engine, outbox.dead_letters)] == [first]
    assert run(engine, outbox.claim, now=retry + timedelta(days=1)) == []
    assert run(engine, outbox.requeue, first, now=retry) is True
    assert run(engine, outbox.requeue, second, now=retry) is False   # delivered: not dead
    (again,) = run(engine, outbox.claim, now=retry)
    assert (again["id"], again["attempts"], again["status"]) == (first, 0, "pending")


def test_two_deliverers_never_claim_the_same_message(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite has a single writer)")
    for i in range(4):
        run(engine, outbox.enqueue, channel="slack", dedup_key=f"k{i}", payload={}, now=NOW)
    with transaction(engine) as a:
        got_a = [m["id"] for m in outbox.claim(a, now=NOW, limit=2)]
        with transaction(engine) as b:
            got_b = [m["id"] for m in outbox.claim(b, now=NOW, limit=10)]
    assert len(got_a) == 2 and len(got_b) == 2 and not set(got_a) & set(got_b)


def test_a_lease_hides_a_claimed_message_until_it_runs_out(engine: Engine) -> None:
    mid = run(engine, outbox.enqueue, channel="webhook", dedup_key="w1", payload={}, now=NOW)
    lease = timedelta(minutes=2)
    assert [m["id"] for m in run(engine, outbox.claim, now=NOW, lease=lease)] == [mid]
    assert run(engine, outbox.claim, now=NOW + timedelta(minutes=1), lease=lease) == []
    # the deliverer died before marking it: due again once the lease has run out
    assert [m["id"] for m in run(engine, outbox.claim, now=NOW + lease, lease=lease)] == [mid]
    assert run(engine, outbox.status_counts) == {("webhook", "pending"): 1}
