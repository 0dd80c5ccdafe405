"""Backups: a snapshot of the database, then exactly the store files it refers to, each checked;
complete while a writer keeps storing images, and a loud failure when the store lacks a file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from db.models import DegradedImage, GuidelineVersion, Restoration, SourceImage
from review.backup import GUIDELINES_MANIFEST, BackupError, backup, verify_backup
from review.cli import cli
from review.config import load_settings
from review.database import open_lab
from review.labeling.guidelines.authoring import new_version_from
from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir, sync_all
from review.labeling.guidelines.render import guideline_images
from review.labeling.views import GuidelineView
from review.media.store import DISPLAY_DIR
from tests.support import build_study, wait_until
from tests.support_app import page_app, page_user

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
            _db, copied, _guidelines = backup(lab.settings, tmp_path / f"backup{i}")
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


def _author_version_with_image(lab) -> Path:
    """The lab's own fidelity v4 (written to its data folder, loaded) showing one example image."""
    with lab.sessions() as s, s.begin():
        v3 = next(v for v in sync_all(s) if (v.slug, v.version) == ("fidelity", 3))
    mine = authored_dir(lab.settings.data_dir)
    path = new_version_from(v3, body_md="Rate the face.\n\n![face](examples/score1_face.jpg)\n",
                            change_note="one example", root=mine)
    with lab.sessions() as s, s.begin():
        sync_all(s, GUIDELINES_DIR, mine)
    return path.parent


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_a_restored_backup_shows_the_labs_own_guideline_with_its_image_from_the_new_place(
        lab, tmp_path, monkeypatch):
    folder = _author_version_with_image(lab)
    image = (folder / "examples" / "score1_face.jpg").read_bytes()
    dest = tmp_path / "backup"
    _db, _images, guidelines = backup(lab.settings, dest)
    source = _tree(authored_dir(lab.settings.data_dir))
    assert guidelines == len(source) == 11  # guideline.md and the 10 pictures copied from v3
    assert _tree(dest / "guidelines") == source
    # restore somewhere else, with the old data folder's guidelines gone
    restored = tmp_path / "elsewhere" / "lab"
    shutil.copytree(dest, restored)
    shutil.rmtree(authored_dir(lab.settings.data_dir))
    lab2 = open_lab(load_settings({"REVIEW_DATA_DIR": str(restored)}))
    try:
        with lab2.sessions() as s:
            row = s.scalar(select(GuidelineVersion).where(GuidelineVersion.slug == "fidelity",
                                                          GuidelineVersion.version == 4))
            view = GuidelineView.of(row)
    finally:
        lab2.engine.dispose()
    assert view.assets_dir == "data:fidelity/v4"  # relative to the data folder, not where it was
    (shown,) = guideline_images(view, authored=authored_dir(restored))
    assert shown == (restored / "guidelines" / "fidelity" / "v4" / "examples" / "score1_face.jpg").resolve()
    assert shown.read_bytes() == image
    # the authoring page of the restored lab previews v4 (the newest) with its picture
    monkeypatch.setenv("REVIEW_DATA_DIR", str(restored))
    at = page_app("guidelines_page", page_user("admin")).run()
    assert not at.exception, at.exception
    assert any("Rate the face." in m.value for m in at.markdown)
    assert len(at.image) == 1 and not [c.value for c in at.caption if "image not shown" in c.value]


def test_a_backup_without_the_guidelines_folder_fails_its_check(lab, tmp_path):
    _author_version_with_image(lab)
    dest = tmp_path / "backup"
    backup(lab.settings, dest)
    mine = authored_dir(lab.settings.data_dir)
    assert verify_backup(dest, mine) == 11
    examples = dest / "guidelines" / "fidelity" / "v4" / "examples"
    (examples / "score1_face.jpg").write_bytes(b"other")
    (examples / "invented_detail_coffee.jpg").unlink()
    with pytest.raises(BackupError, match="incomplete: 2 of 11") as failed:
        verify_backup(dest, mine)
    assert "guidelines/fidelity/v4/examples/score1_face.jpg (damaged" in str(failed.value)
    assert "guidelines/fidelity/v4/examples/invented_detail_coffee.jpg (missing)" in str(failed.value)
    # a backup that skipped the folder altogether (no copy, no list) is refused too
    shutil.rmtree(dest / "guidelines")
    (dest / GUIDELINES_MANIFEST).unlink()
    with pytest.raises(BackupError, match=r"guidelines/fidelity/v4/ \(missing: the folder of guideline "
                                          r"fidelity v4\)"):
        verify_backup(dest, mine)
    assert "guidelines/fidelity/v4/" in (dest / "INCOMPLETE.txt").read_text()
