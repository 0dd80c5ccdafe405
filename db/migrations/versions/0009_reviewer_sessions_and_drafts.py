"""the reviewer's bench: server-side sessions and drafts (issue 12)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Placeholder reserved for this issue's schema change; filled by the work on it."""


def downgrade() -> None:
    """Nothing to undo yet."""
