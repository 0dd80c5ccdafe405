"""admin and analyst flows: audit log, settled items, closed studies (issue 13)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Three new tables, so no table is rebuilt (0007's SQLite triggers stay as they are) and code that
reads `studies` on an older schema keeps working: `audit_log` (who did what and when),
`item_settlements` (a note or corrected consensus score beside an item's ratings) and
`study_closures` (closed studies).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_closures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("closed_by", sa.Integer(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["closed_by"], ["users.id"], name=op.f("fk_study_closures_closed_by_users")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_study_closures_study_id_studies"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_closures")),
        sa.UniqueConstraint("study_id", name=op.f("uq_study_closures_study_id")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_audit_log_actor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False)
    op.create_table(
        "item_settlements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("settled_by", sa.Integer(), nullable=False),
        sa.Column("consensus_score", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("consensus_score IS NULL OR (consensus_score >= 1 AND consensus_score <= 10)",
                           name=op.f("ck_item_settlements_consensus_range")),
        sa.ForeignKeyConstraint(["item_id"], ["study_items.id"],
                                name=op.f("fk_item_settlements_item_id_study_items"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["settled_by"], ["users.id"],
                                name=op.f("fk_item_settlements_settled_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_settlements")),
    )
    op.create_index(op.f("ix_item_settlements_item_id"), "item_settlements", ["item_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_item_settlements_item_id"), table_name="item_settlements")
    op.drop_table("item_settlements")
    op.drop_index(op.f("ix_audit_log_action"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("study_closures")
