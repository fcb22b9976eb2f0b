"""ticks: cycle runs know whether they collected (kind), their stage durations, and each
source's outcome

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cycle_runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=8), nullable=False,
                                   server_default="cycle"))
        batch.add_column(sa.Column("stages", sa.JSON(), nullable=True))
    op.create_table(
        "cycle_source_outcomes",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payloads", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycle_runs.id"],
                                name=op.f("fk_cycle_source_outcomes_cycle_id_cycle_runs")),
        sa.PrimaryKeyConstraint("cycle_id", "source", name=op.f("pk_cycle_source_outcomes")),
    )
    op.create_index("ix_cycle_runs_kind_issued", "cycle_runs", ["kind", "issued_at"])


def downgrade() -> None:
    op.drop_index("ix_cycle_runs_kind_issued", table_name="cycle_runs")
    op.drop_table("cycle_source_outcomes")
    with op.batch_alter_table("cycle_runs") as batch:
        batch.drop_column("stages")
        batch.drop_column("kind")
