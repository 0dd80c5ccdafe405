"""several generation workers: plan items claimed through the database with leases (issue 11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A new table, so nothing is rebuilt on SQLite. Jobs created before this revision get their work
items when a worker next runs them (expanding a plan needs the restorers' parameter defaults,
which a migration should not import).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generation_work_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=200), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'claimed', 'done', 'failed')",
                           name=op.f("ck_generation_work_items_state")),
        sa.CheckConstraint("units >= 1 AND attempts >= 0", name=op.f("ck_generation_work_items_counts")),
        sa.CheckConstraint("state <> 'claimed' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)",
                           name=op.f("ck_generation_work_items_claimed_has_lease")),
        sa.ForeignKeyConstraint(["job_id"], ["generation_jobs.id"],
                                name=op.f("fk_generation_work_items_job_id_generation_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generation_work_items")),
        sa.UniqueConstraint("job_id", "position", name="uq_work_item_position"),
    )


def downgrade() -> None:
    op.drop_table("generation_work_items")
