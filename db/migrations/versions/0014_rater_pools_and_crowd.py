"""rater pools, crowd participants, their probes, cleansing decisions and the block list (issue 23)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

New tables only, plus three columns added in place: `study_reviewers.pool_id` (NULL = the study's
in-house team, so nothing about existing studies changes), `study_items.is_training` and
`study_items.training_reason`. The users table's role CHECK is widened to admit the participant
role. On PostgreSQL that is a DROP and ADD of the constraint. On SQLite a CHECK is part of the
table's stored SQL, and rebuilding `users` inside the migration's transaction would trip every
foreign key that points at it; the CHECK is widened instead by editing its text in the schema with
`PRAGMA writable_schema`, the procedure SQLite documents for changes that leave every stored row
valid (a wider IN list does), with the schema version raised so every connection rereads it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('admin', 'reviewer', 'qa')"
NEW_ROLES = "role IN ('admin', 'reviewer', 'qa', 'participant')"
_TRAINING_CK = "ck_study_items_is_training_bool"


def _set_role_check(old: str, new: str) -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.execute("ALTER TABLE users DROP CONSTRAINT ck_users_role")
        op.execute(f"ALTER TABLE users ADD CONSTRAINT ck_users_role CHECK ({new})")
        return
    stored = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'").scalar()
    if old not in (stored or ""):
        raise RuntimeError(f"The users table's role CHECK is not {old!r}; not editing it.")
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    conn.exec_driver_sql("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'users'",
                         (old, new))
    conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def _bool(name: str) -> sa.Boolean:
    return sa.Boolean(create_constraint=True, name=name)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _set_role_check(OLD_ROLES, NEW_ROLES)
    op.create_table(
        "rater_pools",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.Column("pay_per_item", sa.Float(), nullable=False),
        sa.Column("pay_per_session", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("completion_code", sa.String(length=64), nullable=False),
        sa.Column("screened_out_code", sa.String(length=64), nullable=False),
        sa.Column("no_places_code", sa.String(length=64), nullable=False),
        sa.Column("return_url", sa.String(length=500), nullable=False),
        sa.Column("link_version", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('in_house', 'company', 'crowd')", name=op.f("ck_rater_pools_kind")),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_rater_pools_status")),
        sa.CheckConstraint("quota IS NULL OR quota >= 1", name=op.f("ck_rater_pools_quota_pos")),
        sa.CheckConstraint("pay_per_item >= 0 AND pay_per_session >= 0", name=op.f("ck_rater_pools_pay_nonneg")),
        sa.CheckConstraint("link_version >= 1", name=op.f("ck_rater_pools_link_version_pos")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_rater_pools_study_id_studies"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rater_pools")),
        sa.UniqueConstraint("study_id", "name", name="uq_rater_pool_study_name"),
    )
    op.create_index(op.f("ix_rater_pools_study_id"), "rater_pools", ["study_id"])
    op.create_table(
        "participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("platform_id_hash", sa.String(length=64), nullable=False),
        sa.Column("export_ids", sa.JSON(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("viewing_attempts", sa.Integer(), nullable=False),
        sa.Column("end_code", sa.String(length=64), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("stage IN ('consent', 'viewing', 'training', 'qualification', 'live', 'completed', "
                           "'screened_out')", name=op.f("ck_participants_stage")),
        sa.CheckConstraint("viewing_attempts >= 0", name=op.f("ck_participants_viewing_attempts_nonneg")),
        sa.ForeignKeyConstraint(["pool_id"], ["rater_pools.id"], name=op.f("fk_participants_pool_id_rater_pools")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_participants_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint("pool_id", "platform_id_hash", name="uq_participant_pool_platform_id"),
        sa.UniqueConstraint("user_id", name=op.f("uq_participants_user_id")),
    )
    op.create_index(op.f("ix_participants_pool_id"), "participants", ["pool_id"])
    op.create_table(
        "participant_probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("probe_key", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("answer", sa.Integer(), nullable=True),
        sa.Column("expected_min", sa.Integer(), nullable=True),
        sa.Column("expected_max", sa.Integer(), nullable=True),
        sa.Column("correct", _bool("correct_bool"), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("phase IN ('viewing', 'training', 'qualification', 'trap')",
                           name=op.f("ck_participant_probes_phase")),
        sa.ForeignKeyConstraint(["participant_id"], ["participants.id"],
                                name=op.f("fk_participant_probes_participant_id_participants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participant_probes")),
        sa.UniqueConstraint("participant_id", "phase", "probe_key", name="uq_probe_participant_phase_key"),
    )
    op.create_index(op.f("ix_participant_probes_participant_id"), "participant_probes", ["participant_id"])
    op.create_table(
        "cleansing_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("outcome IN ('accept_use', 'accept_no_use', 'reject')",
                           name=op.f("ck_cleansing_decisions_outcome")),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"], name=op.f("fk_cleansing_decisions_decided_by_users")),
        sa.ForeignKeyConstraint(["participant_id"], ["participants.id"],
                                name=op.f("fk_cleansing_decisions_participant_id_participants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cleansing_decisions")),
    )
    op.create_index(op.f("ix_cleansing_decisions_participant_id"), "cleansing_decisions", ["participant_id"])
    op.create_table(
        "blocked_participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("platform_id_hash", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("blocked_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["blocked_by"], ["users.id"], name=op.f("fk_blocked_participants_blocked_by_users")),
        sa.ForeignKeyConstraint(["participant_id"], ["participants.id"],
                                name=op.f("fk_blocked_participants_participant_id_participants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocked_participants")),
        sa.UniqueConstraint("platform", "platform_id_hash", name="uq_blocked_platform_id"),
    )
    op.create_table(
        "link_opens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("admitted", _bool("admitted_bool"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["rater_pools.id"], name=op.f("fk_link_opens_pool_id_rater_pools"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_opens")),
    )
    op.create_index(op.f("ix_link_opens_address"), "link_opens", ["address"])
    op.create_index(op.f("ix_link_opens_created_at"), "link_opens", ["created_at"])
    if sqlite:  # ADD COLUMN with an inline reference: no rebuild of a referenced table
        op.execute("ALTER TABLE study_reviewers ADD COLUMN pool_id INTEGER "
                   "CONSTRAINT fk_study_reviewers_pool_id_rater_pools REFERENCES rater_pools (id)")
    else:
        op.add_column("study_reviewers", sa.Column("pool_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f("fk_study_reviewers_pool_id_rater_pools"), "study_reviewers", "rater_pools",
                              ["pool_id"], ["id"])
    op.create_index(op.f("ix_study_reviewers_pool_id"), "study_reviewers", ["pool_id"])
    op.add_column("study_items", sa.Column("is_training", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("study_items", sa.Column("training_reason", sa.Text(), nullable=False, server_default=""))
    if sqlite:  # the same 0/1 guard 0007 gives every other boolean
        body = f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {_TRAINING_CK}'); END"
        op.execute(f"CREATE TRIGGER {_TRAINING_CK}_insert BEFORE INSERT ON study_items "
                   f"WHEN NOT (NEW.is_training IN (0, 1)) {body}")
        op.execute(f"CREATE TRIGGER {_TRAINING_CK}_update BEFORE UPDATE OF is_training ON study_items "
                   f"WHEN NOT (NEW.is_training IN (0, 1)) {body}")
    else:
        op.execute(f"ALTER TABLE study_items ADD CONSTRAINT {_TRAINING_CK} CHECK (is_training IN (true, false))")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(f"DROP TRIGGER IF EXISTS {_TRAINING_CK}_insert")
        op.execute(f"DROP TRIGGER IF EXISTS {_TRAINING_CK}_update")
    else:
        op.execute(f"ALTER TABLE study_items DROP CONSTRAINT {_TRAINING_CK}")
    op.execute("ALTER TABLE study_items DROP COLUMN training_reason")
    op.execute("ALTER TABLE study_items DROP COLUMN is_training")
    op.drop_index(op.f("ix_study_reviewers_pool_id"), table_name="study_reviewers")
    if not sqlite:
        op.drop_constraint(op.f("fk_study_reviewers_pool_id_rater_pools"), "study_reviewers", type_="foreignkey")
    op.execute("ALTER TABLE study_reviewers DROP COLUMN pool_id")
    for table in ("link_opens", "blocked_participants", "cleansing_decisions", "participant_probes",
                  "participants", "rater_pools"):
        op.drop_table(table)
    op.execute("DELETE FROM users WHERE role = 'participant'")
    _set_role_check(NEW_ROLES, OLD_ROLES)
