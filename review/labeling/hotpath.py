"""PostgreSQL's hot path for the Rate page: a claim in two statements and a submit in one, written
as SQL by hand (built once here, prepared by the server after a few uses), where the ORM path
sends seven each and spends most of a rating's time in SQLAlchemy's Python (bench/load.py (b)).

Only the plain case runs here: a claim by an enrolled reviewer without a per-reviewer quota who
gets a free slot of a fresh item; a submit of a live lease by an active, enrolled reviewer with a
score on the study's scale and a client token not used yet. Every statement writes nothing and
returns no row when its case is not plain (a run-out lease holds the slot, the item filled
meanwhile, a retried token, another tab changed the row); `review.labeling.assignment` and
`review.labeling.ratings` then run their ORM path in the same transaction, which gives the answer
or the refusal. The writes are the ORM path's, row for row: tests/test_hotpath.py compares them.
The account check (`u.active`, and the submit's `u.role` and session row) mirrors
review.accounts.check.require_account and review.accounts.sessions.require_session: when it
fails nothing is written and the caller refuses with their `AccountRefused`.

Concurrency, PostgreSQL READ COMMITTED:
- claim: the item row is taken with SKIP LOCKED (never waits), and the insert runs `ON CONFLICT DO
  NOTHING`, so a slot or an item another claim committed after this statement's snapshot makes it
  write nothing (the unique (item, slot) and (item, reviewer) indexes decide) instead of failing;
- submit: the assignment row is locked in the statement; when that waited for another tab's
  change, the row's version (`xmin`) no longer matches the statement's snapshot and nothing is
  written, so nothing read from the older snapshot (the retracted rating, the token) is used;
- both hold the study row FOR SHARE from their first statement on, before any item row: a change
  of raters per item (which updates that row) waits for them or they for it, and a statement
  that waited re-reads the study's new values (migration 0012's triggers take the same lock).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from db.models import RatingDraft
from review.accounts.audit import ACTOR_MAX, ITEM_TARGET, RATING_DETAILS, TARGET_MAX
from review.enums import ANSWERED, AssignmentStatus, RatingSource, sql_list

# The states and words below are the ORM path's (review/enums.py, review.accounts.audit): formatted
# in, never spelt out (tests/test_policy.py), and tests/test_hotpath_columns.py asks for a review of
# this module whenever a table it writes changes.
_LEASED, _DONE, _REVIEWER = AssignmentStatus.LEASED, AssignmentStatus.DONE, RatingSource.REVIEWER


def _live(a: str) -> str:
    """A live assignment holds its slot: finished, or leased and not run out
    (`review.labeling.assignment.live_assignment_filter`)."""
    return f"({a}.status = '{_DONE}' OR ({a}.status = '{_LEASED}' AND {a}.lease_expires_at > %(now)s))"


def _open(gold: str) -> str:
    """Open items of one kind (gold or not): `review.labeling.assignment._candidates`' filter."""
    return (f"i.study_id = %(study)s AND i.is_gold = {gold} AND l.id IS NULL AND u.active"
            " AND NOT i.is_training AND m.id IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM study_closures c WHERE c.study_id = %(study)s)"
            " AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.reviewer_id = u.id"
            f"   AND (a.status IN ({sql_list(ANSWERED)}) OR (a.status = '{_LEASED}'"
            " AND a.lease_expires_at > %(now)s)))"
            f" AND (SELECT count(*) FROM assignments a WHERE a.item_id = i.id AND {_live('a')})"
            " < s.raters_per_item")


# Open items in the order from the reviewer's cursor on, as an array of [item id, order key]
# pairs; the wrap-around (the items before the cursor) is read only when the part after it holds
# fewer than a window.
_PART = ("ARRAY(SELECT ARRAY[i.id, i.order_key] FROM study_items i WHERE {open}"
         " AND i.order_key {side} COALESCE(m.queue_cursor, %(start)s) ORDER BY i.order_key LIMIT %(window)s)")


def _window(gold: str, read: str) -> str:
    """The LATERAL join giving one kind's window as `{gold}_ahead` and `{gold}_behind` columns."""
    where = _open(gold)
    return (f"LEFT JOIN LATERAL (SELECT CASE WHEN {read} THEN {_PART.format(open=where, side='>=')} END"
            f" AS ahead OFFSET 0) {gold}_a ON true"  # OFFSET 0: read once, not once per use
            f" LEFT JOIN LATERAL (SELECT CASE WHEN cardinality({gold}_a.ahead) < %(window)s THEN"
            f" {_PART.format(open=where, side='<')} END AS behind) {gold}_b ON true")


#: The study's settings, the reviewer's cohort row, account and live lease, and (only without a
#: lease) the open windows: not gold, and gold when the study mixes gold in. No row when the study
#: or the account is gone. The study row is held FOR SHARE until the claim commits (as SUBMIT holds
#: it): a change of raters per item waits for the claim, or the claim for it and then reads the new
#: value, so the slots offered are the study's current ones (migration 0012; taken first, before
#: any item row, so a claim and a settings change never wait for each other in a cycle).
CLAIM_STATE = f"""
SELECT s.settings, s.scale_min, s.scale_max, s.gold_rate, s.raters_per_item, s.lease_minutes,
  m.id, m.finished_items, m.queue_cursor, u.active, l.id, l.item_id, l.lease_expires_at,
  false_a.ahead, false_b.behind, true_a.ahead, true_b.behind
FROM users u
JOIN studies s ON s.id = %(study)s
LEFT JOIN study_reviewers m ON m.study_id = %(study)s AND m.reviewer_id = u.id
LEFT JOIN LATERAL (
  SELECT a.id, a.item_id, a.lease_expires_at FROM assignments a JOIN study_items i ON i.id = a.item_id
  WHERE i.study_id = %(study)s AND a.reviewer_id = u.id AND a.status = '{_LEASED}'
    AND a.lease_expires_at > %(now)s
  ORDER BY a.leased_at LIMIT 1) l ON true
{_window('false', 'true')}
{_window('true', 's.gold_rate > 0')}
WHERE u.id = %(reviewer)s
FOR SHARE OF s"""

#: Lease the first of the candidates (in the draw's order) nobody is claiming right now, in its
#: lowest free slot, move the reviewer's cursor, and return the lease with the item's images (what
#: `review.labeling.views.item_view` reads); no row when that item has no free slot, a run-out lease
#: holds its lowest open slot, or the reviewer had it before (the ORM path decides).
LEASE_FIRST = f"""
WITH item AS (
  SELECT i.id FROM study_items i WHERE i.id = ANY(CAST(%(ids)s AS integer[]))
  ORDER BY array_position(CAST(%(ids)s AS integer[]), i.id) LIMIT 1 FOR UPDATE SKIP LOCKED
), free AS MATERIALIZED (
  SELECT item.id AS item_id, (SELECT min(s) FROM unnest(CAST(%(slots)s AS integer[])) s
    WHERE NOT EXISTS (SELECT 1 FROM assignments h WHERE h.item_id = item.id AND h.slot = s
                      AND {_live('h')})) AS slot
  FROM item
), leased AS (
  INSERT INTO assignments (item_id, reviewer_id, status, leased_at, lease_expires_at, completed_at,
                           skip_reason, slot)
  SELECT free.item_id, %(reviewer)s, '{_LEASED}', %(now)s, %(expires)s, NULL, NULL, free.slot FROM free
  WHERE free.slot IS NOT NULL AND NOT EXISTS (SELECT 1 FROM assignments h
    WHERE h.item_id = free.item_id AND (h.reviewer_id = %(reviewer)s OR h.slot = free.slot))
  ON CONFLICT DO NOTHING
  RETURNING id, item_id
), moved AS (
  UPDATE study_reviewers SET queue_cursor = CAST(%(cursor)s AS integer) FROM leased
  WHERE study_reviewers.id = %(member)s AND CAST(%(cursor)s AS integer) IS NOT NULL
)
SELECT leased.id, leased.item_id, r.path, r.sha256, d.path, d.sha256, o.path, o.sha256, o.is_reference
FROM leased JOIN study_items i ON i.id = leased.item_id JOIN restorations r ON r.id = i.restoration_id
JOIN degraded_images d ON d.id = r.degraded_id JOIN source_images o ON o.id = d.source_id"""

def _json_object(keys: tuple[str, ...], values: tuple[str, ...]) -> str:
    """SQL building the JSON text `json.dumps` writes for a dict of these keys (in this order) and
    values (SQL expressions giving JSON: numbers, or `to_json(...)` for text): the ORM path's
    audit details, byte for byte."""
    pairs = [f"'{sep}\"{key}\": ', {value}"
             for sep, key, value in zip(["{", *[", "] * len(keys)], keys, values, strict=False)]
    return f"CAST(concat({', '.join(pairs)}, '}}') AS json)"


#: The whole plain submit: the rating (superseding the one Undo retracted), the assignment done,
#: the finished-items counter, the draft dropped and the audit entry (as `audit.record` writes it).
#: With a browser session (`browser_session`, `role`; review.accounts.sessions.require_session) only while
#: it is live and the account has the role it signed in with; the session row is share-locked
#: until commit, so a logout waits for this rating, or this rating sees the logout and writes
#: nothing.
SUBMIT = f"""
WITH a AS (
  SELECT a.id, a.item_id, m.id AS member_id, m.guideline_version_id, u.username, s.name AS study_name,
    (SELECT r.id FROM ratings r WHERE r.item_id = a.item_id AND r.reviewer_id = a.reviewer_id
       AND NOT r.active AND r.source = '{_REVIEWER}'
       AND NOT EXISTS (SELECT 1 FROM ratings n WHERE n.supersedes_id = r.id)
     ORDER BY r.id DESC LIMIT 1) AS retracted_id
  FROM assignments a
  JOIN study_items i ON i.id = a.item_id
  JOIN studies s ON s.id = i.study_id
  JOIN users u ON u.id = a.reviewer_id
  JOIN study_reviewers m ON m.study_id = i.study_id AND m.reviewer_id = a.reviewer_id
  WHERE a.id = %(assignment)s AND a.reviewer_id = %(reviewer)s AND a.status = '{_LEASED}'
    AND a.slot IS NOT NULL AND a.lease_expires_at > %(now)s AND u.active
    AND (CAST(%(role)s AS text) IS NULL OR u.role = %(role)s)
    AND (CAST(%(browser_session)s AS integer) IS NULL OR EXISTS (
      SELECT 1 FROM reviewer_sessions x WHERE x.id = CAST(%(browser_session)s AS integer)
        AND x.user_id = %(reviewer)s AND x.revoked_at IS NULL AND x.expires_at > %(at)s FOR SHARE))
    AND CAST(%(score)s AS integer) BETWEEN s.scale_min AND s.scale_max
    AND NOT EXISTS (SELECT 1 FROM ratings t WHERE t.client_token = %(token)s)
    AND a.xmin = (SELECT v.xmin FROM assignments v WHERE v.id = %(assignment)s)
  FOR UPDATE OF a FOR SHARE OF s
), r AS (
  INSERT INTO ratings (item_id, reviewer_id, author_id, source, score, flags, comment,
                       guideline_version_id, time_taken_ms, active, supersedes_id, client_token, created_at)
  SELECT a.item_id, %(reviewer)s, %(reviewer)s, '{_REVIEWER}', CAST(%(score)s AS integer),
         CAST(%(flags)s AS json), %(comment)s, a.guideline_version_id, CAST(%(time_taken_ms)s AS integer),
         true, a.retracted_id, %(token)s, %(now)s
  FROM a
  ON CONFLICT DO NOTHING
  RETURNING id, item_id, supersedes_id, guideline_version_id
), done AS (
  UPDATE assignments SET status = '{_DONE}', completed_at = %(now)s, skip_reason = NULL
  FROM r WHERE assignments.id = %(assignment)s
), counted AS (
  UPDATE study_reviewers SET finished_items = study_reviewers.finished_items + 1
  FROM a, r WHERE study_reviewers.id = a.member_id
), dropped AS (
  DELETE FROM rating_drafts USING r
  WHERE rating_drafts.assignment_id = %(assignment)s AND rating_drafts.reviewer_id = %(reviewer)s
), logged AS (
  INSERT INTO audit_log (at, actor_id, actor, action, target, details)
  SELECT %(at)s, %(reviewer)s, left(a.username, {ACTOR_MAX}),
         CASE WHEN r.supersedes_id IS NULL THEN 'rating.submit' ELSE 'rating.supersede' END,
         left('{ITEM_TARGET}' || r.item_id, {TARGET_MAX}),
         {_json_object(RATING_DETAILS, ("to_json(a.study_name)", "CAST(%(score)s AS integer)", "r.id"))}
  FROM a, r
)
SELECT r.id, r.item_id, r.supersedes_id, r.guideline_version_id, a.member_id FROM r, a
"""


def applies(session: Session) -> bool:
    """Whether the session writes to PostgreSQL, where this hot path runs (the one switch:
    `tests.support.orm_path_only` turns it off to compare with the ORM path)."""
    return session.get_bind().dialect.name == "postgresql"


def forget(session: Session, model: type, row_id: int) -> None:
    """Expire the session's copy of a row this module changed in SQL, if it holds one, so the
    caller reads the new values (the ORM path would have changed the object itself)."""
    cached = session.identity_map.get(inspect(model).identity_key_from_primary_key((row_id,)))
    if cached is not None:
        session.expire(cached)


def drop_cached_drafts(session: Session, assignment_id: int) -> None:
    """The session's copies of the draft `SUBMIT` deleted leave it, as after the ORM path's delete."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, RatingDraft) and obj.assignment_id == assignment_id:
            session.expunge(obj)


def run(session: Session, statement: str, **params: Any) -> Any:
    """One statement's first row (or None), after flushing the session's pending changes, which
    hand-written SQL would not see otherwise. Sent as it is to the driver (psycopg's %(name)s
    parameters): SQLAlchemy's statement handling cost more than the round trip
    (`session.execute(text(...))` ~160 us of CPU, this ~65 us)."""
    session.flush()
    return session.connection().exec_driver_sql(statement, params).first()

