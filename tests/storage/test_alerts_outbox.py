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
from forecast.storage.tables import alert_events, alert_state, audit_log, forecast_runs
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
    alerts.put_state(conn, "koto", level_name="caution_m", basis="forecast", since=NOW,
                     updated_at=NOW)
    event = alerts.add_event(conn, river_id="koto", occurred_at=NOW, kind="raise",
                             from_level=None, to_level="caution_m", basis="forecast",
                             message="氾濫注意 forecast within 2 h", created_at=NOW)
    for channel in ("slack", "webhook"):
        outbox.enqueue(conn, channel=channel, dedup_key=f"koto:{event}:{channel}",
                       payload={"event": event, "run": run_id}, now=NOW)
    audit.audit(conn, at=NOW, actor="cycle", action="alert.raise", target="koto")


def _counts(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in (forecast_runs, alert_state, alert_events, outbox_table, audit_log)]


def test_forecast_and_companions_commit_together(engine: Engine) -> None:
    with transaction(engine) as conn:
        _raise_on_forecast(conn)
    assert _counts(engine) == [1, 1, 1, 2, 1]


def test_a_failure_leaves_none_of_them(engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as conn:
        _raise_on_forecast(conn)
        raise RuntimeError("the process died before commit")
    assert _counts(engine) == [0, 0, 0, 0, 0]


def test_alert_state_is_one_row_per_river_and_events_accumulate(engine: Engine) -> None:
    assert run(engine, alerts.get_state, "koto") is None
    run(engine, alerts.put_state, "koto", level_name="caution_m", basis="observed", since=NOW,
        updated_at=NOW)
    later = NOW + timedelta(hours=1)
    run(engine, alerts.put_state, "koto", level_name="danger_m", basis="forecast", since=NOW,
        updated_at=later, acknowledged_by="duty officer", acknowledged_at=later)
    st = run(engine, alerts.get_state, "koto")
    assert (st["level_name"], st["basis"], st["acknowledged_by"]) == \
        ("danger_m", "forecast", "duty officer")
    assert st["updated_at"] == later and st["since"] == NOW
    for kind in ("raise", "escalate"):
        run(engine, alerts.add_event, river_id="koto", occurred_at=NOW, kind=kind,
            from_level=None, to_level="danger_m", basis="forecast", message=kind,
            created_at=NOW)
    assert [e["kind"] for e in run(engine, alerts.read_events, "koto")] == ["escalate", "raise"]
    assert run(engine, alerts.read_events, "other") == []


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
