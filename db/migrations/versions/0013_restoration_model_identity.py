"""the model is part of a restoration's identity (issue 21)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

`restorations.model_identity` records the content identity of the weights that made a
restoration ('' for restorers without a model), and new rows are unique on (degraded image,
method, recipe key) where the recipe key covers the parameters *and* the model identity
(review.media.catalog.recipe_key). So a job with other weights makes new restorations instead of
finding the earlier ones.

Existing rows keep their params_key (the parameters alone), so nothing they are referenced by
moves; no table is rebuilt (on SQLite a rebuild of `restorations` inside the migration's
transaction would trip the foreign keys of study_items and 0007's triggers). Their model_identity
is backfilled from their stored provenance where it records one, else 'legacy-unknown' for
restorers that use a model (sd15_*) and '' for the rest. A legacy row's key never equals a new
row's key for a model-backed restorer, so a job run after the upgrade makes its restorations
again rather than guess which weights an old row came from.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

LEGACY = "legacy-unknown"
MODEL_METHOD_PREFIX = "sd15"


def _identity(method: str, provenance: object) -> str:
    if isinstance(provenance, str):
        try:
            provenance = json.loads(provenance)
        except ValueError:
            provenance = None
    ident = provenance.get("model_identity") if isinstance(provenance, dict) else None
    if isinstance(ident, str) and ident:
        return ident[:100]
    return LEGACY if method.startswith(MODEL_METHOD_PREFIX) else ""


def upgrade() -> None:
    op.add_column("restorations", sa.Column("model_identity", sa.String(length=100), nullable=False,
                                            server_default=""))
    conn = op.get_bind()
    table = sa.table("restorations", sa.column("id", sa.Integer()), sa.column("method", sa.String()),
                     sa.column("provenance"), sa.column("model_identity", sa.String()))
    rows = conn.execute(sa.select(table.c.id, table.c.method, table.c.provenance)).all()
    updates = [{"rid": rid, "ident": _identity(method, prov)} for rid, method, prov in rows]
    updates = [u for u in updates if u["ident"]]
    if updates:
        conn.execute(table.update().where(table.c.id == sa.bindparam("rid"))
                     .values(model_identity=sa.bindparam("ident")), updates)


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35), as 0011: no rebuild of a referenced table.
    op.execute("ALTER TABLE restorations DROP COLUMN model_identity")
