"""A study's settings, typed: the only way to read or write `Study.settings` (a JSON column).

`StudySettings.of(study)` reads and validates; `update_settings(study, **changes)` validates the
changed settings and stores them as a fresh dict (JSON columns do not notice in-place changes).
Only values that differ from the defaults are stored, so a cleared setting leaves no key behind.

Unknown keys in the stored JSON are an error, not preserved: every writer goes through this
module, so an unknown key is a typo or a hand edit whose intent nothing here would honour
(a silently ignored "qa-rate" is the bug typed settings exist to prevent). The one key that ever
left, "qa_sample", moved to its own table in migration 0006, which removes it from every study.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from db.models import Study
from review.errors import ReviewError

DEFAULT_QA_RATE = 0.2
MAX_CONSENT = 20_000


class SettingsError(ReviewError):
    """Study settings that are not valid; the message names the setting and what it accepts."""


def _share(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be a number between 0 and 1 (got {value!r}).")
    return float(value)


def _score(value: object) -> int:
    """A scale label's score; JSON object keys are strings, so "3" reads as 3."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"scale_labels must be keyed by whole scores (got {value!r}).")
    return value


def _labels(value: object) -> dict[int, str]:
    """Scale labels as {score: label}, from a mapping (the JSON form) or (score, label) pairs."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        pairs = [(k, v) for k, v in value]
    else:
        raise SettingsError(f"scale_labels must map scores to labels (got {value!r}).")
    labels = {_score(k): v for k, v in pairs}
    if len(labels) != len(pairs):
        raise SettingsError(f"scale_labels names a score twice (got {value!r}).")
    return labels


@dataclass(frozen=True)
class StudySettings:
    """Everything a study configures beyond its columns.

    - guideline_version_ids: guideline versions randomised across reviewers (review.labeling.cohorts);
      empty = everyone rates under the study's own guideline version.
    - qa_share: share of reviewers whose ratings go through QA (0..1).
    - qa_rate: share of each QA stratum sampled for QA (review.labeling.qa).
    - show_qa_feedback: whether reviewers see QA verdicts on their own ratings.
    - max_items_per_reviewer: cap on items per reviewer; None = no cap.
    - reviewer_ids: the reviewers (user ids) who may join; empty = every reviewer.
    - scale_labels: (score, label) pairs in score order, overriding the default labels
      (review.labeling.views); a mapping is accepted too. Pairs keep the settings immutable.
    - consent_text: what crowd participants must accept before anything else (review.labeling
      .crowd_flow); shown as plain text, at most MAX_CONSENT characters.
    """

    guideline_version_ids: tuple[int, ...] = ()
    qa_share: float = 0.0
    qa_rate: float = DEFAULT_QA_RATE
    show_qa_feedback: bool = False
    max_items_per_reviewer: int | None = None
    scale_labels: tuple[tuple[int, str], ...] = ()
    reviewer_ids: tuple[int, ...] = ()
    consent_text: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.consent_text, str) or len(self.consent_text) > MAX_CONSENT:
            raise SettingsError(f"consent_text must be text of at most {MAX_CONSENT:,} characters.")
        for name, noun in (("guideline_version_ids", "version"), ("reviewer_ids", "reviewer")):
            ids = getattr(self, name)
            if isinstance(ids, str | bytes) or not isinstance(ids, list | tuple) or any(
                    isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in ids):
                raise SettingsError(f"{name} must be a list of {noun} ids (got {ids!r}).")
            if len(set(ids)) != len(ids):
                raise SettingsError(f"{name} lists a {noun} twice ({list(ids)}).")
            object.__setattr__(self, name, tuple(ids))
        if not isinstance(self.show_qa_feedback, bool):
            raise SettingsError(f"show_qa_feedback must be true or false (got {self.show_qa_feedback!r}).")
        cap = self.max_items_per_reviewer
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise SettingsError(f"max_items_per_reviewer must be a whole number of at least 1 (got {cap!r}).")
        labels = _labels(self.scale_labels)
        if any(not isinstance(v, str) or not v.strip() for v in labels.values()):
            raise SettingsError(f"Each scale label must be non-empty text (got {dict(labels)!r}).")
        object.__setattr__(self, "qa_share", _share("qa_share", self.qa_share))
        object.__setattr__(self, "qa_rate", _share("qa_rate", self.qa_rate))
        object.__setattr__(self, "scale_labels", tuple(sorted(labels.items())))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> StudySettings:
        """Settings from their stored JSON form; unknown keys are refused (see the module note)."""
        data = dict(data or {})
        unknown = sorted(set(data) - _NAMES)
        if unknown:
            raise SettingsError(f"Unknown study setting(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(_NAMES))}.")
        return cls(**data)

    @classmethod
    def of(cls, study: Study) -> StudySettings:
        """The study's settings, validated against its scale."""
        settings = cls.from_json(study.settings)
        settings.check_scale(study.scale_min, study.scale_max)
        return settings

    def check_scale(self, scale_min: int, scale_max: int) -> None:
        """Scale labels may only name scores on the study's scale."""
        outside = [k for k, _label in self.scale_labels if not scale_min <= k <= scale_max]
        if outside:
            raise SettingsError(f"scale_labels name score(s) {outside} outside the study scale "
                                f"{scale_min}-{scale_max}.")

    def replace(self, **changes: Any) -> StudySettings:
        """A copy with `changes` applied, validated."""
        unknown = sorted(set(changes) - _NAMES)
        if unknown:
            raise SettingsError(f"Unknown study setting(s) {', '.join(unknown)}.")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The stored form: a new dict holding only the values that differ from the defaults."""
        out: dict[str, Any] = {}
        for name, default in _DEFAULTS.items():
            value = getattr(self, name)
            if value == default:
                continue
            if name in ("guideline_version_ids", "reviewer_ids"):
                value = list(value)
            elif name == "scale_labels":
                value = {str(k): label for k, label in value}
            out[name] = value
        return out


_DEFAULTS: dict[str, Any] = dataclasses.asdict(StudySettings())
_NAMES = frozenset(_DEFAULTS)


def update_settings(study: Study, **changes: Any) -> StudySettings:
    """Apply `changes` to the study's settings (validated, also against its scale) and store them;
    the caller flushes or commits."""
    settings = StudySettings.of(study).replace(**changes)
    settings.check_scale(study.scale_min, study.scale_max)
    study.settings = settings.to_json()  # a new dict: JSON columns do not track in-place changes
    return settings
