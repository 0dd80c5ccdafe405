"""the schema guards itself: scores within the study's scale and integral, at most raters-per-item
live assignments (slots) and active ratings per item, non-negative counters, checked booleans

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Rules that span tables (a rating's score vs its study's scale, the number of active ratings of an
item, an assignment's slot vs the study's raters-per-item) are triggers on both databases: a CHECK
cannot read another table, and copying the scale onto every rating (to reach it with a composite
foreign key) would make every writer of ratings carry three more columns for one rule.

Single-row rules are CHECK constraints on PostgreSQL. On SQLite adding a CHECK means rebuilding
the table, and rebuilding `ratings` or `users` inside the migration's transaction, where foreign
keys stay on, would cascade-delete `qa_samples` rows; so SQLite gets the same rules as BEFORE
INSERT/UPDATE triggers that abort with "CHECK constraint failed: <name>". A later migration that
rebuilds one of these tables on SQLite must create its triggers again.

Existing rows that break a rule stop the upgrade with a list of them (nothing is changed or
dropped); assignments get slots numbered from 0, finished ones first.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from db.migrate import MigrationRefused

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: (table, name, condition every row must meet, columns whose update can break it); `{r}` is where
#: the row is named: nothing in a CHECK, "NEW." in a trigger.
ROW_RULES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("study_reviewers", "finished_items_nonneg", "{r}finished_items >= 0", ("finished_items",)),
    ("study_reviewers", "queue_cursor_nonneg", "{r}queue_cursor IS NULL OR {r}queue_cursor >= 0",
     ("queue_cursor",)),
    ("assignments", "slot_nonneg", "{r}slot IS NULL OR {r}slot >= 0", ("slot",)),
    ("assignments", "slot_when_live",
     "({r}status IN ('leased', 'done') AND {r}slot IS NOT NULL) OR "
     "({r}status IN ('skipped', 'expired') AND {r}slot IS NULL)", ("status", "slot")),
]
#: SQLite only: PostgreSQL stores these natively (boolean, integer) and refuses other values itself.
SQLITE_ROW_RULES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("ratings", "score_integer", "typeof({r}score) = 'integer'", ("score",)),
    *[(table, f"{column}_bool", f"{{r}}{column} IN (0, 1)", (column,)) for table, column in (
        ("users", "active"), ("login_attempts", "succeeded"), ("source_images", "is_reference"),
        ("restorations", "is_smoke_test"), ("study_reviewers", "qa_enabled"), ("study_items", "is_gold"),
        ("ratings", "active"), ("generation_jobs", "cancel_requested"))],
]

_STUDY_OF_ITEM = "(SELECT {col} FROM studies JOIN study_items ON study_items.study_id = studies.id " \
                 "WHERE study_items.id = NEW.item_id)"
_ACTIVE_ON_ITEM = "(SELECT count(*) FROM ratings WHERE ratings.item_id = NEW.item_id AND ratings.active " \
                  "AND ratings.id <> coalesce(NEW.id, -1))"  # SQLite knows NEW.id only after an insert

#: Cross-table rules: (name, table, columns, condition that breaks the rule, message).
CROSS_RULES: list[tuple[str, str, tuple[str, ...], str, str]] = [
    ("ratings_score_in_scale", "ratings", ("score", "item_id"),
     "NOT EXISTS (SELECT 1 FROM studies JOIN study_items ON study_items.study_id = studies.id "
     "WHERE study_items.id = NEW.item_id AND NEW.score BETWEEN studies.scale_min AND studies.scale_max)",
     "score outside the scale of its study"),
    ("ratings_active_per_item", "ratings", ("active", "item_id"),
     f"NEW.active AND {_ACTIVE_ON_ITEM} >= {_STUDY_OF_ITEM.format(col='raters_per_item')}",
     "more active ratings on the item than raters_per_item of its study"),
    ("assignments_slot_in_study", "assignments", ("slot", "item_id"),
     f"NEW.slot >= {_STUDY_OF_ITEM.format(col='raters_per_item')}",
     "assignment slot not below raters_per_item of its study"),
    ("studies_keep_ratings_valid", "studies", ("scale_min", "scale_max", "raters_per_item"),
     "EXISTS (SELECT 1 FROM ratings JOIN study_items ON study_items.id = ratings.item_id "
     "WHERE study_items.study_id = NEW.id "
     "AND (ratings.score < NEW.scale_min OR ratings.score > NEW.scale_max)) "
     "OR EXISTS (SELECT 1 FROM assignments JOIN study_items ON study_items.id = assignments.item_id "
     "WHERE study_items.study_id = NEW.id AND assignments.slot >= NEW.raters_per_item) "
     "OR EXISTS (SELECT 1 FROM ratings JOIN study_items ON study_items.id = ratings.item_id "
     "WHERE study_items.study_id = NEW.id AND ratings.active GROUP BY ratings.item_id "
     "HAVING count(*) > NEW.raters_per_item)",
     "ratings or assignments of the study would fall outside its new scale or raters_per_item"),
]

#: Existing rows that would break a rule: (what, query returning offending ids).
_VIOLATIONS = [
    ("ratings with a score outside their study's scale",
     "SELECT ratings.id FROM ratings JOIN study_items ON study_items.id = ratings.item_id "
     "JOIN studies ON studies.id = study_items.study_id "
     "WHERE ratings.score < studies.scale_min OR ratings.score > studies.scale_max"),
    ("items with more active ratings than their study's raters_per_item",
     "SELECT ratings.item_id FROM ratings JOIN study_items ON study_items.id = ratings.item_id "
     "JOIN studies ON studies.id = study_items.study_id WHERE ratings.active "
     "GROUP BY ratings.item_id, studies.raters_per_item HAVING count(*) > studies.raters_per_item"),
    ("study reviewers with a negative finished_items or queue_cursor",
     "SELECT id FROM study_reviewers WHERE finished_items < 0 OR queue_cursor < 0"),
]
_SQLITE_VIOLATIONS = [
    ("ratings with a non-integer score", "SELECT id FROM ratings WHERE typeof(score) <> 'integer'"),
    *[(f"{table} rows whose {rule.removesuffix('_bool')} is not 0 or 1",
       f"SELECT rowid FROM {table} WHERE NOT ({cond.format(r='')})")
      for table, rule, cond, _ in SQLITE_ROW_RULES if rule.endswith("_bool")],
]


def _check_existing_rows(conn: sa.Connection, sqlite: bool) -> None:
    """Refuse to upgrade a database whose rows break a new rule, naming them; nothing is changed."""
    problems = []
    for what, query in _VIOLATIONS + (_SQLITE_VIOLATIONS if sqlite else []):
        ids = conn.exec_driver_sql(query).scalars().all()
        if ids:
            shown = ", ".join(map(str, ids[:20])) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
            problems.append(f"- {len(ids)} {what} (ids {shown})")
    if problems:
        raise MigrationRefused("Migration 0007 (schema guards) stopped: fix or remove these rows, then "
                               "upgrade again; nothing was changed.\n" + "\n".join(problems))


def _number_slots(conn: sa.Connection) -> None:
    """Give every finished or leased assignment a slot: finished first, then live leases, then
    run-out ones; a run-out lease that finds no slot left becomes 'expired', as the next claim of its
    item would have made it."""
    now = datetime.now(UTC)
    rows = conn.exec_driver_sql(
        "SELECT assignments.id, assignments.item_id, assignments.status, assignments.lease_expires_at, "
        "studies.raters_per_item FROM assignments JOIN study_items ON study_items.id = assignments.item_id "
        "JOIN studies ON studies.id = study_items.study_id "
        "WHERE assignments.status IN ('leased', 'done')").all()

    def rank(row: sa.Row) -> tuple[int, int, int]:
        aid, item_id, status, expires, _per_item = row
        if isinstance(expires, str):
            expires = datetime.fromisoformat(expires)
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        live = status == "done" or (expires is not None and expires > now)
        return item_id, (status != "done") + (not live), aid

    slots, expire, over = [], [], []
    taken: dict[int, int] = {}
    for row in sorted(rows, key=rank):
        aid, item_id, _status, _expires, per_item = row
        slot = taken.get(item_id, 0)
        if slot < per_item:
            taken[item_id] = slot + 1
            slots.append({"id": aid, "slot": slot})
        elif rank(row)[1] == 2:
            expire.append({"id": aid})
        else:
            over.append(item_id)
    if over:
        raise MigrationRefused("Migration 0007 (schema guards) stopped: these items have more finished or "
                               f"live assignments than their study's raters_per_item: {sorted(set(over))}. "
                               "Fix them, then upgrade again; nothing was changed.")
    if slots:
        conn.execute(sa.text("UPDATE assignments SET slot = :slot WHERE id = :id"), slots)
    if expire:
        conn.execute(sa.text("UPDATE assignments SET status = 'expired' WHERE id = :id"), expire)


def _sqlite_row_trigger(table: str, name: str, cond: str, columns: tuple[str, ...]) -> list[str]:
    ck, cond = f"ck_{table}_{name}", cond.format(r="NEW.")
    body = f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {ck}'); END"
    return [f"CREATE TRIGGER {ck}_insert BEFORE INSERT ON {table} WHEN NOT ({cond}) {body}",
            f"CREATE TRIGGER {ck}_update BEFORE UPDATE OF {', '.join(columns)} ON {table} "
            f"WHEN NOT ({cond}) {body}"]


def _sqlite_cross_trigger(name: str, table: str, columns: tuple[str, ...], breaks: str,
                          message: str) -> list[str]:
    body = f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}: {message}'); END"
    return [f"CREATE TRIGGER {name}_insert BEFORE INSERT ON {table} WHEN {breaks} {body}",
            f"CREATE TRIGGER {name}_update BEFORE UPDATE OF {', '.join(columns)} ON {table} "
            f"WHEN {breaks} {body}"]


def _pg_cross_trigger(name: str, table: str, columns: tuple[str, ...], breaks: str,
                      message: str) -> list[str]:
    lock = ""
    if name == "ratings_active_per_item":
        # Concurrent raters of one item count one after the other, so two cannot both see a free place.
        lock = "PERFORM 1 FROM study_items WHERE id = NEW.item_id FOR NO KEY UPDATE;"
    return [
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {lock} IF {breaks} THEN "
        f"RAISE EXCEPTION 'CHECK constraint failed: {name}: {message}' USING ERRCODE = 'check_violation'; "
        "END IF; RETURN NEW; END $$",
        f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE OF {', '.join(columns)} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {name}()",
    ]


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    _check_existing_rows(conn, sqlite)
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot", sa.Integer(), nullable=True))
    _number_slots(conn)
    op.create_index("uq_assignments_item_slot", "assignments", ["item_id", "slot"], unique=True)
    statements: list[str] = []
    for table, name, cond, columns in ROW_RULES + (SQLITE_ROW_RULES if sqlite else []):
        if sqlite:
            statements += _sqlite_row_trigger(table, name, cond, columns)
        else:
            statements.append(
                f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_{name} CHECK ({cond.format(r='')})")
    for rule in CROSS_RULES:
        statements += (_sqlite_cross_trigger if sqlite else _pg_cross_trigger)(*rule)
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, table, *_ in CROSS_RULES:
        if sqlite:
            op.execute(f"DROP TRIGGER {name}_insert")
            op.execute(f"DROP TRIGGER {name}_update")
        else:
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
    for table, name, _cond, _columns in ROW_RULES + (SQLITE_ROW_RULES if sqlite else []):
        if sqlite:
            op.execute(f"DROP TRIGGER ck_{table}_{name}_insert")
            op.execute(f"DROP TRIGGER ck_{table}_{name}_update")
        else:
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_{name}")
    op.drop_index("uq_assignments_item_slot", table_name="assignments")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_column("slot")
