"""the reviewer's bench: server-side sessions and drafts, login throttling per client (issue 12)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

New tables only, and nullable columns added in place (no table is rebuilt, so 0007's SQLite
triggers stay). On SQLite, where VARCHAR lengths are not enforced, triggers refuse a username or
display name longer than its column, as PostgreSQL does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: (table, column, limit) guarded by a length trigger on SQLite.
LENGTHS = [("users", "username", 64), ("users", "display_name", 128), ("login_attempts", "username", 64)]


def upgrade() -> None:
    op.create_table(
        "reviewer_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("handoff_hash", sa.String(length=64), nullable=True),
        sa.Column("handoff_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_reviewer_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewer_sessions")),
        sa.UniqueConstraint("handoff_hash", name=op.f("uq_reviewer_sessions_handoff_hash")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_reviewer_sessions_token_hash")),
    )
    op.create_index(op.f("ix_reviewer_sessions_user_id"), "reviewer_sessions", ["user_id"], unique=False)
    op.create_table(
        "rating_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.id"],
                                name=op.f("fk_rating_drafts_assignment_id_assignments"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"], name=op.f("fk_rating_drafts_reviewer_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rating_drafts")),
        sa.UniqueConstraint("assignment_id", "reviewer_id", name="uq_rating_draft"),
    )
    op.add_column("login_attempts", sa.Column("client", sa.String(length=64), nullable=True))
    op.add_column("users", sa.Column("login_cleared_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        for table, column, limit in LENGTHS:
            for event in ("INSERT", "UPDATE"):
                op.execute(
                    f"CREATE TRIGGER {table}_{column}_length_{event.lower()} BEFORE {event} ON {table} "
                    f"WHEN length(NEW.{column}) > {limit} BEGIN SELECT RAISE(ABORT, "
                    f"'CHECK constraint failed: {column} longer than {limit} characters'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, column, _limit in LENGTHS:
            for event in ("insert", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{column}_length_{event}")
    # A plain DROP COLUMN (SQLite >= 3.35): rebuilding `users` would trip its foreign keys and 0007's triggers.
    op.execute("ALTER TABLE users DROP COLUMN login_cleared_at")
    op.execute("ALTER TABLE login_attempts DROP COLUMN client")
    op.drop_table("rating_drafts")
    op.drop_index(op.f("ix_reviewer_sessions_user_id"), table_name="reviewer_sessions")
    op.drop_table("reviewer_sessions")
