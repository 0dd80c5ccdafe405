"""Authoring labeling guidelines: new versions from old ones, diffs, safe rendering, example
images confined to the guideline's folder, and assigning versions (or a randomised experiment of
several versions and QA on/off) to a study.

Files stay the source of truth (review.guidelines): a new version is a new folder
`guidelines/<slug>/v<N+1>/` written next to the old ones, never over them, and then synced into
the database. Guideline text reaches every reviewer's browser, so it is treated as untrusted:
raw HTML is escaped, script-capable link schemes are neutralised, and images are only ever files
inside the guideline's own folder.
"""

from __future__ import annotations

import difflib
import html
import re
import shutil
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

import yaml
from markdown_it import MarkdownIt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import GuidelineVersion, Rating, Study, StudyReviewer
from review.guidelines import GUIDELINES_DIR, GuidelineFile, is_used, parse_guideline

_VERSION_DIR = re.compile(r"^v(\d+)$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# ![alt](link "title") with an optional <...> around the link (CommonMark inline image).
_IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_LINK_TARGET = re.compile(r"(\]\(\s*<?)([^)\s>]*)")
_REF_DEF = re.compile(r"^( {0,3}\[[^\]]+\]:[ \t]*<?)(\S*?)(?=>|\s|$)", re.M)
SAFE_SCHEMES = ("http", "https", "mailto")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


class GuidelineAdminError(ValueError):
    """An authoring request that cannot be carried out; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# New versions


def _as_file(base: GuidelineFile | GuidelineVersion | Path | str, root: Path) -> GuidelineFile:
    if isinstance(base, GuidelineFile):
        return base
    if isinstance(base, GuidelineVersion):
        folder = guideline_folder(base)  # assets_dir is relative to GUIDELINES_DIR, whatever `root` is
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


def new_version_from(base: GuidelineFile | GuidelineVersion | Path | str, *, body_md: str,
                     change_note: str, title: str | None = None, root: Path = GUIDELINES_DIR) -> Path:
    """Write `root/<slug>/v<N+1>/guideline.md` (N = the slug's highest version) from `base`, with
    the base's `examples/` folder copied; returns the new guideline.md path.

    Refuses an empty change note or body, unsafe image links, and never touches an existing
    version folder (the folder is created exclusively, so two authors cannot collide).
    """
    gf = _as_file(base, Path(root))
    if not _SLUG.match(gf.slug):
        raise GuidelineAdminError(f"Guideline slug {gf.slug!r} is not a safe folder name.")
    change_note = (change_note or "").strip()
    if not change_note:
        raise GuidelineAdminError("Write a change note: what changed and why (reviewers' ratings "
                                  "are compared across versions, so the note is the record).")
    body_md = (body_md or "").strip()
    if not body_md:
        raise GuidelineAdminError("The guideline text is empty.")
    for link in image_links(body_md):
        _check_link(link)
    title = (title if title is not None else gf.title).strip() or gf.title
    version = max([gf.version, *existing_versions(gf.slug, Path(root))]) + 1
    target = Path(root) / gf.slug / f"v{version}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.mkdir()
    except FileExistsError as exc:
        raise GuidelineAdminError(f"{gf.slug} v{version} was created meanwhile by someone else; "
                                  "reload and start from the newest version.") from exc
    try:
        examples = gf.folder / "examples"
        if examples.is_dir():
            shutil.copytree(examples, target / "examples", symlinks=False)
        meta = {"slug": gf.slug, "version": version, "title": title, "change_note": change_note}
        front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
        (target / "guideline.md").write_text(f"---\n{front}---\n\n{body_md}\n", encoding="utf-8")
        parse_guideline(target / "guideline.md")  # what we wrote must load
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # only the folder this call created
        raise
    return target / "guideline.md"


# ---------------------------------------------------------------------------------------------
# Diffs


def diff_versions(a_md: str, b_md: str) -> list[tuple[str, str, str]]:
    """Side-by-side line diff as rows (tag, left line, right line); tag is one of equal, replace,
    delete, insert. Lines of a replaced block are paired in order; the shorter side is padded
    with empty strings."""
    a, b = a_md.splitlines(), b_md.splitlines()
    rows: list[tuple[str, str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            rows.append((tag, left[k] if k < len(left) else "", right[k] if k < len(right) else ""))
    return rows


def unified_diff(a: str, b: str, a_label: str = "a", b_label: str = "b", context: int = 3) -> str:
    """A classic unified diff of two texts (difflib), e.g. for a change review or a commit."""
    return "".join(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                        fromfile=a_label, tofile=b_label, n=context))


# ---------------------------------------------------------------------------------------------
# Safe rendering


def _code_lines(md: str) -> set[int]:
    """0-based line numbers inside fenced or indented code blocks (markdown-it's own parse)."""
    lines: set[int] = set()
    for token in MarkdownIt("commonmark").parse(md):
        if token.type in ("fence", "code_block") and token.map:
            lines.update(range(token.map[0], token.map[1]))
    return lines


def _unsafe_url(url: str) -> bool:
    """True for a link target whose scheme is not http, https or mailto (entities and percent
    escapes decoded first, control characters and spaces dropped, as browsers do)."""
    decoded = unquote(html.unescape(url))
    decoded = "".join(ch for ch in decoded if ch > " ").lower()
    scheme = re.match(r"^([a-z][a-z0-9+.-]*):", decoded)
    return scheme is not None and scheme.group(1) not in SAFE_SCHEMES


def _neutralise_links(text: str) -> str:
    text = _LINK_TARGET.sub(lambda m: m.group(1) + ("#" if _unsafe_url(m.group(2)) else m.group(2)), text)
    return _REF_DEF.sub(lambda m: m.group(1) + ("#" if _unsafe_url(m.group(2)) else m.group(2)), text)


def _escape_plain(text: str) -> str:
    return _neutralise_links(text).replace("<", "&lt;")


def _escape_text(line: str) -> str:
    """Escape '<' outside inline code spans and neutralise dangerous link targets."""
    out, pos = [], 0
    for match in _CODE_SPAN.finditer(line):
        out.append(_escape_plain(line[pos:match.start()]))
        out.append(match.group(0))  # code spans are shown literally, never as HTML
        pos = match.end()
    out.append(_escape_plain(line[pos:]))
    return "".join(out)


def _audit_parser() -> MarkdownIt:
    """A CommonMark parser that recognises raw HTML and keeps every link, so nothing hides."""
    parser = MarkdownIt("commonmark", {"html": True})
    parser.validateLink = lambda url: True  # see all links, including ones it would drop
    return parser


def html_or_unsafe_links(md: str) -> list[str]:
    """What a CommonMark parser finds in `md` that must not reach a browser: raw HTML and link or
    image targets with a script-capable scheme. Empty for safe Markdown."""
    found: list[str] = []
    stack = list(_audit_parser().parse(md))
    while stack:
        token = stack.pop()
        stack.extend(token.children or [])
        if token.type in ("html_block", "html_inline"):
            found.append(token.content.strip())
        for attr in ("href", "src"):
            url = token.attrGet(attr)
            if isinstance(url, str) and _unsafe_url(url):
                found.append(url)
    return found


def render_safe_markdown(md: str) -> str:
    """The guideline Markdown with raw HTML escaped (shown as text, never parsed as tags) and
    link targets with schemes other than http/https/mailto replaced by '#'. Code blocks and code
    spans stay as they are (Markdown shows them literally). The result is checked with a real
    CommonMark parse; if anything still parses as HTML or a bad link (odd nesting of backticks,
    escapes), every '<' and '[' is escaped instead. Meant for
    `st.markdown(..., unsafe_allow_html=False)`, which is a second line of defence."""
    code = _code_lines(md)
    lines = md.split("\n")
    out = "\n".join(line if i in code else _escape_text(line) for i, line in enumerate(lines))
    if html_or_unsafe_links(out):
        out = md.replace("<", "&lt;").replace("[", "\\[")
    return out


# ---------------------------------------------------------------------------------------------
# Example images


def image_links(md: str) -> list[str]:
    """The targets of Markdown image links, in order."""
    return [m.group(2) for m in _IMAGE_LINK.finditer(md)]


def split_images(md: str) -> list[tuple[str, str]]:
    """The body as ("text", markdown) and ("image", link) parts in order, so a page can render
    text with st.markdown and pictures from disk with st.image."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _IMAGE_LINK.finditer(md):
        if match.start() > pos:
            parts.append(("text", md[pos:match.start()]))
        parts.append(("image", match.group(2)))
        pos = match.end()
    if pos < len(md):
        parts.append(("text", md[pos:]))
    return parts


def _check_link(link: str) -> None:
    if not link or "://" in link or link.startswith("//") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", link):
        raise GuidelineAdminError(f"Image {link!r}: only files in the guideline's folder are shown, "
                                  "not URLs.")
    if link.startswith(("/", "\\")) or Path(link).is_absolute() or re.match(r"^[A-Za-z]:", link):
        raise GuidelineAdminError(f"Image {link!r}: use a path relative to the guideline's folder.")
    if ".." in re.split(r"[\\/]", link):
        raise GuidelineAdminError(f"Image {link!r}: '..' is not allowed in image paths.")
    if Path(link).suffix.lower() not in IMAGE_SUFFIXES:
        raise GuidelineAdminError(f"Image {link!r}: only {', '.join(IMAGE_SUFFIXES)} files are shown.")


class HasAssetsDir(Protocol):
    """A guideline version as stored (GuidelineVersion) or as a page holds it (GuidelineView)."""

    assets_dir: str


def guideline_folder(gv: HasAssetsDir | GuidelineFile, root: Path = GUIDELINES_DIR) -> Path | None:
    """The version's own folder (assets_dir is relative to the guidelines root), if it exists."""
    if isinstance(gv, GuidelineFile):
        folder = gv.folder
    else:
        if not gv.assets_dir:
            return None
        folder = Path(gv.assets_dir)
        if not folder.is_absolute():
            folder = Path(root) / folder
    folder = folder.resolve()
    return folder if folder.is_dir() else None


def resolve_image(gv: HasAssetsDir | GuidelineFile, link: str, root: Path = GUIDELINES_DIR) -> Path:
    """The file an image link points to, strictly inside the guideline's folder (symlinks
    resolved); GuidelineAdminError for URLs, absolute paths, '..', other types or missing files."""
    _check_link(link)
    folder = guideline_folder(gv, root)
    if folder is None:
        raise GuidelineAdminError("This guideline version has no folder on disk, so it has no images.")
    target = (folder / link).resolve()
    if not target.is_relative_to(folder):
        raise GuidelineAdminError(f"Image {link!r} points outside the guideline's folder.")
    if not target.is_file():
        raise GuidelineAdminError(f"Image {link!r} does not exist in {folder.name}/.")
    return target


def guideline_images(gv: GuidelineVersion | GuidelineFile, root: Path = GUIDELINES_DIR) -> list[Path]:
    """Every image the guideline links to, resolved inside its own folder; raises on the first
    link that is a URL, absolute, uses '..', escapes via a symlink, or is missing."""
    return [resolve_image(gv, link, root) for link in image_links(gv.body_md)]


# ---------------------------------------------------------------------------------------------
# Versions overview and study assignment


def version_table(session: Session) -> list[dict]:
    """Every loaded version with its change note, rating count and the studies that use it."""
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
                     "used": gv.id in counts, "studies": studies.get(gv.id, [])})
    return rows


def _study_versions(study: Study) -> list[int]:
    ids = [int(i) for i in (study.settings or {}).get("guideline_version_ids") or []]
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
            raise GuidelineAdminError(f"There is no guideline version with id {vid}.")
        rows.append(gv)
    return rows


def set_study_guideline(session: Session, study: Study, version_id: int) -> Study:
    """Rate the study under one guideline version (ends any guideline experiment). Refused once
    reviewers have joined: they keep the version they started with, so a change would silently
    split the study into two arms."""
    _check_versions(session, [version_id])
    if _study_versions(study) == [version_id] and study.guideline_version_id == version_id:
        return study
    joined = _joined(session, study)
    if joined:
        raise GuidelineAdminError(
            f"{joined} reviewer(s) have already joined study {study.name!r} under its current "
            "guideline; changing it now would mix versions. Create a new study for the new version.")
    settings = dict(study.settings or {})
    settings.pop("guideline_version_ids", None)
    study.settings = settings
    study.guideline_version_id = version_id
    session.flush()
    return study


def set_guideline_experiment(session: Session, study: Study, version_ids: list[int],
                             qa_share: float) -> Study:
    """Randomise reviewers across guideline versions and QA on/off (review.cohorts reads
    settings["guideline_version_ids"] and settings["qa_share"]). Arms are fixed once any reviewer
    has joined, because cohorts are balanced at enrolment."""
    ids = [int(v) for v in version_ids]
    if not ids:
        raise GuidelineAdminError("Pick at least one guideline version.")
    if len(set(ids)) != len(ids):
        raise GuidelineAdminError("Each guideline version can be one arm only.")
    if isinstance(qa_share, bool) or not isinstance(qa_share, int | float) or not 0.0 <= qa_share <= 1.0:
        raise GuidelineAdminError("The QA share must be between 0 and 1.")
    _check_versions(session, ids)
    settings = dict(study.settings or {})
    unchanged = (settings.get("guideline_version_ids") == ids
                 and float(settings.get("qa_share", 0.0)) == float(qa_share))
    if unchanged:
        return study
    joined = _joined(session, study)
    if joined:
        raise GuidelineAdminError(
            f"{joined} reviewer(s) have already joined study {study.name!r}: its arms (guideline "
            "versions and QA share) are fixed so the cohorts stay balanced and comparable. Set up "
            "the experiment in a new study.")
    settings["guideline_version_ids"] = ids
    settings["qa_share"] = float(qa_share)
    study.settings = settings
    study.guideline_version_id = ids[0]
    session.flush()
    return study


__all__ = [
    "GuidelineAdminError", "diff_versions", "existing_versions", "guideline_folder", "guideline_images",
    "image_links", "is_used", "new_version_from", "render_safe_markdown", "resolve_image",
    "set_guideline_experiment", "set_study_guideline", "split_images", "unified_diff", "version_table",
]
