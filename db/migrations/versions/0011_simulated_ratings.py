"""simulated panel ratings kept apart from real ones (issue 15)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

One column, added in place: `users.simulated` marks the accounts of a simulated rating panel
(review.labeling.simulated_panel), so analysis can include or exclude their ratings and
`python -m review simulate --remove` finds them. No table is rebuilt, so 0007's SQLite triggers
stay; SQLite gets the same 0/1 guard trigger 0007 gives every other boolean.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_CK = "ck_users_simulated_bool"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("users", sa.Column("simulated", sa.Boolean(), nullable=False, server_default=sa.false()))
    if sqlite:
        body = f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {_CK}'); END"
        op.execute(f"CREATE TRIGGER {_CK}_insert BEFORE INSERT ON users "
                   f"WHEN NOT (NEW.simulated IN (0, 1)) {body}")
        op.execute(f"CREATE TRIGGER {_CK}_update BEFORE UPDATE OF simulated ON users "
                   f"WHEN NOT (NEW.simulated IN (0, 1)) {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {_CK}_insert")
        op.execute(f"DROP TRIGGER IF EXISTS {_CK}_update")
    # A plain DROP COLUMN (SQLite >= 3.35): rebuilding `users` would trip its foreign keys and
    # 0007's triggers.
    op.execute("ALTER TABLE users DROP COLUMN simulated")
