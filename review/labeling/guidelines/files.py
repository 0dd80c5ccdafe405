"""Labeling guidelines: Markdown files in `guidelines/<slug>/v<N>/guideline.md` are the source;
the versions shipped with the app live in the checkout's `guidelines/` (read only), the versions a
lab writes itself under the data folder (`authored_dir`: REVIEW_DATA_DIR/guidelines/), so an
upgrade of the app never meets a lab's own files. The database keeps every version ever loaded
so an old rating always shows the text it was made under. A version is immutable once a rating
used it: loading changed text for a used version is refused with a message telling the author to
make a new version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import String, cast, exists, select
from sqlalchemy.orm import Session

from db.models import GuidelineVersion, Rating
from db.rows import get_or_create
from review.errors import ReviewError

GUIDELINES_DIR = Path(__file__).resolve().parents[3] / "guidelines"
#: Where a lab's own versions are written, inside its data folder (see `authored_dir`).
AUTHORED_SUBDIR = "guidelines"
#: `GuidelineVersion.assets_dir` of a lab's own version: this prefix, then `<slug>/v<N>` relative
#: to `authored_dir(data_dir)`, so a moved data folder or a restored backup keeps its images.
AUTHORED_PREFIX = "data:"
#: How a guideline version is named everywhere (pages, exports, statistics): "<slug> v<version>".
GUIDELINE_LABEL = GuidelineVersion.slug + " v" + cast(GuidelineVersion.version, String)
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


class GuidelineError(ReviewError):
    """A guideline file is malformed or would rewrite a version that ratings already used."""


@dataclass(frozen=True)
class GuidelineFile:
    slug: str
    version: int
    title: str
    change_note: str
    body_md: str
    folder: Path

    @property
    def content_sha256(self) -> str:
        """Hash of the text and of every file beside it (example images count as content)."""
        h = hashlib.sha256(f"{self.title}\n{self.change_note}\n{self.body_md}".encode())
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            if path.name != "guideline.md":
                h.update(path.relative_to(self.folder).as_posix().encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()


def parse_guideline(path: Path) -> GuidelineFile:
    """Read one guideline.md with its YAML front matter (slug, version, title, change_note)."""
    text = path.read_text(encoding="utf-8")
    match = _FRONT.match(text)
    if not match:
        raise GuidelineError(f"{path}: missing the '---' front matter block (slug, version, title).")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise GuidelineError(f"{path}: front matter is not valid YAML: {exc}") from exc
    missing = [k for k in ("slug", "version", "title") if k not in meta]
    if missing:
        raise GuidelineError(f"{path}: front matter lacks {', '.join(missing)}.")
    try:
        version = int(meta["version"])
    except (TypeError, ValueError) as exc:
        raise GuidelineError(f"{path}: version must be an integer.") from exc
    return GuidelineFile(
        slug=str(meta["slug"]),
        version=version,
        title=str(meta["title"]),
        change_note=str(meta.get("change_note", "")),
        body_md=text[match.end():].strip() + "\n",
        folder=path.parent,
    )


def discover(root: Path = GUIDELINES_DIR) -> list[GuidelineFile]:
    """All guideline versions under `root`, ordered by slug and version."""
    files = [parse_guideline(p) for p in sorted(root.glob("*/v*/guideline.md"))]
    return sorted(files, key=lambda g: (g.slug, g.version))


def authored_dir(data_dir: Path) -> Path:
    """The folder new guideline versions are written to: under the lab's data folder, never in
    the app's code folder (which may be read only, and is replaced on upgrade)."""
    return Path(data_dir) / AUTHORED_SUBDIR


def discover_all(root: Path = GUIDELINES_DIR, authored: Path | None = None) -> list[GuidelineFile]:
    """The shipped versions under `root` and the lab's own under `authored` (if it exists), one
    list ordered by slug and version; the same slug and version in both is refused."""
    files = discover(root)
    if authored is not None and Path(authored).resolve() != Path(root).resolve() and Path(authored).is_dir():
        seen = {(g.slug, g.version): g for g in files}
        for g in discover(authored):
            if (g.slug, g.version) in seen:
                raise GuidelineError(f"{g.slug} v{g.version} exists both in {root} and in {authored}; "
                                     f"rename or remove {g.folder} (new versions get the next number).")
            files.append(g)
    return sorted(files, key=lambda g: (g.slug, g.version))


def assets_dir_of(folder: Path, authored: Path | None = None) -> str:
    """What the database keeps as a version folder's `assets_dir` (resolved by `version_folder`):
    `<slug>/v<N>` for one shipped in GUIDELINES_DIR, AUTHORED_PREFIX + `<slug>/v<N>` for one in
    the lab's `authored` folder, the absolute path for any other folder (tests, custom roots)."""
    folder = Path(folder).resolve()
    for base, prefix in ((GUIDELINES_DIR, ""), (authored, AUTHORED_PREFIX)):
        if base is not None and folder.is_relative_to(Path(base).resolve()):
            return prefix + folder.relative_to(Path(base).resolve()).as_posix()
    return str(folder)


def authored_relpath(assets_dir: str, authored: Path | None = None) -> str | None:
    """`<slug>/v<N>` of a lab's own version (relative to `authored_dir`), None for any other.
    An absolute `assets_dir` that `version_folder` finds inside `authored` (rows written before
    the relative form) counts."""
    if assets_dir.startswith(AUTHORED_PREFIX):
        return assets_dir.removeprefix(AUTHORED_PREFIX)
    folder = version_folder(assets_dir, authored)
    if authored is None or folder is None or not folder.resolve().is_relative_to(Path(authored).resolve()):
        return None
    return folder.resolve().relative_to(Path(authored).resolve()).as_posix()


def version_folder(assets_dir: str, authored: Path | None = None,
                   shipped: Path = GUIDELINES_DIR) -> Path | None:
    """Where a stored version's files are now (the one rule for reading `assets_dir`): a lab's own
    version under `authored` (the current `authored_dir(data_dir)`; None without it), a shipped
    one under `shipped`, an absolute path as written, except that an old absolute
    `.../guidelines/<slug>/v<N>` moves to `authored/<slug>/v<N>` when that folder exists there
    (a data folder moved or restored before versions were stored relative to it)."""
    if not assets_dir:
        return None
    if assets_dir.startswith(AUTHORED_PREFIX):
        rel = assets_dir.removeprefix(AUTHORED_PREFIX)
        return Path(authored) / rel if authored is not None else None
    path = Path(assets_dir)
    if not path.is_absolute():
        return Path(shipped) / path
    if authored is not None and len(path.parts) >= 3 and path.parts[-3] == AUTHORED_SUBDIR:
        moved = Path(authored) / path.parts[-2] / path.parts[-1]
        if moved.is_dir():
            return moved
    return path


def sync_version(session: Session, gf: GuidelineFile, authored: Path | None = None) -> GuidelineVersion:
    """Insert a new version, refresh an unused one, keep a used one (refusing changed text).
    `authored` is the lab's own folder (`authored_dir`), so its versions are stored relative to
    it; a row's `assets_dir` follows its folder whenever the content is unchanged."""
    assets_dir = assets_dir_of(gf.folder, authored)
    row, new = get_or_create(
        session, GuidelineVersion, {"slug": gf.slug, "version": gf.version}, lambda: GuidelineVersion(
            slug=gf.slug,
            version=gf.version,
            title=gf.title,
            body_md=gf.body_md,
            change_note=gf.change_note,
            content_sha256=gf.content_sha256,
            assets_dir=assets_dir,
        ))
    if new or row.content_sha256 == gf.content_sha256:
        row.assets_dir = assets_dir
        return row
    if is_used(session, row.id):
        raise GuidelineError(
            f"Guideline {gf.slug} v{gf.version} has been used by ratings and cannot change. "
            f"Copy its folder to v{gf.version + 1}, edit there, and add a change_note."
        )
    row.title, row.body_md, row.change_note = gf.title, gf.body_md, gf.change_note
    row.content_sha256, row.assets_dir = gf.content_sha256, assets_dir
    return row


def is_used(session: Session, version_id: int) -> bool:
    return bool(session.scalar(select(exists().where(Rating.guideline_version_id == version_id))))


def sync_all(session: Session, root: Path = GUIDELINES_DIR,
             authored: Path | None = None) -> list[GuidelineVersion]:
    """Load every shipped version (`root`) and the lab's own (`authored`, see `authored_dir`)."""
    return [sync_version(session, gf, authored) for gf in discover_all(root, authored)]
