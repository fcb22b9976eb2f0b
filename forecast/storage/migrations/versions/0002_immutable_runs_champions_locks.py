"""immutable forecast runs (revisions), issue-time locks, champion events

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

* ``cycle_runs`` and ``forecast_runs`` get a ``revision``: re-running an issue time adds one
  instead of replacing the stored forecast. Existing rows are numbered in id order.
* ``forecast_runs`` gets ``low_confidence`` and ``reasons``.
* ``cycle_locks``: the issue-time lock on SQLite.
* ``champion_events`` replaces ``model_versions.status`` / ``promoted_at`` (and the registry's
  ``champion.json``) as the one record of champions; current champions are carried over.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cycle_runs") as b:
        b.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        b.add_column(sa.Column("owner", sa.String(length=128), nullable=False,
                               server_default=""))
    op.execute("UPDATE cycle_runs SET revision = (SELECT COUNT(*) FROM cycle_runs c2 "
               "WHERE c2.issued_at = cycle_runs.issued_at AND c2.id <= cycle_runs.id)")
    with op.batch_alter_table("cycle_runs") as b:
        b.create_unique_constraint("uq_cycle_runs_issue", ["issued_at", "revision"])

    with op.batch_alter_table("forecast_runs") as b:
        b.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        b.add_column(sa.Column("low_confidence", sa.Boolean(), nullable=False,
                               server_default=sa.false()))
        b.add_column(sa.Column("reasons", sa.JSON(), nullable=False, server_default="[]"))
    op.execute("UPDATE forecast_runs SET revision = (SELECT COUNT(*) FROM forecast_runs f2 "
               "WHERE f2.river_id = forecast_runs.river_id "
               "AND f2.issued_at = forecast_runs.issued_at AND f2.id <= forecast_runs.id)")
    with op.batch_alter_table("forecast_runs") as b:
        b.drop_constraint("uq_forecast_runs_key", type_="unique")
        b.create_unique_constraint("uq_forecast_runs_key", ["river_id", "issued_at", "revision"])

    op.create_table(
        "cycle_locks",
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issued_at", name=op.f("pk_cycle_locks")),
    )
    op.create_table(
        "champion_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("river_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_champion_events")),
    )
    op.create_index(op.f("ix_champion_events_river_id"), "champion_events", ["river_id"])
    op.execute("INSERT INTO champion_events (river_id, version, action, at, actor, note) "
               "SELECT river_id, version, 'promote', COALESCE(promoted_at, created_at), "
               "'migration', 'champion before schema 0002' FROM model_versions "
               "WHERE status = 'champion'")
    with op.batch_alter_table("model_versions") as b:
        b.drop_column("status")
        b.drop_column("promoted_at")


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as b:
        b.add_column(sa.Column("status", sa.String(length=16), nullable=False,
                               server_default="candidate"))
        b.add_column(sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_index(op.f("ix_champion_events_river_id"), table_name="champion_events")
    op.drop_table("champion_events")
    op.drop_table("cycle_locks")
    with op.batch_alter_table("forecast_runs") as b:
        b.drop_constraint("uq_forecast_runs_key", type_="unique")
        b.drop_column("reasons")
        b.drop_column("low_confidence")
        b.drop_column("revision")
    with op.batch_alter_table("cycle_runs") as b:
        b.drop_constraint("uq_cycle_runs_issue", type_="unique")
        b.drop_column("owner")
        b.drop_column("revision")
