"""several generation workers: plan items claimed through the database with leases (issue 11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Placeholder reserved for this issue's schema change; filled by the work on it."""


def downgrade() -> None:
    """Nothing to undo yet."""
