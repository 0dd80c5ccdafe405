"""Consistent backups of a SQLite lab while it runs: the database through SQLite's online backup
API (readers and writers keep going; the copy is a single consistent snapshot) and the
content-addressed image store copied file by file (stored files never change, so a copy made
after the database snapshot contains every file the snapshot refers to).

PostgreSQL labs are backed up with the server's own tools (`pg_dump`), plus this image copy.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from review.config import Settings
from review.errors import ReviewError
from review.media.store import DISPLAY_DIR


class BackupError(ReviewError):
    """The backup cannot be made as asked; the message says what to do instead."""


def backup(settings: Settings, dest: Path) -> tuple[Path, int]:
    """Write `dest/review.db` and `dest/images/`; returns (database path, image files copied)."""
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty; choose a new folder so nothing is overwritten.")
    dest.mkdir(parents=True, exist_ok=True)
    images = _copy_images(settings.images_dir, dest / "images")
    if not settings.is_sqlite:
        raise BackupError(
            f"Images copied to {dest / 'images'} ({images} files). The database is PostgreSQL: "
            "back it up with `pg_dump` (e.g. pg_dump -Fc DBNAME > lab.dump).")
    source = settings.database_url.database
    if not source or not Path(source).exists():
        raise BackupError(f"No database file at {source}; run `python -m review init` first.")
    target = dest / "review.db"
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    with sqlite3.connect(target) as check:
        result = check.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"The backup failed its integrity check: {result}")
    return target, images


def _copy_images(src: Path, dst: Path) -> int:
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
