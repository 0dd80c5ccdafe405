"""The hot path's SQL (review/labeling/hotpath.py) repeats the ORM path's writes by hand, and only
the postgres lane (`make test-db`) compares the two row for row. This fast-lane test keeps a
snapshot of every column of every table that SQL writes (name, PostgreSQL type, nullability):
a change to one of them fails here, in `make test-fast`, until someone has reviewed the hot path
against it and updated the snapshot (as diffusers' `# Copied from` checks copies)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from sqlalchemy.dialects import postgresql

from db.models import Base
from review.accounts.audit import ACTIONS
from review.labeling import hotpath

SNAPSHOT = Path(__file__).resolve().parent / "hotpath_columns.json"
#: Set to rewrite the snapshot, once hotpath.py has been reviewed against the change.
UPDATE = "REVIEW_UPDATE_HOTPATH_SNAPSHOT"
STATEMENTS = {"CLAIM_STATE": hotpath.CLAIM_STATE, "LEASE_FIRST": hotpath.LEASE_FIRST,
              "SUBMIT": hotpath.SUBMIT}
WRITES = re.compile(r"\b(?:INSERT INTO|(?<!FOR )UPDATE|DELETE FROM)\s+(\w+)")  # not FOR UPDATE


def written_tables() -> list[str]:
    """The tables the hot path's statements insert into, update or delete from."""
    return sorted({t for sql in STATEMENTS.values() for t in WRITES.findall(sql)})


def columns_now() -> dict[str, list[list[object]]]:
    """[name, PostgreSQL type, nullable] of each column of each written table, as the models say
    (tests/test_db.py checks the migrations against them)."""
    dialect = postgresql.dialect()
    return {name: [[c.name, c.type.compile(dialect=dialect), c.nullable]
                   for c in Base.metadata.tables[name].columns]
            for name in written_tables()}


def snapshot_text(tables: dict[str, list[list[object]]]) -> str:
    """The snapshot as stored: a table per block, a column per line (a change reads as one line)."""
    blocks = [f"  {json.dumps(name)}: [\n" + ",\n".join(f"    {json.dumps(c)}" for c in cols) + "\n  ]"
              for name, cols in tables.items()]
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def test_the_hot_path_writes_the_tables_it_is_reviewed_for() -> None:
    now = snapshot_text(columns_now())
    assert json.loads(now) == columns_now()
    if os.environ.get(UPDATE) == "1":
        SNAPSHOT.write_text(now)
    assert now == SNAPSHOT.read_text(), (
        "A table review/labeling/hotpath.py writes has changed (or it writes another one). Review "
        "hotpath.py then update the snapshot: its SQL must write what the ORM path writes "
        "(review.labeling.assignment, review.labeling.ratings); run `make test-db`, then "
        f"`{UPDATE}=1 .venv/bin/python -m pytest -q tests/test_hotpath_columns.py` and commit "
        f"{SNAPSHOT.name}.")


def test_the_hot_path_writes_what_it_names() -> None:
    """The tables it writes today, and audit actions the log knows (review.accounts.audit)."""
    assert written_tables() == ["assignments", "audit_log", "rating_drafts", "ratings", "study_reviewers"]
    named = set(re.findall(r"'(rating\.\w+)'", hotpath.SUBMIT))
    assert named == {"rating.submit", "rating.supersede"} and named <= set(ACTIONS)
