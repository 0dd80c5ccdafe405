"""the cross-table guards hold under concurrency on PostgreSQL, at every isolation level (issue 21)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

0007's PostgreSQL triggers counted an item's active ratings (and checked a slot against
raters_per_item) after locking only the item row, and the check on `studies` (raters_per_item
lowered, scale narrowed) locked nothing. So a transaction lowering raters per item and one adding
a rating or leasing a slot did not see each other: both counted before the other committed, and an
item ended with 3 active ratings on a 2-rater study, or an assignment with slot 2. At REPEATABLE
READ or SERIALIZABLE a count reads the transaction's snapshot, so even the item lock left two
raters of one item each seeing the other's rating missing.

Now every write a rule depends on meets the other writes of that rule on a row:

- a writer of an active rating, of a rating's score or of an assignment's slot first takes the
  study's row FOR SHARE (blocks while a settings change of the study is uncommitted, and waits for
  none of the other writers) and then *updates* its item's row (a no-op write: it makes raters of
  one item wait for each other, and leaves a trace later transactions can see);
- the settings change updates the study row, so it waits for every writer holding the study FOR
  SHARE; at REPEATABLE READ / SERIALIZABLE it also locks the study's items, which fails with a
  serialization failure (SQLSTATE 40001) when any of them was written after its snapshot.

At READ COMMITTED whoever waited counts afterwards with a fresh statement snapshot, so it sees the
other's committed rows and the rule's own refusal decides. At REPEATABLE READ / SERIALIZABLE a
count that could be stale is refused with 40001 instead (PostgreSQL's own "could not serialize
access due to concurrent update", from the row lock), which the app retries as a whole
transaction (review.database.Lab.run). SQLite needs none of this: its writers run one at a time
(BEGIN IMMEDIATE), each on the latest data, so its triggers stay as 0007 made them.

Only the trigger functions change; the triggers (which call them by name) stay.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: The writer's side: the study row FOR SHARE, then a no-op write of the item row.
_SERIALISE = """
CREATE FUNCTION guard_serialise_item(item integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM studies WHERE id = (SELECT study_id FROM study_items WHERE id = item) FOR SHARE;
  UPDATE study_items SET expected_min = expected_min WHERE id = item;
END $$"""

_STUDY_OF_ITEM = ("(SELECT {col} FROM studies JOIN study_items ON study_items.study_id = studies.id "
                  "WHERE study_items.id = NEW.item_id)")
_ACTIVE_ON_ITEM = ("(SELECT count(*) FROM ratings WHERE ratings.item_id = NEW.item_id AND ratings.active "
                   "AND ratings.id <> coalesce(NEW.id, -1))")

#: (function, statements before the check, condition that breaks the rule, message): 0007's rules.
_RULES: list[tuple[str, str, str, str]] = [
    # Fires on INSERT and on UPDATE OF score, item_id; an active rating's insert is serialised by
    # ratings_active_per_item (which fires first: same event, alphabetical order).
    ("ratings_score_in_scale",
     "IF TG_OP = 'UPDATE' OR NOT NEW.active THEN PERFORM guard_serialise_item(NEW.item_id); END IF;",
     "NOT EXISTS (SELECT 1 FROM studies JOIN study_items ON study_items.study_id = studies.id "
     "WHERE study_items.id = NEW.item_id AND NEW.score BETWEEN studies.scale_min AND studies.scale_max)",
     "score outside the scale of its study"),
    ("ratings_active_per_item",
     "IF NEW.active THEN PERFORM guard_serialise_item(NEW.item_id); END IF;",
     f"NEW.active AND {_ACTIVE_ON_ITEM} >= {_STUDY_OF_ITEM.format(col='raters_per_item')}",
     "more active ratings on the item than raters_per_item of its study"),
    ("assignments_slot_in_study",
     "IF NEW.slot IS NOT NULL THEN PERFORM guard_serialise_item(NEW.item_id); END IF;",
     f"NEW.slot >= {_STUDY_OF_ITEM.format(col='raters_per_item')}",
     "assignment slot not below raters_per_item of its study"),
    ("studies_keep_ratings_valid",
     "IF TG_OP = 'UPDATE' AND current_setting('transaction_isolation') <> 'read committed' "
     "AND (NEW.raters_per_item < OLD.raters_per_item OR NEW.scale_min > OLD.scale_min "
     "OR NEW.scale_max < OLD.scale_max) THEN "
     "PERFORM 1 FROM study_items WHERE study_id = NEW.id ORDER BY id FOR UPDATE; END IF;",
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


def _function(name: str, before: str, breaks: str, message: str) -> str:
    return (f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {before} "
            f"IF {breaks} THEN RAISE EXCEPTION 'CHECK constraint failed: {name}: {message}' "
            "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_SERIALISE)
    for name, before, breaks, message in _RULES:
        op.execute(_function(name, before, breaks, message))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _before, breaks, message in _RULES:
        # 0007's functions: only the item lock of ratings_active_per_item.
        before = ("PERFORM 1 FROM study_items WHERE id = NEW.item_id FOR NO KEY UPDATE;"
                  if name == "ratings_active_per_item" else "")
        op.execute(_function(name, before, breaks, message))
    op.execute("DROP FUNCTION guard_serialise_item(integer)")
