"""Table definitions (SQLAlchemy Core). The Alembic migrations create exactly these tables;
``tests/storage/test_migrations.py`` checks that they agree.

All times are stored timezone-aware in UTC (``UTCDateTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.sql.expression import false as sa_false
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected datetime from the database, got {type(value)}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(name: str, **kw: Any) -> Column[datetime]:
    return Column(name, UTCDateTime(), **kw)


stations = Table(
    "stations", metadata,
    Column("station_id", String(64), primary_key=True),
    Column("river_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),        # telemetry | crisis | rain
    Column("variable", String(32), nullable=False),
    Column("name_ja", String(128), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("meta", JSON, nullable=False),
)

# Current value of each observation; superseded values move to observation_history.
observations = Table(
    "observations", metadata,
    Column("station_id", String(64), primary_key=True),
    Column("variable", String(32), primary_key=True),
    _ts("time", primary_key=True),
    Column("value", Float, nullable=True),
    Column("flag", SmallInteger, nullable=False),
    Column("qc_rule", String(64), nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("source", String(64), nullable=False),
    Column("revision", Integer, nullable=False),
    _ts("ingested_at", nullable=False),
)

observation_history = Table(
    "observation_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), nullable=False),
    Column("variable", String(32), nullable=False),
    _ts("time", nullable=False),
    Column("value", Float, nullable=True),
    Column("flag", SmallInteger, nullable=False),
    Column("qc_rule", String(64), nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("source", String(64), nullable=False),
    Column("revision", Integer, nullable=False),
    _ts("ingested_at", nullable=False),
    _ts("superseded_at", nullable=False),
    Index("ix_observation_history_key", "station_id", "variable", "time"),
)

# Content-addressed raw payloads: every fetched file/response, stored before parsing.
raw_payloads = Table(
    "raw_payloads", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),
    _ts("first_seen_at", nullable=False),
)

raw_fetches = Table(
    "raw_fetches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("raw_payloads.sha256"), nullable=False, index=True),
    Column("source", String(64), nullable=False),
    Column("uri", Text, nullable=False),
    _ts("fetched_at", nullable=False),
    Column("parse_status", String(16), nullable=False),   # pending | ok | failed
    Column("parse_error", Text, nullable=True),
    Column("rows", Integer, nullable=True),
)

rain_vintages = Table(
    "rain_vintages", metadata,
    Column("product", String(64), primary_key=True),
    Column("catchment_id", String(64), primary_key=True),
    _ts("issued_at", primary_key=True),
    _ts("valid_at", primary_key=True),
    Column("value", Float, nullable=True),
    _ts("ingested_at", nullable=False),
)

# One row per run of an issue time; re-running an issue time adds a revision (runs are
# immutable: a forecast a notification was raised on is never overwritten).
cycle_runs = Table(
    "cycle_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ts("issued_at", nullable=False, index=True),
    Column("revision", Integer, nullable=False, server_default="1"),
    _ts("started_at", nullable=False),
    _ts("finished_at", nullable=True),
    Column("trigger", String(32), nullable=False),       # schedule | cli | replay | demo | api
    Column("status", String(16), nullable=False),        # running | ok | partial | failed
    Column("message", Text, nullable=True),
    Column("owner", String(128), nullable=False, server_default=""),   # host:pid
    # tick: collect + forecast + notify (scheduler, run-once); cycle: forecast only
    Column("kind", String(8), nullable=False, server_default="cycle"),
    Column("stages", JSON, nullable=True),               # stage -> seconds (ticks)
    UniqueConstraint("issued_at", "revision", name="uq_cycle_runs_issue"),
    Index("ix_cycle_runs_kind_issued", "kind", "issued_at"),
)

# How each source fared in a tick: payloads fetched, rows stored, what failed.
cycle_source_outcomes = Table(
    "cycle_source_outcomes", metadata,
    Column("cycle_id", Integer, ForeignKey("cycle_runs.id"), primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("status", String(16), nullable=False),        # ok | partial | failed | timed_out
    Column("payloads", Integer, nullable=False, server_default="0"),
    Column("rows", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("seconds", Float, nullable=True),
    Column("message", Text, nullable=True),
)

# The issue-time lock on SQLite (PostgreSQL uses an advisory lock instead): one row per issue
# time being run; a row past ``expires_at`` belongs to a process that died and may be taken.
cycle_locks = Table(
    "cycle_locks", metadata,
    _ts("issued_at", primary_key=True),
    Column("owner", String(128), nullable=False),
    _ts("acquired_at", nullable=False),
    _ts("expires_at", nullable=False),
)

cycle_river_outcomes = Table(
    "cycle_river_outcomes", metadata,
    Column("cycle_id", Integer, ForeignKey("cycle_runs.id"), primary_key=True),
    Column("river_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),        # ok | degraded | failed | skipped
    Column("model_version", String(64), nullable=True),
    Column("message", Text, nullable=True),
)

forecast_runs = Table(
    "forecast_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("river_id", String(64), nullable=False),
    _ts("issued_at", nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("model_variant", String(64), nullable=False),  # full | no_forecast_rain | ...
    _ts("input_cutoff", nullable=False),
    Column("status", String(16), nullable=False),         # ok | degraded
    Column("degraded", Boolean, nullable=False),
    Column("inputs", JSON, nullable=False),               # lineage: inputs used and missing
    Column("cycle_id", Integer, ForeignKey("cycle_runs.id"), nullable=True),
    _ts("created_at", nullable=False),
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("low_confidence", Boolean, nullable=False, server_default=sa_false()),
    Column("reasons", JSON, nullable=False, server_default="[]"),   # why low-confidence
    UniqueConstraint("river_id", "issued_at", "revision", name="uq_forecast_runs_key"),
)

forecast_values = Table(
    "forecast_values", metadata,
    Column("run_id", Integer, ForeignKey("forecast_runs.id"), primary_key=True),
    Column("horizon_h", SmallInteger, primary_key=True),
    _ts("valid_at", nullable=False),
    Column("level", Float, nullable=False),
    Column("q10", Float, nullable=False),
    Column("q50", Float, nullable=False),
    Column("q90", Float, nullable=False),
)

# Forecast notifications (storage.alerts; the engine is forecast.alerts). A stream is what
# can be notified about (river:gauge:topic); its state is the engine's own JSON.
alert_streams = Table(
    "alert_streams", metadata,
    Column("stream_key", String(200), primary_key=True),
    Column("river_id", String(64), nullable=False, index=True),
    Column("gauge", String(64), nullable=False),
    Column("topic", String(16), nullable=False),          # level | data
    Column("state", JSON, nullable=False),
    _ts("updated_at", nullable=False),
)

# One row per stream, flood event and level (level 0: a data problem).
notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_key", String(200), nullable=False),
    Column("stream_key", String(200), nullable=False),
    Column("river_id", String(64), nullable=False, index=True),
    Column("gauge", String(64), nullable=False),
    Column("topic", String(16), nullable=False),
    Column("level", SmallInteger, nullable=False),
    # active | acknowledged | superseded | lowered | cleared (storage.alerts)
    Column("state", String(16), nullable=False),
    Column("basis", String(16), nullable=True),           # observed | forecast | probability
    _ts("raised_at", nullable=False),
    _ts("updated_at", nullable=False),
    Column("cycle_id", Integer, ForeignKey("cycle_runs.id"), nullable=True),
    Column("forecast_run_id", Integer, nullable=True),
    Column("details", JSON, nullable=False),
    Column("acknowledged_by", String(128), nullable=True),
    _ts("acknowledged_at", nullable=True),
    _ts("cleared_at", nullable=True),
    UniqueConstraint("event_key", "level", name="uq_notifications_event_level"),
)

# Every message of the lifecycle (raise, escalate, lower, clear, remind, acknowledge), with
# the canonical payload the channels render and its CAP 1.2 rendering.
alert_messages = Table(
    "alert_messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_key", String(200), nullable=False, index=True),
    Column("stream_key", String(200), nullable=False),
    Column("river_id", String(64), nullable=False, index=True),
    Column("notification_id", Integer, ForeignKey("notifications.id"), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("topic", String(16), nullable=False),
    Column("level", SmallInteger, nullable=True),
    Column("from_level", SmallInteger, nullable=True),
    _ts("occurred_at", nullable=False),                   # the issue time (or the ack time)
    _ts("created_at", nullable=False),
    Column("cycle_id", Integer, ForeignKey("cycle_runs.id"), nullable=True),
    Column("payload", JSON, nullable=False),
    Column("cap_identifier", String(200), nullable=True, unique=True),
    Column("cap_xml", Text, nullable=True),
)

# The Slack message an event threads under, per target channel.
slack_threads = Table(
    "slack_threads", metadata,
    Column("event_key", String(200), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("ts", String(64), nullable=False),
)

# Messages to deliver (storage.outbox): written with the state change that causes them.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(32), nullable=False),        # slack | webhook | cap | ...
    Column("dedup_key", String(200), nullable=False, unique=True),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),         # pending | sent | dead
    Column("attempts", Integer, nullable=False),
    _ts("created_at", nullable=False),
    _ts("next_attempt_at", nullable=False),
    _ts("sent_at", nullable=True),
    _ts("failed_at", nullable=True),
    Column("last_error", Text, nullable=True),
    Column("message_id", Integer, ForeignKey("alert_messages.id"), nullable=True),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

# API keys for machine clients (storage.api_keys): only a hash of the secret is kept.
api_keys = Table(
    "api_keys", metadata,
    Column("key_id", String(32), primary_key=True),       # the public part of fk_<id>_<secret>
    Column("name", String(128), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    _ts("created_at", nullable=False),
    Column("created_by", String(200), nullable=False),
    _ts("expires_at", nullable=True),
    _ts("revoked_at", nullable=True),
    Column("revoked_by", String(200), nullable=True),
    _ts("last_used_at", nullable=True),
)

# Registered model versions (the artifacts live in the registry directory).
model_versions = Table(
    "model_versions", metadata,
    Column("river_id", String(64), primary_key=True),
    Column("version", String(64), primary_key=True),
    _ts("created_at", nullable=False),
    Column("path", Text, nullable=False),
    Column("manifest", JSON, nullable=False),
)

# The one truth about champions: promotions push a version, rollbacks pop it; the champion of
# a river is the top of the stack replayed from these rows (``storage.models.champion``).
champion_events = Table(
    "champion_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("river_id", String(64), nullable=False, index=True),
    Column("version", String(64), nullable=False),
    Column("action", String(16), nullable=False),         # promote | rollback
    _ts("at", nullable=False),
    Column("actor", String(128), nullable=False),
    Column("note", Text, nullable=False),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ts("at", nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(128), nullable=False),
    Column("details", JSON, nullable=False),
)
