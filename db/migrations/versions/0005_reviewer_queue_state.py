"""per-reviewer queue state: finished_items counter, queue_cursor, (reviewer, status) index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

The counter is backfilled from the assignments it summarises (done or skipped in the study).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study_reviewers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finished_items", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("queue_cursor", sa.Integer(), nullable=True))
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignments_reviewer_id"))
        batch_op.create_index("ix_assignments_reviewer_status", ["reviewer_id", "status"], unique=False)
    op.execute(
        "UPDATE study_reviewers SET finished_items = ("
        " SELECT count(*) FROM assignments JOIN study_items ON study_items.id = assignments.item_id"
        " WHERE study_items.study_id = study_reviewers.study_id"
        " AND assignments.reviewer_id = study_reviewers.reviewer_id"
        " AND assignments.status IN ('done', 'skipped'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_assignments_reviewer_status")
        batch_op.create_index(batch_op.f("ix_assignments_reviewer_id"), ["reviewer_id"], unique=False)
    with op.batch_alter_table("study_reviewers", schema=None) as batch_op:
        batch_op.drop_column("queue_cursor")
        batch_op.drop_column("finished_items")
