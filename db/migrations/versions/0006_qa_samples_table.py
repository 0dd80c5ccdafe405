"""the QA sample moves from studies.settings["qa_sample"] into its own table, qa_samples

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Backfilled from each study's settings (ids of ratings that no longer exist in the study are
dropped; they could never be judged), after which the key is removed from the settings. The
downgrade writes the table back into the settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_studies = sa.table("studies", sa.column("id", sa.Integer()), sa.column("settings", sa.JSON()))
_items = sa.table("study_items", sa.column("id", sa.Integer()), sa.column("study_id", sa.Integer()))
_ratings = sa.table("ratings", sa.column("id", sa.Integer()), sa.column("item_id", sa.Integer()))


def upgrade() -> None:
    samples = op.create_table(
        "qa_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("rating_id", sa.Integer(), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["rating_id"], ["ratings.id"], name=op.f("fk_qa_samples_rating_id_ratings"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_qa_samples_study_id_studies"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_samples")),
        sa.UniqueConstraint("rating_id", name=op.f("uq_qa_samples_rating_id")),
    )
    op.create_index(op.f("ix_qa_samples_study_id"), "qa_samples", ["study_id"], unique=False)
    conn = op.get_bind()
    for study_id, settings in conn.execute(sa.select(_studies.c.id, _studies.c.settings)).all():
        if not settings or "qa_sample" not in settings:
            continue
        wanted = {int(i) for i in settings["qa_sample"] or []}
        in_study = set(conn.execute(
            sa.select(_ratings.c.id).join(_items, _items.c.id == _ratings.c.item_id)
            .where(_items.c.study_id == study_id)).scalars())
        rows = [{"study_id": study_id, "rating_id": rid, "sampled_at": None}
                for rid in sorted(wanted & in_study)]
        if rows:
            op.bulk_insert(samples, rows)
        rest = {k: v for k, v in settings.items() if k != "qa_sample"}
        conn.execute(_studies.update().where(_studies.c.id == study_id).values(settings=rest))


def downgrade() -> None:
    conn = op.get_bind()
    samples = sa.table("qa_samples", sa.column("study_id", sa.Integer()), sa.column("rating_id", sa.Integer()))
    per_study: dict[int, list[int]] = {}
    for study_id, rating_id in conn.execute(
            sa.select(samples.c.study_id, samples.c.rating_id).order_by(samples.c.rating_id)).all():
        per_study.setdefault(study_id, []).append(rating_id)
    for study_id, ids in per_study.items():
        settings = conn.execute(sa.select(_studies.c.settings).where(_studies.c.id == study_id)).scalar()
        conn.execute(_studies.update().where(_studies.c.id == study_id)
                     .values(settings={**(settings or {}), "qa_sample": ids}))
    op.drop_index(op.f("ix_qa_samples_study_id"), table_name="qa_samples")
    op.drop_table("qa_samples")
