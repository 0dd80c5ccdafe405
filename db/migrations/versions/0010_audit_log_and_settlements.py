"""admin and analyst flows: audit log, settled items (issue 13)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Placeholder reserved for this issue's schema change; filled by the work on it."""


def downgrade() -> None:
    """Nothing to undo yet."""
