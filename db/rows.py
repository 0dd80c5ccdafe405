"""Row helpers shared by the domain modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Base

RowT = TypeVar("RowT", bound=Base)


def get_or_create(session: Session, model: type[RowT], where: dict[str, Any],
                  build: Callable[[], RowT]) -> tuple[RowT, bool]:
    """The `model` row whose columns equal `where`, or `build()`'s new row, added and flushed;
    the flag says whether it is new. `build` runs only when no row exists (it may do costly work).

    The insert runs in a savepoint: when a concurrent transaction inserted the same row first
    (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers), the unique constraint refuses ours
    and the winner's row is returned instead of failing the caller's transaction.
    """
    query = select(model).filter_by(**where)
    row = session.scalar(query)
    if row is not None:
        return row, False
    row = build()
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        winner = session.scalar(query)
        if winner is None:
            raise  # not a lost race: some other constraint refused the row
        return winner, False
    return row, True
