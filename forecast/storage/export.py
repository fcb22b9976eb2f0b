"""Reads for the data platform export (``forecast.pipeline.export``): per dataset, the rows
that changed in a window ``[since, until)`` of the dataset's *change time*, as pandas frames.

The change time of each dataset is a column stamped when a row is written (or, for
notifications, when its event changed), so consecutive windows hand over every row once:

- ``observations``: ``ingested_at`` (when the current value was stored; a revision — a new
  value or flag — restamps it and bumps ``revision``). Not ``time``: a late or revised
  reading of an old time would never be exported again. A revision is exported again with
  its higher ``revision``; the superseded value stays in the earlier file.
- ``forecasts``: ``created_at`` of the run (runs are immutable; a re-run is a new revision
  with its own ``created_at``). Not ``issued_at``: a forced re-run of an old issue time would
  be missed.
- ``notifications``: ``changed_at``, the newest ``created_at`` inside the window of the
  event's lifecycle messages. Not ``updated_at``: state changes stamp it with the issue time
  (``occurred_at``), which a tick writes after the fact, so a window already exported would
  miss them. Every state change writes a message of its event, so a notification is exported
  (its state at export time) in every window its event changed in.
- ``notification_messages``: ``created_at`` (immutable once stored).
- ``runs``, ``run_rivers``, ``run_sources``: the run's ``finished_at``; runs still running
  are left for the window they finish in (their outcomes are written before they finish).

``since`` None: from the first row. JSON columns come back as JSON text (keys sorted).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast.frames import Flag
from forecast.storage.tables import (
    alert_messages,
    cycle_river_outcomes,
    cycle_runs,
    cycle_source_outcomes,
    forecast_runs,
    forecast_values,
    notifications,
    observations,
)

_FLAG_NAMES = {int(f): f.name.lower() for f in Flag}


def _window(col: sa.ColumnElement[Any], since: datetime | None, until: datetime
            ) -> sa.ColumnElement[bool]:
    cond = col < until
    return cond if since is None else sa.and_(col >= since, cond)


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True, ensure_ascii=False)


def _frame(conn: Connection, q: sa.Select[Any], *, times: tuple[str, ...] = (),
           json_cols: tuple[str, ...] = ()) -> pd.DataFrame:
    res = conn.execute(q)
    df = pd.DataFrame(res.all(), columns=list(res.keys()), dtype=object)
    for c in times:
        df[c] = pd.to_datetime(df[c], utc=True)
    for c in json_cols:
        df[c] = [_json(v) for v in df[c]]
    return df


def read_observations(conn: Connection, since: datetime | None, until: datetime
                      ) -> pd.DataFrame:
    """Current observations stored (or revised) in the window of ``ingested_at``: station_id,
    variable, time, value, flag, flag_name (``frames.Flag``, lower case), qc_rule,
    provisional, source, revision (0 first stored), ingested_at."""
    o = observations
    q = (sa.select(o.c.station_id, o.c.variable, o.c.time, o.c.value, o.c.flag, o.c.qc_rule,
                   o.c.provisional, o.c.source, o.c.revision, o.c.ingested_at)
         .where(_window(o.c.ingested_at, since, until))
         .order_by(o.c.ingested_at, o.c.station_id, o.c.variable, o.c.time))
    df = _frame(conn, q, times=("time", "ingested_at"))
    df.insert(5, "flag_name", [_FLAG_NAMES.get(int(f), str(f)) for f in df["flag"]])
    return df


def read_forecasts(conn: Connection, since: datetime | None, until: datetime) -> pd.DataFrame:
    """Forecast values (one row per run and lead) of the runs created in the window: run_id,
    river_id, issued_at, revision, model_version, model_variant, status, degraded,
    low_confidence, reasons (JSON), inputs (lineage JSON), input_cutoff, cycle_id,
    created_at, horizon_h, valid_at, q10, q50, q90, level (m)."""
    fr, fv = forecast_runs, forecast_values
    q = (sa.select(fr.c.id.label("run_id"), fr.c.river_id, fr.c.issued_at, fr.c.revision,
                   fr.c.model_version, fr.c.model_variant, fr.c.status, fr.c.degraded,
                   fr.c.low_confidence, fr.c.reasons, fr.c.inputs, fr.c.input_cutoff,
                   fr.c.cycle_id, fr.c.created_at, fv.c.horizon_h, fv.c.valid_at, fv.c.q10,
                   fv.c.q50, fv.c.q90, fv.c.level)
         .join(fv, fv.c.run_id == fr.c.id)
         .where(_window(fr.c.created_at, since, until))
         .order_by(fr.c.created_at, fr.c.id, fv.c.horizon_h))
    return _frame(conn, q, times=("issued_at", "input_cutoff", "created_at", "valid_at"),
                  json_cols=("reasons", "inputs"))


def read_notifications(conn: Connection, since: datetime | None, until: datetime
                       ) -> pd.DataFrame:
    """The notifications whose event changed in the window (a lifecycle message created in
    it), as they are now, with ``changed_at`` (the newest such message's ``created_at``):
    the ``notifications`` columns (``details`` as JSON) plus changed_at."""
    m, n = alert_messages, notifications
    changed = (sa.select(m.c.event_key, sa.func.max(m.c.created_at).label("changed_at"))
               .where(_window(m.c.created_at, since, until))
               .group_by(m.c.event_key).subquery())
    q = (sa.select(*n.c, changed.c.changed_at)
         .join(changed, changed.c.event_key == n.c.event_key)
         .order_by(changed.c.changed_at, n.c.id))
    return _frame(conn, q, times=("raised_at", "updated_at", "acknowledged_at", "cleared_at",
                                  "changed_at"), json_cols=("details",))


def read_notification_messages(conn: Connection, since: datetime | None, until: datetime
                               ) -> pd.DataFrame:
    """Lifecycle messages created in the window: id, event_key, stream_key, river_id,
    notification_id, kind, topic, level, from_level, occurred_at (the issue time or the
    acknowledgement time), created_at, cycle_id, cap_identifier, payload (the canonical
    payload every channel renders, JSON). The CAP XML is left out (``forecast notifications
    cap``)."""
    m = alert_messages
    q = (sa.select(m.c.id, m.c.event_key, m.c.stream_key, m.c.river_id, m.c.notification_id,
                   m.c.kind, m.c.topic, m.c.level, m.c.from_level, m.c.occurred_at,
                   m.c.created_at, m.c.cycle_id, m.c.cap_identifier, m.c.payload)
         .where(_window(m.c.created_at, since, until)).order_by(m.c.created_at, m.c.id))
    return _frame(conn, q, times=("occurred_at", "created_at"), json_cols=("payload",))


def _finished(since: datetime | None, until: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(cycle_runs.c.finished_at.is_not(None),
                   _window(cycle_runs.c.finished_at, since, until))


def read_runs(conn: Connection, since: datetime | None, until: datetime) -> pd.DataFrame:
    """Cycle and tick runs finished in the window: id, issued_at, revision, kind, trigger,
    status, message, owner, started_at, finished_at, stages (stage → seconds, JSON)."""
    cr = cycle_runs
    q = (sa.select(cr.c.id, cr.c.issued_at, cr.c.revision, cr.c.kind, cr.c.trigger,
                   cr.c.status, cr.c.message, cr.c.owner, cr.c.started_at, cr.c.finished_at,
                   cr.c.stages)
         .where(_finished(since, until)).order_by(cr.c.finished_at, cr.c.id))
    return _frame(conn, q, times=("issued_at", "started_at", "finished_at"),
                  json_cols=("stages",))


def read_run_rivers(conn: Connection, since: datetime | None, until: datetime
                    ) -> pd.DataFrame:
    """Each river's outcome in the runs finished in the window: cycle_id, issued_at,
    finished_at (of the run), river_id, status, model_version, message."""
    cr, o = cycle_runs, cycle_river_outcomes
    q = (sa.select(o.c.cycle_id, cr.c.issued_at, cr.c.finished_at, o.c.river_id, o.c.status,
                   o.c.model_version, o.c.message)
         .join(cr, cr.c.id == o.c.cycle_id).where(_finished(since, until))
         .order_by(cr.c.finished_at, o.c.cycle_id, o.c.river_id))
    return _frame(conn, q, times=("issued_at", "finished_at"))


def read_run_sources(conn: Connection, since: datetime | None, until: datetime
                     ) -> pd.DataFrame:
    """Each source's outcome in the ticks finished in the window: cycle_id, issued_at,
    finished_at (of the run), source, status, payloads, rows, failures, seconds, message."""
    cr, o = cycle_runs, cycle_source_outcomes
    q = (sa.select(o.c.cycle_id, cr.c.issued_at, cr.c.finished_at, o.c.source, o.c.status,
                   o.c.payloads, o.c.rows, o.c.failures, o.c.seconds, o.c.message)
         .join(cr, cr.c.id == o.c.cycle_id).where(_finished(since, until))
         .order_by(cr.c.finished_at, o.c.cycle_id, o.c.source))
    return _frame(conn, q, times=("issued_at", "finished_at"))
