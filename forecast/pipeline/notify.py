"""The tick's notification stage: forecasts + observations → alert engine → notifications,
messages and outbox rows, committed together; and the operators' actions on them.

For each river, in its own transaction: read the states of its streams (the primary gauge's
ladder, other crisis gauges' 氾濫開始, data problems), run the engine
(``forecast.alerts``), and store the new states, the notifications, each message with its
canonical payload and CAP rendering, and one outbox row per configured channel. Delivery
happens after commit (``pipeline.deliver``). A river whose stage fails is logged and the others
go on; its state is unchanged, so the next tick evaluates it again (nothing is lost). A
stream remembers the newest issue time it evaluated: a forced re-run of an issue time, or an
older one caught up after a newer one, does not step it again (no duplicate or backward
notification). Its rows are locked for the transaction (PostgreSQL), so two processes never
evaluate one river at once.

``acknowledge`` (a named user, audited, in the same transaction as its message and outbox
rows) and ``send_test`` are the operators' actions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from forecast.alerts.lifecycle import Stream, StreamState, acknowledge, step, step_data
from forecast.alerts.notice import LeadForecast, Notice, StreamInput
from forecast.alerts.rules import assess, overflow_gauges, river_ladder
from forecast.catalogue import AlertLevel, River
from forecast.errors import ConflictError, ForecastError, NotFoundError
from forecast.features.crisis import SILENCE_NOT_LOW_WATER
from forecast.frames import LEVEL, Flag
from forecast.notify.cap import cap_xml
from forecast.notify.messages import build_payload, test_payload
from forecast.pipeline.context import Context
from forecast.pipeline.cycle import CycleReport, Inputs
from forecast.storage import alerts, audit, outbox
from forecast.storage.engine import transaction
from forecast.storage.observations import has_simulated_data

log = logging.getLogger(__name__)

OBSERVED_WINDOW = timedelta(minutes=30)
EVALUATED_AT = "evaluated_at"
"""Key of the stream state's JSON: the newest issue time the engine has evaluated."""
_JST = "Asia/Tokyo"


@dataclass
class NotifyReport:
    """What the stage did: messages by kind, rivers whose stage failed."""

    messages: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.messages[kind] = self.messages.get(kind, 0) + 1


def channels(ctx: Context) -> list[str]:
    """The configured delivery channels (``slack``, ``webhook``, ``cap``)."""
    s = ctx.settings
    out = []
    if s.slack_webhook_url is not None or s.slack_token is not None:
        out.append("slack")
    if s.webhook_url:
        out.append("webhook")
    if s.cap_url:
        out.append("cap")
    return out


def _observed(obs: pd.DataFrame, gauge: str, at: pd.Timestamp
              ) -> tuple[float | None, datetime | None]:
    """The highest usable level of ``gauge`` in (T − 30 min, T]."""
    if obs.empty:
        return None, None
    t = pd.DatetimeIndex(obs["time"]).as_unit("ns").asi8
    hi, lo = at.as_unit("ns").value, (at - OBSERVED_WINDOW).as_unit("ns").value
    ok = ((obs["station_id"].to_numpy() == gauge) & (obs["variable"].to_numpy() == LEVEL)
          & (t > lo) & (t <= hi) & (obs["flag"].to_numpy() <= int(Flag.DOUBTFUL))
          & obs["value"].notna().to_numpy())
    rows = np.flatnonzero(ok)
    if not len(rows):
        return None, None
    values = obs["value"].to_numpy(dtype=float)
    best = rows[int(np.argmax(values[rows]))]
    return float(values[best]), pd.Timestamp(int(t[best]), tz="UTC").to_pydatetime()


def _leads(fc: pd.DataFrame) -> tuple[LeadForecast, ...]:
    fc = fc.sort_values("horizon_h")
    valid = pd.DatetimeIndex(fc["valid_at"]).to_pydatetime()
    cols = [fc[c].to_numpy(dtype=float) for c in ("q10", "q50", "q90")]
    return tuple(LeadForecast(int(h), valid[i], float(cols[0][i]), float(cols[1][i]),
                              float(cols[2][i]))
                 for i, h in enumerate(fc["horizon_h"].to_numpy()))


def data_problems(river: River, report: CycleReport, inputs: Inputs) -> list[str]:
    """What the duty officer should know about the river's data, one stable line each: a
    stale primary gauge, a crisis gauge's silence the data cannot explain, no forecast."""
    out: list[str] = []
    fresh = inputs.river_freshness(river.id, stale_only=True)
    g = river.gauge
    for row in fresh.itertuples(index=False):
        if row.station_id != g.code or row.role != "primary":
            continue
        if row.status == "never":
            out.append(f"主水位計 {g.name_ja}（{g.code}）: 有効な観測がありません")
        else:
            last = pd.Timestamp(str(row.latest)).tz_convert(_JST)
            out.append(f"主水位計 {g.name_ja}（{g.code}）: {last:%m/%d %H:%M} JST 以降の"
                       "有効な観測がありません")
    for reason in report.low_confidence.get(river.id, []):
        if SILENCE_NOT_LOW_WATER in reason:
            out.append("危機管理型水位計の沈黙を低水と判断できません: " + reason.split(":")[0])
    outcome = next((o for o in report.outcomes if o.river_id == river.id), None)
    if outcome is not None and outcome.status in ("failed", "skipped") and not out:
        out.append(f"{river.name_ja}: この回の水位予測を作成できませんでした")
    return out


def forecasts_by_river(report: CycleReport) -> dict[str, pd.DataFrame]:
    """The report's forecast frame split by river (once per stage)."""
    if not len(report.forecasts):
        return {}
    return {str(k): v for k, v in report.forecasts.groupby("river_id", sort=False)}


def river_streams(river: River, report: CycleReport, inputs: Inputs,
                  forecasts: dict[str, pd.DataFrame] | None = None
                  ) -> list[tuple[Stream, list[tuple[AlertLevel, float]], StreamInput]]:
    """The river's level streams with what each reads at the report's issue time
    (``forecasts``: ``forecasts_by_river(report)``, computed here when not given)."""
    at = pd.Timestamp(report.issued_at)
    split = forecasts if forecasts is not None else forecasts_by_river(report)
    fc = split.get(river.id, pd.DataFrame())
    obs = inputs.station_rows([g.code for g in river.gauges])
    value, when = _observed(obs, river.primary_gauge, at)
    version = str(fc["model_version"].iat[0]) if len(fc) else None
    primary = StreamInput(at=report.issued_at, observed_m=value, observed_at=when,
                          forecast=_leads(fc) if len(fc) else (),
                          low_confidence=tuple(report.low_confidence.get(river.id, ())),
                          cycle_id=report.cycle_id, forecast_run_id=report.run_ids.get(river.id),
                          model_version=version)
    out = [(Stream(river.id, river.primary_gauge), river_ladder(river), primary)]
    for g in overflow_gauges(river):
        v, w = _observed(obs, g.code, at)
        assert g.overflow_level_m is not None
        out.append((Stream(river.id, g.code), [(AlertLevel.FLOODING, g.overflow_level_m)],
                    StreamInput(at=report.issued_at, observed_m=v, observed_at=w,
                                cycle_id=report.cycle_id)))
    return out


def notify_stage(ctx: Context, report: CycleReport, inputs: Inputs) -> NotifyReport:
    """The tick's notify hook (``tick.Notify``): see the module docstring."""
    out = NotifyReport()
    with transaction(ctx.engine, "reading the data label") as conn:
        simulated = has_simulated_data(conn)
    split = forecasts_by_river(report)
    for river in ctx.catalogue.rivers:
        try:
            with transaction(ctx.engine, f"notifications of {river.id}") as conn:
                for notice in _river(ctx, conn, river, report, inputs, split):
                    _store(ctx, conn, river, notice, simulated=simulated)
                    out.count(notice.kind)
        except Exception as exc:   # one river's failure never stops the others
            log.exception("notify %s: %s failed", report.issued_at, river.id)
            out.failed[river.id] = f"{type(exc).__name__}: {exc}"
    return out


def _river(ctx: Context, conn: Connection, river: River, report: CycleReport,
           inputs: Inputs, forecasts: dict[str, pd.DataFrame]) -> list[Notice]:
    """Run the engine for the river's streams; writes their new states, returns the notices."""
    rules = ctx.catalogue.alert_rules(river)
    states = alerts.read_streams(conn, river.id, lock=True)
    notices: list[Notice] = []
    now = ctx.clock.now()
    at = report.issued_at

    def load(stream: Stream) -> StreamState | None:
        """The stream's state, or None when an issue time at or after this one was already
        evaluated (a forced re-run or an out-of-order catch-up never steps it back)."""
        row = states.get(stream.key)
        if row is None:
            return StreamState()
        seen = row["state"].get(EVALUATED_AT)
        if seen is not None and datetime.fromisoformat(seen) >= at:
            return None
        return StreamState.from_json(row["state"])

    def save(stream: Stream, after: StreamState) -> None:
        alerts.put_stream(conn, stream_key=stream.key, river_id=river.id, gauge=stream.gauge,
                          topic=stream.topic,
                          state={**after.to_json(), EVALUATED_AT: at.isoformat()},
                          updated_at=now)

    for stream, ladder, inp in river_streams(river, report, inputs, forecasts):
        before = load(stream)
        if before is None:
            continue
        after, got = step(stream, before, assess(ladder, rules, inp), rules, inp)
        save(stream, after)
        notices += got
    if rules.data_problems:
        stream = Stream(river.id, river.primary_gauge, "data")
        before = load(stream)
        if before is not None:
            after, got = step_data(stream, before, data_problems(river, report, inputs), at,
                                   rules.rule(AlertLevel.STANDBY).min_duration)
            save(stream, after)
            notices += got
    return notices


def _details(n: Notice) -> dict[str, Any]:
    def t(v: datetime | None) -> str | None:
        return None if v is None else v.isoformat()

    return {"threshold_m": n.threshold_m, "observed_m": n.observed_m,
            "observed_at": t(n.observed_at), "crossing_at": t(n.crossing_at),
            "lead_h": n.lead_h, "crest_m": n.crest_m, "crest_at": t(n.crest_at),
            "probability": n.probability, "within_h": n.within_h,
            "low_confidence": list(n.low_confidence), "problems": list(n.problems),
            "model_version": n.model_version}


def _store(ctx: Context, conn: Connection, river: River, n: Notice, *, simulated: bool,
           notification_id: int | None = None) -> int:
    """One notice: its notification row(s), its message with payload and CAP, its outbox rows.
    Returns the message id."""
    now = ctx.clock.now()
    level = 0 if n.topic == "data" else (None if n.level is None else int(n.level))
    if n.kind in ("raise", "escalate", "lower") and level is not None:
        row = alerts.find_notification(conn, n.event_key, level)
        notification_id = row["id"] if row else alerts.add_notification(
            conn, event_key=n.event_key, stream_key=n.stream, river_id=n.river_id,
            gauge=n.gauge, topic=n.topic, level=level, basis=n.basis, raised_at=n.at,
            cycle_id=n.cycle_id, forecast_run_id=n.forecast_run_id, details=_details(n))
        alerts.set_notification_states(conn, n.event_key, at=n.at, current=level)
    elif n.kind == "lower":   # below every level while the all-clear waits
        alerts.set_notification_states(conn, n.event_key, at=n.at, current=None)
    elif n.kind == "clear":
        alerts.set_notification_states(conn, n.event_key, at=n.at, current=None, cleared=True)
    elif notification_id is None and level is not None:
        row = alerts.find_notification(conn, n.event_key, level)
        notification_id = row["id"] if row else None
    message_id = alerts.add_message(
        conn, event_key=n.event_key, stream_key=n.stream, river_id=n.river_id,
        notification_id=notification_id, kind=n.kind, topic=n.topic,
        level=None if n.level is None else int(n.level),
        from_level=None if n.from_level is None else int(n.from_level),
        occurred_at=n.at, created_at=now, cycle_id=n.cycle_id)
    earlier = [m for m in alerts.event_messages(conn, n.event_key)
               if m["id"] != message_id and m["payload"].get("cap")]
    previous = [{k: m["payload"]["cap"][k] for k in ("identifier", "sender", "sent")}
                for m in earlier if m["cap_identifier"]]
    payload = build_payload(n, river, message_id=message_id, sequence=len(earlier) + 1,
                            previous=previous, base_url=ctx.settings.public_url,
                            simulated=simulated or ctx.settings.drill,
                            sender=ctx.settings.cap_sender)
    with_cap = n.topic == "level" and n.kind != "acknowledge"
    xml = cap_xml(payload).decode("utf-8") if with_cap else None
    alerts.set_message(conn, message_id, payload=payload,
                       cap_identifier=payload["cap"]["identifier"] if with_cap else None,
                       cap_xml=xml)
    for channel in channels(ctx):
        if channel == "cap" and not with_cap:
            continue
        outbox.enqueue(conn, channel=channel, dedup_key=f"{channel}:{message_id}",
                       payload=payload, now=now, message_id=message_id)
    return message_id


def acknowledge_notification(ctx: Context, notification_id: int, *, user: str,
                             note: str | None = None) -> dict[str, Any]:
    """A named user acknowledges an active notification: its state, the stream's state, a
    message to the channels and an audit row, in one transaction. ``ForecastError`` with
    what to do when it cannot be acknowledged."""
    user = user.strip()
    if not user:
        raise ForecastError("say who acknowledges: --user NAME")
    now = ctx.clock.now()
    with transaction(ctx.engine, "acknowledging a notification") as conn:
        row = alerts.get_notification(conn, notification_id)
        if row is None:
            raise NotFoundError(f"no notification {notification_id} (forecast notifications "
                                "list shows them)")
        if row["state"] not in alerts.ACTIVE:
            raise ConflictError(f"notification {notification_id} is {row['state']}: only an "
                                "active one can be acknowledged")
        stream = Stream(row["river_id"], row["gauge"], row["topic"])
        states = alerts.read_streams(conn, row["river_id"], lock=True)
        stored = states[stream.key]["state"] if stream.key in states else {}
        state = StreamState.from_json(stored)
        if state.event_key != row["event_key"]:
            raise ConflictError(f"notification {notification_id} belongs to an event that "
                                "is no longer open")
        try:
            after, notice = acknowledge(stream, state, user=user, at=now, note=note)
        except ValueError as exc:
            raise ConflictError(str(exc)) from exc
        alerts.put_stream(conn, stream_key=stream.key, river_id=stream.river_id,
                          gauge=stream.gauge, topic=stream.topic,
                          state={**after.to_json(), EVALUATED_AT: stored.get(EVALUATED_AT)},
                          updated_at=now)
        alerts.acknowledge_notification(conn, notification_id, by=user, at=now)
        river = ctx.catalogue.river(row["river_id"])
        message_id = _store(ctx, conn, river, notice, simulated=has_simulated_data(conn),
                            notification_id=notification_id)
        audit.audit(conn, at=now, actor=user, action="notification.acknowledge",
                    target=row["river_id"],
                    details={"notification_id": notification_id, "level": row["level"],
                             "event_key": row["event_key"], "note": note,
                             "message_id": message_id})
        got = alerts.get_notification(conn, notification_id)
        assert got is not None
        return got


def send_test(ctx: Context, channel: str) -> int:
    """Queue a test message to ``channel`` (delivered by the next delivery run); returns its
    outbox id. ``ForecastError`` when the channel is not configured."""
    if channel not in channels(ctx):
        have = ", ".join(channels(ctx)) or "none"
        raise ForecastError(f"channel {channel!r} is not configured (configured: {have}; "
                            "see forecast --help for the FORECAST_* settings)")
    now = ctx.clock.now()
    payload = test_payload(channel, now, ctx.settings.cap_sender, True)
    with transaction(ctx.engine, "queueing a test message") as conn:
        got = outbox.enqueue(conn, channel=channel, dedup_key=f"{channel}:test:{now.isoformat()}",
                             payload=payload, now=now)
    assert got is not None
    return got


def run_test_receiver(host: str, port: int, *, secret: str | None, token: str | None,
                      jsonl: Path | None) -> None:
    """The loopback test receiver (``notify.receiver``) until SIGINT/SIGTERM."""
    from forecast.notify.receiver import run_receiver

    run_receiver(host, port, secret, token, jsonl)


def cap_feed(ctx: Context, base_url: str) -> bytes:
    """The Atom feed of the current CAP messages (``views.current_cap``), linking each to
    ``{base_url}/cap/{identifier}.xml``."""
    from forecast.notify.cap import atom_feed, feed_entry
    from forecast.pipeline.views import current_cap

    base = base_url.rstrip("/")
    entries = [feed_entry(m["payload"], f"{base}/cap/{m['cap_identifier']}.xml")
               for m in current_cap(ctx)]
    return atom_feed(entries, feed_id=f"{base}/cap/feed.atom", feed_url=f"{base}/cap/feed.atom",
                     title="三重県 水位予測通知 (CAP 1.2)", updated=ctx.clock.now())


def start_demo_receiver(host: str, port: int, *, secret: str, token: str,
                        echo: Any = None) -> Any:
    """A loopback test receiver for the live demo (``notify.receiver.Receiver``, started;
    ``stop()`` ends it): the demo's Slack and webhook channels point at it, so its
    notifications are delivered somewhere one can watch."""
    from forecast.notify.receiver import Receiver

    return Receiver(host, port, webhook_secret=secret, slack_token=token, echo=echo).start()
