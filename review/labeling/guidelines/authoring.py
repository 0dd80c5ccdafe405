"""Authoring labeling guidelines: new versions from old ones, diffs, the versions overview, and
assigning versions (or a randomised experiment of several versions and QA on/off) to a study.

Files stay the source of truth (review.labeling.guidelines.files): a new version is a new folder
`<slug>/v<N+1>/` in the lab's data folder (`authored_dir`; never the app's shipped `guidelines/`),
numbered after every shipped and authored version, never over one, and then synced into the
database. Text and images are checked with the same rules the reviewers' pages render by
(review.labeling.guidelines.render).
"""

from __future__ import annotations

import difflib
import re
import shutil
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import GuidelineVersion, Rating, Study, StudyReviewer
from review.accounts.audit import record
from review.labeling.guidelines.files import (
    GUIDELINES_DIR,
    GuidelineError,
    GuidelineFile,
    authored_relpath,
    parse_guideline,
)
from review.labeling.guidelines.render import check_image_link, guideline_folder, image_links
from review.labeling.settings import StudySettings, update_settings
from review.labeling.views import GuidelineView

VersionBase = GuidelineFile | GuidelineVersion | GuidelineView | Path | str  # what a new version starts from
_VERSION_DIR = re.compile(r"^v(\d+)$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


# ---------------------------------------------------------------------------------------------
# New versions


def _as_file(base: VersionBase, root: Path, shipped: Path) -> GuidelineFile:
    if isinstance(base, GuidelineFile):
        return base
    if isinstance(base, GuidelineVersion | GuidelineView):
        folder = guideline_folder(base, shipped, authored=root)  # its examples/ are copied from here
        return GuidelineFile(base.slug, base.version, base.title, base.change_note, base.body_md,
                             folder if folder is not None else root / base.slug / f"v{base.version}")
    path = Path(base)
    return parse_guideline(path / "guideline.md" if path.is_dir() else path)


def existing_versions(slug: str, root: Path = GUIDELINES_DIR) -> list[int]:
    """Version numbers that have a folder under root/<slug>/, ascending."""
    folder = root / slug
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_DIR.match(p.name)))


def new_version_from(base: VersionBase, *, body_md: str, change_note: str, root: Path,
                     title: str | None = None, shipped: Path = GUIDELINES_DIR) -> Path:
    """Write `root/<slug>/v<N+1>/guideline.md` (N = the slug's highest version in `root` or
    `shipped`) from `base`, with the base's `examples/` folder copied; returns the new
    guideline.md path. `root` is the lab's folder (`authored_dir(settings.data_dir)`).

    Refuses an empty change note or body, unsafe image links, and never touches an existing
    version folder (the folder is created exclusively, so two authors cannot collide); a file
    system error is a GuidelineError too.
    """
    gf = _as_file(base, Path(root), Path(shipped))
    if not _SLUG.match(gf.slug):
        raise GuidelineError(f"Guideline slug {gf.slug!r} is not a safe folder name.")
    change_note = (change_note or "").strip()
    if not change_note:
        raise GuidelineError("Write a change note: what changed and why (reviewers' ratings "
                                  "are compared across versions, so the note is the record).")
    body_md = (body_md or "").strip()
    if not body_md:
        raise GuidelineError("The guideline text is empty.")
    for link in image_links(body_md):
        check_image_link(link)
    title = (title if title is not None else gf.title).strip() or gf.title
    version = max([gf.version, *existing_versions(gf.slug, Path(root)),
                   *existing_versions(gf.slug, Path(shipped))]) + 1
    target = Path(root) / gf.slug / f"v{version}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir()
    except FileExistsError as exc:
        raise GuidelineError(f"{gf.slug} v{version} was created meanwhile by someone else; "
                                  "reload and start from the newest version.") from exc
    except OSError as exc:
        raise GuidelineError(f"Cannot create {target}: {exc.strerror or exc}.") from exc
    try:
        examples = gf.folder / "examples"
        if examples.is_dir():
            shutil.copytree(examples, target / "examples", symlinks=False)
        meta = {"slug": gf.slug, "version": version, "title": title, "change_note": change_note}
        front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
        (target / "guideline.md").write_text(f"---\n{front}---\n\n{body_md}\n", encoding="utf-8")
        parse_guideline(target / "guideline.md")  # what we wrote must load
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)  # only the folder this call created
        if isinstance(exc, OSError):
            raise GuidelineError(f"Cannot write {target}: {exc.strerror or exc}.") from exc
        raise
    return target / "guideline.md"


# ---------------------------------------------------------------------------------------------
# Diffs


#: How alike two paragraphs must be (difflib ratio) to be shown as one changed paragraph rather
#: than one deleted and one inserted: the cut-off difflib's own Differ uses for lines.
PAIR_CUTOFF = 0.5


def paragraphs(md: str) -> list[str]:
    """The text's paragraphs (blocks separated by blank lines), each with its lines joined by
    newlines and surrounding space removed."""
    blocks = re.split(r"\n[ \t]*\n", md.replace("\r\n", "\n").strip())
    return [b.strip() for b in blocks if b.strip()]


def diff_versions(a_md: str, b_md: str) -> list[tuple[str, str, str]]:
    """Side-by-side paragraph diff as rows (tag, left paragraph, right paragraph); tag is one of
    equal, replace, delete, insert. Within a changed stretch, each paragraph is paired with its
    most similar counterpart (difflib ratio at least PAIR_CUTOFF, in order), so an edited
    paragraph sits beside its old wording and an unrelated one is shown as deleted or inserted
    rather than beside whatever happened to have the same position."""
    a, b = paragraphs(a_md), paragraphs(b_md)
    rows: list[tuple[str, str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [("equal", x, x) for x in a[i1:i2]]
        else:
            rows += _align(a[i1:i2], b[j1:j2])
    return rows


def _align(left: list[str], right: list[str]) -> list[tuple[str, str, str]]:
    """Pair the most similar paragraphs of a changed stretch, recursing on either side of the
    pair (as difflib.Differ does for lines); the rest are deletions and insertions."""
    best, where = PAIR_CUTOFF - 1e-9, None
    for i, x in enumerate(left):
        for j, y in enumerate(right):
            m = difflib.SequenceMatcher(None, x, y, autojunk=False)
            if m.real_quick_ratio() > best and m.quick_ratio() > best and (r := m.ratio()) > best:
                best, where = r, (i, j)
    if where is None:
        return [("delete", x, "") for x in left] + [("insert", "", y) for y in right]
    i, j = where
    return (_align(left[:i], right[:j]) + [("replace", left[i], right[j])]
            + _align(left[i + 1:], right[j + 1:]))


def word_diff(a: str, b: str) -> tuple[str, str]:
    """Two versions of a paragraph with the changed words marked in plain text, wdiff style:
    deleted words as [-...-] on the left, inserted ones as {+...+} on the right."""
    aw, bw = re.findall(r"\S+|\s+", a), re.findall(r"\S+|\s+", b)
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, aw, bw, autojunk=False).get_opcodes():
        old, new = "".join(aw[i1:i2]), "".join(bw[j1:j2])
        if tag == "equal":
            left.append(old)
            right.append(new)
            continue
        if old.strip():
            left.append(f"[-{old}-]")
        if new.strip():
            right.append(f"{{+{new}+}}")
    return "".join(left), "".join(right)


def unified_diff(a: str, b: str, a_label: str = "a", b_label: str = "b", context: int = 3) -> str:
    """A classic unified diff of two texts (difflib), e.g. for a change review or a commit."""
    return "".join(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                        fromfile=a_label, tofile=b_label, n=context))


# ---------------------------------------------------------------------------------------------
# Versions overview and study assignment


def _is_authored(gv: GuidelineVersion, authored: Path | None) -> bool:
    return authored_relpath(gv.assets_dir, authored) is not None


def version_table(session: Session, authored: Path | None = None) -> list[dict]:
    """Every loaded version with its change note, rating count, the studies that use it and
    where its files are kept (shipped with the app, or the lab's own folder `authored`)."""
    counts = dict(session.execute(select(Rating.guideline_version_id, func.count())
                                  .group_by(Rating.guideline_version_id)).all())
    studies: dict[int, list[str]] = {}
    for study in session.scalars(select(Study).order_by(Study.name)):
        for vid in _study_versions(study):
            studies.setdefault(vid, []).append(study.name)
    rows = []
    for gv in session.scalars(select(GuidelineVersion).order_by(GuidelineVersion.slug,
                                                               GuidelineVersion.version)):
        rows.append({"id": gv.id, "slug": gv.slug, "version": gv.version, "title": gv.title,
                     "change_note": gv.change_note, "ratings": int(counts.get(gv.id, 0)),
                     "used": gv.id in counts, "studies": studies.get(gv.id, []),
                     "kept_in": "this lab (data folder)" if _is_authored(gv, authored)
                     else "shipped with the app"})
    return rows


def _study_versions(study: Study) -> list[int]:
    ids = list(StudySettings.of(study).guideline_version_ids)
    if not ids and study.guideline_version_id is not None:
        ids = [study.guideline_version_id]
    return ids


def _joined(session: Session, study: Study) -> int:
    return session.scalar(select(func.count()).select_from(StudyReviewer)
                          .where(StudyReviewer.study_id == study.id)) or 0


def _check_versions(session: Session, version_ids: list[int]) -> list[GuidelineVersion]:
    rows = []
    for vid in version_ids:
        gv = session.get(GuidelineVersion, vid)
        if gv is None:
            raise GuidelineError(f"There is no guideline version with id {vid}.")
        rows.append(gv)
    return rows


def set_study_guideline(session: Session, study: Study, version_id: int, *,
                        actor_id: int | None = None) -> Study:
    """Rate the study under one guideline version (ends any guideline experiment). Refused once
    reviewers have joined: they keep the version they started with, so a change would silently
    split the study into two arms."""
    _check_versions(session, [version_id])
    if _study_versions(study) == [version_id] and study.guideline_version_id == version_id:
        return study
    joined = _joined(session, study)
    if joined:
        raise GuidelineError(
            f"{joined} reviewer(s) have already joined study {study.name!r} under its current "
            "guideline; changing it now would mix versions. Create a new study for the new version "
            "on the Study setup page.")
    update_settings(study, guideline_version_ids=())
    study.guideline_version_id = version_id
    session.flush()
    record(session, "guideline.assign", actor_id=actor_id, target=study.name, version_id=version_id)
    return study


def set_guideline_experiment(session: Session, study: Study, version_ids: list[int],
                             qa_share: float, *, actor_id: int | None = None) -> Study:
    """Randomise reviewers across guideline versions and QA on/off (review.labeling.cohorts reads
    `StudySettings.guideline_version_ids` and `StudySettings.qa_share`). Arms are fixed once any reviewer
    has joined, because cohorts are balanced at enrolment."""
    ids = [int(v) for v in version_ids]
    if not ids:
        raise GuidelineError("Pick at least one guideline version.")
    if len(set(ids)) != len(ids):
        raise GuidelineError("Each guideline version can be one arm only.")
    if isinstance(qa_share, bool) or not isinstance(qa_share, int | float) or not 0.0 <= qa_share <= 1.0:
        raise GuidelineError("The QA share must be between 0 and 1.")
    _check_versions(session, ids)
    settings = StudySettings.of(study)
    if settings.guideline_version_ids == tuple(ids) and settings.qa_share == float(qa_share):
        return study
    joined = _joined(session, study)
    if joined:
        raise GuidelineError(
            f"{joined} reviewer(s) have already joined study {study.name!r}: its arms (guideline "
            "versions and QA share) are fixed so the cohorts stay balanced and comparable. Set up "
            "the experiment in a new study on the Study setup page.")
    update_settings(study, guideline_version_ids=tuple(ids), qa_share=float(qa_share))
    study.guideline_version_id = ids[0]
    session.flush()
    record(session, "guideline.experiment", actor_id=actor_id, target=study.name, version_ids=ids,
           qa_share=float(qa_share))
    return study


__all__ = [
    "diff_versions", "existing_versions", "new_version_from", "paragraphs", "set_guideline_experiment",
    "set_study_guideline", "unified_diff", "version_table", "word_diff",
]
