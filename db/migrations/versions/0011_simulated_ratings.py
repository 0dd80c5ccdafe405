"""simulated panel ratings kept apart from real ones (issue 15)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Placeholder reserved for this issue's schema change; filled by the work on it."""


def downgrade() -> None:
    """Nothing to undo yet."""
