"""Consistent backups of a SQLite lab while it runs.

The database is snapshotted first, through SQLite's online backup API (readers and writers keep
going; the copy is one consistent state). Then exactly the store files that *snapshot* refers to
are copied (every `path` or `*_path` column of db.models), and each copy is checked against its
content address (the sha256 in its name). Files are stored before the rows that name them, so a
file the snapshot refers to is always there to copy; one that is not (deleted or damaged in the
store) fails the backup loudly instead of leaving a copy that looks complete. Files written after
the snapshot, and the display-JPEG cache, are left out.

The lab's own guideline versions (REVIEW_DATA_DIR/guidelines/, see
review.labeling.guidelines.files.authored_dir) are files too: the whole folder is copied to
`dest/guidelines/` with a sha256 of each file in `dest/guidelines.sha256` (`sha256sum -c` reads
it), and the check fails if a copy differs or a version the snapshot names has no folder.
Restoring is pointing REVIEW_DATA_DIR at the backup (or a copy of it anywhere): versions are
stored relative to the data folder, so their example images are found there.

PostgreSQL labs are backed up with the server's own tools (`pg_dump`), plus this image copy.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from db.models import Base
from review.config import Settings
from review.errors import ReviewError
from review.labeling.guidelines.files import AUTHORED_SUBDIR, authored_dir, authored_relpath
from review.media.store import DISPLAY_DIR, ImageStore

DATABASE_NAME = "review.db"
INCOMPLETE_NAME = "INCOMPLETE.txt"
#: sha256 of every file copied to dest/guidelines/, in `sha256sum` format (paths relative to dest).
GUIDELINES_MANIFEST = "guidelines.sha256"
_SHOWN = 20  # problem files named in the error message; INCOMPLETE.txt lists all of them


class BackupError(ReviewError):
    """The backup cannot be made as asked, or is incomplete; the message says what to do."""


def backup(settings: Settings, dest: Path) -> tuple[Path, int, int]:
    """Write `dest/review.db`, the store files it refers to under `dest/images/` and the lab's
    guideline folder under `dest/guidelines/`, checked; returns (database path, image files
    copied, guideline files copied)."""
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty; choose a new folder so nothing is overwritten.")
    if not settings.is_sqlite:
        dest.mkdir(parents=True, exist_ok=True)
        images = _copy_all_images(settings.images_dir, dest / "images")
        guidelines = copy_guidelines(settings.data_dir, dest)
        raise BackupError(
            f"Images copied to {dest / 'images'} ({images} files) and guidelines to "
            f"{dest / AUTHORED_SUBDIR} ({guidelines} files). The database is PostgreSQL: "
            "back it up with `pg_dump` (e.g. pg_dump -Fc DBNAME > lab.dump), taken before this "
            "image copy so that the copy holds every file the dump refers to.")
    source = settings.database_url.database
    if not source or not Path(source).exists():
        raise BackupError(f"No database file at {source}; run `python -m review init` first.")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / DATABASE_NAME
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)  # one step: a single consistent snapshot
    with closing(sqlite3.connect(target)) as check:
        result = check.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"The backup failed its integrity check: {result}")
    relpaths = referenced_files(target)
    source_store, backup_store = ImageStore(settings.images_dir), ImageStore(dest / "images")
    for relpath in relpaths:
        try:
            copy = backup_store.path(relpath)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_store.path(relpath), copy)
        except (FileNotFoundError, ValueError):
            pass  # reported by the check below, with every other problem
    guidelines = copy_guidelines(settings.data_dir, dest)
    verify_backup(dest, authored_dir(settings.data_dir))
    return target, len(relpaths), guidelines


def copy_guidelines(data_dir: Path, dest: Path) -> int:
    """Copy the lab's own guideline versions (`data_dir/guidelines/`) to `dest/guidelines/` and
    write the sha256 of each copied file's source to `dest/guidelines.sha256`, so the check
    compares every copy with what was read; returns the files copied."""
    source, lines = authored_dir(data_dir), []
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = (Path(AUTHORED_SUBDIR) / path.relative_to(source)).as_posix()
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            lines.append(f"{_sha256(path)}  {rel}\n")
            shutil.copy2(path, dest / rel)
    (dest / GUIDELINES_MANIFEST).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def referenced_files(database: Path) -> list[str]:
    """Every store path a lab database file refers to (each `path` / `*_path` column of the
    model that the file's schema has), sorted and without repeats."""
    paths: set[str] = set()
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        for table in Base.metadata.sorted_tables:
            present = {row[1] for row in conn.execute(f'PRAGMA table_info("{table.name}")')}
            for column in table.columns:
                if (column.name == "path" or column.name.endswith("_path")) and column.name in present:
                    paths.update(value for (value,) in conn.execute(
                        f'SELECT DISTINCT "{column.name}" FROM "{table.name}" '
                        f'WHERE "{column.name}" IS NOT NULL'))
    return sorted(paths)


def verify_backup(dest: Path, authored: Path | None = None) -> int:
    """Check that every file `dest/review.db` refers to is in `dest/images/` with the content its
    name addresses, that every guideline file is in `dest/guidelines/` with the sha256 listed in
    `dest/guidelines.sha256`, and that each of the lab's own guideline versions the database names
    has its folder there (`authored`: the lab's guidelines folder, to recognise rows stored with
    an absolute path); returns how many files were checked. An incomplete backup raises
    `BackupError` naming the files, and `dest/INCOMPLETE.txt` lists them all."""
    relpaths = referenced_files(dest / DATABASE_NAME)
    problems = list(_problems(ImageStore(dest / "images"), relpaths))
    manifest = _manifest(dest)
    problems += _guideline_problems(dest, manifest, authored)
    if problems:
        (dest / INCOMPLETE_NAME).write_text(
            "This backup is incomplete: its database refers to these store files, which are "
            "missing or damaged.\n" + "".join(f"{p}\n" for p in problems))
        shown = "; ".join(problems[:_SHOWN]) + ("; ..." if len(problems) > _SHOWN else "")
        raise BackupError(
            f"The backup in {dest} is incomplete: {len(problems)} of {len(relpaths) + len(manifest)} "
            f"image and guideline files its database refers to are missing or damaged in the lab's "
            f"data folder: {shown} (all listed in {dest / INCOMPLETE_NAME}). Do not restore from it; "
            "repair or regenerate those files, then back up again.")
    return len(relpaths) + len(manifest)


def _manifest(dest: Path) -> dict[str, str]:
    """dest/guidelines.sha256 as {path relative to dest: sha256}; empty if there is none."""
    path = dest / GUIDELINES_MANIFEST
    if not path.exists():
        return {}
    return {rel: sha for sha, rel in (line.split("  ", 1) for line in path.read_text("utf-8").splitlines()
                                       if line.strip())}


def _guideline_problems(dest: Path, manifest: dict[str, str], authored: Path | None) -> Iterable[str]:
    for rel, sha in manifest.items():
        try:
            digest = _sha256(dest / rel)
        except FileNotFoundError:
            yield f"{rel} (missing)"
            continue
        if digest != sha:
            yield f"{rel} (damaged: its content has sha256 {digest[:12]}..., not {sha[:12]}...)"
    with closing(sqlite3.connect(f"file:{dest / DATABASE_NAME}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT slug, version, assets_dir FROM guideline_versions").fetchall()
    for slug, version, assets_dir in rows:
        folder = authored_relpath(assets_dir, authored)
        if folder is not None and f"{AUTHORED_SUBDIR}/{folder}/guideline.md" not in manifest:
            yield f"{AUTHORED_SUBDIR}/{folder}/ (missing: the folder of guideline {slug} v{version})"


def _problems(store: ImageStore, relpaths: Iterable[str]) -> Iterable[str]:
    for relpath in relpaths:
        try:
            path = store.path(relpath)
        except ValueError:
            yield f"{relpath} (not a store path)"
            continue
        try:
            digest = _sha256(path)
        except FileNotFoundError:
            yield f"{relpath} (missing)"
            continue
        if digest != path.stem:
            yield f"{relpath} (damaged: its content has sha256 {digest[:12]}...)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_all_images(src: Path, dst: Path) -> int:
    count = 0
    if not src.exists():
        return count
    for path in src.rglob("*"):
        if path.is_file() and not path.name.startswith(".") and \
                path.relative_to(src).parts[0] != DISPLAY_DIR:  # a cache, made again on demand
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count
