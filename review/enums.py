"""Roles and states as the lab names them: the enums of db/vocabulary.py, which db/models.py's
CHECK constraints are built from (db/ imports nothing of review/, so they are declared there and
read here). Compare and store these members, never the bare strings: a member equals its string,
so rows written before these enums existed read the same."""

from __future__ import annotations

from db.vocabulary import (
    ANSWERED,
    SLOT_FREE,
    SLOT_HOLDING,
    AssignmentStatus,
    BlurKind,
    CleansingOutcome,
    JobStatus,
    ParticipantStage,
    PoolKind,
    PoolStatus,
    ProbePhase,
    RatingSource,
    Role,
    Verdict,
    WorkItemState,
    sql_list,
)

__all__ = ["ANSWERED", "SLOT_FREE", "SLOT_HOLDING", "AssignmentStatus", "BlurKind", "CleansingOutcome",
           "JobStatus", "ParticipantStage", "PoolKind", "PoolStatus", "ProbePhase", "RatingSource", "Role",
           "Verdict", "WorkItemState", "sql_list"]
