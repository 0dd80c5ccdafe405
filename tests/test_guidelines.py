"""Guideline versions: parsing, loading, immutability once used, and the shipped guidelines."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import GuidelineVersion
from review.labeling.guidelines.files import (
    GUIDELINES_DIR,
    GuidelineError,
    discover,
    parse_guideline,
    sync_all,
)
from review.labeling.ratings import Submission, submit
from tests.support import make_study


def _write(root: Path, version: int, body: str, note: str = "note") -> Path:
    folder = root / "fidelity" / f"v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "guideline.md"
    path.write_text(f"---\nslug: fidelity\nversion: {version}\ntitle: Fidelity\n"
                    f"change_note: {note}\n---\n{body}\n", encoding="utf-8")
    return path


def test_parse_front_matter_and_body(tmp_path):
    g = parse_guideline(_write(tmp_path, 2, "# Rate fidelity\nBody."))
    assert (g.slug, g.version, g.title, g.change_note) == ("fidelity", 2, "Fidelity", "note")
    assert g.body_md.startswith("# Rate fidelity")


@pytest.mark.parametrize("text, message", [
    ("# no front matter", "front matter"),
    ("---\nslug: x\n---\nbody", "lacks version, title"),
    ("---\nslug: x\nversion: two\ntitle: t\n---\nbody", "integer"),
    ("---\nslug: [x\n---\nbody", "not valid YAML"),
])
def test_malformed_guidelines_are_refused(tmp_path, text, message):
    p = tmp_path / "guideline.md"
    p.write_text(text)
    with pytest.raises(GuidelineError, match=message):
        parse_guideline(p)


def test_versions_load_idempotently(lab, tmp_path):
    _write(tmp_path, 1, "one")
    _write(tmp_path, 2, "two")
    for _ in range(2):
        with lab.sessions() as s, s.begin():
            sync_all(s, tmp_path)
    with lab.sessions() as s:
        rows = s.scalars(select(GuidelineVersion).order_by(GuidelineVersion.version)).all()
        assert [(r.version, r.body_md.strip()) for r in rows] == [(1, "one"), (2, "two")]


def test_unused_version_may_change_but_a_used_one_is_immutable(lab, tmp_path):
    _write(tmp_path, 1, "first text")
    with lab.sessions() as s, s.begin():
        (gv,) = sync_all(s, tmp_path)
    _write(tmp_path, 1, "edited before anyone used it")
    with lab.sessions() as s, s.begin():
        (gv,) = sync_all(s, tmp_path)
        assert gv.body_md.strip() == "edited before anyone used it"
        made = make_study(s, 1, n_reviewers=1, name="g")
        study, users = made.study, made.reviewers
        study.guideline_version_id = gv.id
        from review.labeling.assignment import next_assignment

        lease = next_assignment(s, study, users[0].id)
        submit(s, lease.assignment_id, users[0].id, Submission(4))
    _write(tmp_path, 1, "sneaky edit after ratings")
    with pytest.raises(GuidelineError, match="cannot change"), lab.sessions() as s, s.begin():
        sync_all(s, tmp_path)
    with lab.sessions() as s:
        assert s.get(GuidelineVersion, gv.id).body_md.strip() == "edited before anyone used it"


def test_changed_example_image_counts_as_a_change(lab, tmp_path):
    path = _write(tmp_path, 1, "text")
    (path.parent / "examples").mkdir()
    (path.parent / "examples" / "a.jpg").write_bytes(b"one")
    before = parse_guideline(path).content_sha256
    (path.parent / "examples" / "a.jpg").write_bytes(b"two")
    assert parse_guideline(path).content_sha256 != before


def test_shipped_guidelines_have_three_versions_of_rising_density():
    versions = [g for g in discover(GUIDELINES_DIR) if g.slug == "fidelity"]
    assert [g.version for g in versions] == [1, 2, 3]
    words = [len(g.body_md.split()) for g in versions]
    assert words[0] < words[1] <= words[2]
    assert all(g.change_note for g in versions)
    assert "<script" not in "".join(g.body_md.lower() for g in versions)
    # v3 adds example images that live in its own folder.
    v3 = versions[2]
    links = [line for line in v3.body_md.splitlines() if line.strip().startswith("![")]
    assert links, "v3 must show example images"
    for line in links:
        target = line.split("](", 1)[1].split(")", 1)[0]
        assert (v3.folder / target).resolve().is_file()
        assert (v3.folder / target).resolve().is_relative_to(v3.folder.resolve())
