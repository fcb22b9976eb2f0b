"""notifications: alert streams with the engine's state, notifications per event and level,
every lifecycle message with its CAP rendering, Slack threads; outbox rows know their message

The 0001 tables ``alert_state`` and ``alert_events`` never had a writer: they are replaced.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("alert_events") as batch:
        batch.drop_index("ix_alert_events_river_id")
    op.drop_table("alert_events")
    op.drop_table("alert_state")
    op.create_table(
        "alert_streams",
        sa.Column("stream_key", sa.String(200), nullable=False),
        sa.Column("river_id", sa.String(64), nullable=False),
        sa.Column("gauge", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(16), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        _ts("updated_at", False),
        sa.PrimaryKeyConstraint("stream_key", name=op.f("pk_alert_streams")),
    )
    op.create_index("ix_alert_streams_river_id", "alert_streams", ["river_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("stream_key", sa.String(200), nullable=False),
        sa.Column("river_id", sa.String(64), nullable=False),
        sa.Column("gauge", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(16), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("basis", sa.String(16), nullable=True),
        _ts("raised_at", False),
        _ts("updated_at", False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("forecast_run_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        _ts("acknowledged_at", True),
        _ts("cleared_at", True),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycle_runs.id"],
                                name=op.f("fk_notifications_cycle_id_cycle_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("event_key", "level", name="uq_notifications_event_level"),
    )
    op.create_index("ix_notifications_river_id", "notifications", ["river_id"])
    op.create_table(
        "alert_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("stream_key", sa.String(200), nullable=False),
        sa.Column("river_id", sa.String(64), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(16), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=True),
        sa.Column("from_level", sa.SmallInteger(), nullable=True),
        _ts("occurred_at", False),
        _ts("created_at", False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("cap_identifier", sa.String(200), nullable=True),
        sa.Column("cap_xml", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"],
                                name=op.f("fk_alert_messages_notification_id_notifications")),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycle_runs.id"],
                                name=op.f("fk_alert_messages_cycle_id_cycle_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_messages")),
        sa.UniqueConstraint("cap_identifier", name=op.f("uq_alert_messages_cap_identifier")),
    )
    op.create_index("ix_alert_messages_event_key", "alert_messages", ["event_key"])
    op.create_index("ix_alert_messages_river_id", "alert_messages", ["river_id"])
    op.create_table(
        "slack_threads",
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("ts", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("event_key", "target", name=op.f("pk_slack_threads")),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("message_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_outbox_message_id_alert_messages"), "alert_messages",
                                 ["message_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("fk_outbox_message_id_alert_messages", type_="foreignkey")
        batch.drop_column("message_id")
    op.drop_table("slack_threads")
    op.drop_index("ix_alert_messages_river_id", table_name="alert_messages")
    op.drop_index("ix_alert_messages_event_key", table_name="alert_messages")
    op.drop_table("alert_messages")
    op.drop_index("ix_notifications_river_id", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_alert_streams_river_id", table_name="alert_streams")
    op.drop_table("alert_streams")
    op.create_table(
        "alert_state",
        sa.Column("river_id", sa.String(64), nullable=False),
        sa.Column("level_name", sa.String(32), nullable=True),
        sa.Column("basis", sa.String(16), nullable=True),
        _ts("since", True),
        _ts("updated_at", False),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        _ts("acknowledged_at", True),
        sa.PrimaryKeyConstraint("river_id", name=op.f("pk_alert_state")),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("river_id", sa.String(64), nullable=False),
        _ts("occurred_at", False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_level", sa.String(32), nullable=True),
        sa.Column("to_level", sa.String(32), nullable=True),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        _ts("created_at", False),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycle_runs.id"],
                                name=op.f("fk_alert_events_cycle_id_cycle_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    op.create_index("ix_alert_events_river_id", "alert_events", ["river_id"])
