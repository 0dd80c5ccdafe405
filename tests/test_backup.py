"""Backups: a snapshot of the database, then exactly the store files it refers to, each checked;
complete while a writer keeps storing images, and a loud failure when the store lacks a file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from db.models import DegradedImage, Restoration, SourceImage
from review.backup import backup
from review.cli import cli
from review.config import load_settings
from review.database import open_lab
from review.media.store import DISPLAY_DIR
from tests.support import build_study, wait_until

ROOT = Path(__file__).resolve().parent.parent
BACKUPS_UNDER_LOAD = 5


#: A generation job's writes, as fast as they go, in another process: a new source, its blurred
#: copy with the kernel, a restoration (files first, then the rows, one transaction per image);
#: stops after `argv[1]` images or when killed.
WRITER = """
import sys

from review.database import open_lab
from review.media import catalog
from review.media.degrade import BlurSpec
from tests.support import picture

lab = open_lab()
for seed in range(1, int(sys.argv[1]) + 1):
    with lab.sessions() as s, s.begin():
        src = catalog.add_source(s, lab.store, picture(seed, (48, 40)))
        deg = catalog.add_degraded(s, lab.store, src, BlurSpec("defocus", 2.0))
        catalog.add_restoration(s, lab.store, deg, "wiener", {"seed": seed},
                                picture(seed + 10_000, (48, 40)), {}, {})
"""


def _check_backup(dest: Path) -> int:
    """Open the backup as a lab and read every file its rows name; returns the sources in it."""
    lab = open_lab(load_settings({"REVIEW_DATA_DIR": str(dest)}))
    try:
        with lab.sessions() as s:
            named = {p: sha for p, sha in s.execute(select(SourceImage.path, SourceImage.sha256))}
            named |= {p: sha for p, sha in s.execute(select(DegradedImage.path, DegradedImage.sha256))}
            named |= {p: sha for p, sha in s.execute(select(Restoration.path, Restoration.sha256))}
            named |= {p: Path(p).stem for p in s.scalars(select(DegradedImage.kernel_path)) if p}
            sources = s.scalar(select(func.count()).select_from(SourceImage))
    finally:
        lab.engine.dispose()
    for relpath, sha in named.items():
        assert hashlib.sha256((dest / "images" / relpath).read_bytes()).hexdigest() == sha, relpath
    files = {p.relative_to(dest / "images").as_posix() for p in (dest / "images").rglob("*")
             if p.is_file()}
    assert files == set(named)  # exactly what the snapshot refers to: no later file, no cache
    return sources


def _sources(lab) -> int:
    with lab.sessions() as s:
        return s.scalar(select(func.count()).select_from(SourceImage))


@pytest.mark.slow
def test_backups_taken_while_a_writer_stores_images_are_complete(lab, tmp_path):
    build_study(lab, 2)
    env = dict(os.environ, REVIEW_DATA_DIR=str(lab.settings.data_dir))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, "5000"], cwd=ROOT, env=env,
                              stderr=subprocess.PIPE, text=True)
    sizes, in_last = [], _sources(lab)
    try:
        started = time.monotonic()
        for i in range(BACKUPS_UNDER_LOAD):
            wait_until(lambda in_last=in_last: writer.poll() is not None or _sources(lab) > in_last,
                       timeout=30, what="the writer to store an image the last backup lacks")
            assert writer.poll() is None, writer.communicate()[1]  # still writing
            _db, copied = backup(lab.settings, tmp_path / f"backup{i}")
            in_last = _check_backup(tmp_path / f"backup{i}")
            sizes.append((copied, in_last))
        elapsed = time.monotonic() - started
    finally:
        writer.kill()
        writer.communicate()
    assert elapsed < 30, f"{BACKUPS_UNDER_LOAD} backups took {elapsed:.1f} s"
    assert sizes == sorted(set(sizes))  # each backup holds rows stored after the one before
    assert not (tmp_path / "backup0" / "images" / DISPLAY_DIR).exists()


def test_a_missing_or_damaged_image_fails_the_backup_naming_the_files(lab, tmp_path):
    build_study(lab, 3)
    with lab.sessions() as s:
        restorations = list(s.scalars(select(Restoration.path).order_by(Restoration.id)))
    lab.store.path(restorations[0]).unlink()
    lab.store.path(restorations[1]).write_bytes(b"not the image this name addresses")
    dest = tmp_path / "backup"
    result = CliRunner().invoke(cli, ["backup", str(dest)])
    assert result.exit_code == 1, result.output
    assert "incomplete: 2 of" in result.output
    assert f"{restorations[0]} (missing)" in result.output
    assert f"{restorations[1]} (damaged" in result.output
    listed = (dest / "INCOMPLETE.txt").read_text()
    assert restorations[0] in listed and restorations[1] in listed
