"""one QA verdict per rating, enforced by a unique index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("qa_verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qa_verdicts_rating_id"))
        batch_op.create_index(batch_op.f("ix_qa_verdicts_rating_id"), ["rating_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("qa_verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qa_verdicts_rating_id"))
        batch_op.create_index(batch_op.f("ix_qa_verdicts_rating_id"), ["rating_id"], unique=False)
