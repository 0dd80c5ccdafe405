"""The content-addressed image store.

Kept images live in an :class:`ImageStore`: a folder addressed by the sha256 of the stored bytes
(``<root>/<sha[:2]>/<sha>.<ext>``). The database keeps only hashes and relative paths. Images are
stored as lossless PNG so that restorations are never re-compressed; other artefacts (blur
kernels as ``.npy``) go in as raw bytes. Writes are atomic and idempotent. Every image that
enters from outside has been through :func:`review.media.decode.decode_image` first.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from review.media.decode import as_rgb, encode_display_jpeg

__all__ = ["DISPLAY_DIR", "DISPLAY_FULL", "DISPLAY_MAX_SIDE", "DISPLAY_SIDES", "ImageStore", "StoredFile",
           "display_tier", "load_rgb"]


@dataclass(frozen=True)
class StoredFile:
    """A file in the store: its sha256 (hex) and its path relative to the store root."""

    sha256: str
    relpath: str  # forward slashes, e.g. "ab/ab12...ef.png"


_EXT_RE = re.compile(r"^[a-z0-9]{1,10}$")
_RELPATH_RE = re.compile(r"^([0-9a-f]{2})/(\1[0-9a-f]{62})\.([a-z0-9]{1,10})$")
_PNG_MODES = ("L", "RGB", "RGBA")


DISPLAY_MAX_SIDE = 512  # long side of the small JPEGs most pages show
# Display copies the reviewer's viewer picks from by the pixels it has to fill (display_tier);
# DISPLAY_FULL is the stored size, for zooming into full detail.
DISPLAY_SIDES = (512, 1024)
DISPLAY_FULL = 0
FULL_QUALITY = 92  # the zoomed-in copy is looked at pixel by pixel: fewer JPEG artefacts
DISPLAY_DIR = "display"  # derivatives under the store root: display/<side or full>/<sha[:2]>/<sha>.jpg


def display_tier(needed_px: int) -> int:
    """The smallest display copy (long side) that covers ``needed_px`` device pixels, or
    DISPLAY_FULL when none does: the viewer never gets a copy smaller than it shows."""
    for side in DISPLAY_SIDES:
        if needed_px <= side:
            return side
    return DISPLAY_FULL


class ImageStore:
    """Files addressed by sha256 under ``root`` (the data folder's ``images/``), plus a cache
    of display-size JPEG derivatives (made when an image is stored, or on first view)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_resolved = self.root.resolve()

    def put_image(self, img: Image.Image) -> StoredFile:
        """Store as lossless PNG (no metadata, fixed settings: same pixels, same sha).

        The sha is of the PNG bytes, so it is stable for a given Pillow/zlib build; after a
        library upgrade the same pixels may get a new file (never a wrong one).
        """
        if img.mode not in _PNG_MODES:
            raise ValueError(f"put_image stores L, RGB or RGBA images, got mode {img.mode}")
        # A fresh image drops info (ICC, EXIF, text chunks) that Pillow would otherwise write.
        clean = Image.frombytes(img.mode, img.size, img.tobytes())
        out = io.BytesIO()
        clean.save(out, format="PNG", compress_level=6, optimize=False)
        stored = self.put_bytes(out.getvalue(), "png")
        # The reviewer's first view of this image then costs a file read, not an encode.
        for side in DISPLAY_SIDES:
            self._display_file(stored.sha256, side, lambda: clean)
        return stored

    def put_bytes(self, data: bytes, ext: str) -> StoredFile:
        """Store raw bytes (e.g. a ``.npy`` kernel); atomic, and a no-op if already present."""
        ext = ext.lower().removeprefix(".")
        if not _EXT_RE.match(ext):
            raise ValueError(f"invalid file extension {ext!r}")
        sha = hashlib.sha256(data).hexdigest()
        relpath = f"{sha[:2]}/{sha}.{ext}"
        target = self.root / sha[:2] / f"{sha}.{ext}"
        if target.is_file() and target.stat().st_size == len(data):
            return StoredFile(sha, relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomic(target, data)
        return StoredFile(sha, relpath)

    @staticmethod
    def _write_atomic(target: Path, data: bytes) -> None:
        """Temp file in the same folder, fsync, os.replace: readers never see half a file."""
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise

    def path(self, relpath: str) -> Path:
        """Absolute path of a stored file; refuses anything that is not a store path."""
        if not isinstance(relpath, str) or not _RELPATH_RE.match(relpath):
            raise ValueError(f"not a store path: {relpath!r}")
        full = (self.root / relpath).resolve()
        if not full.is_relative_to(self._root_resolved):
            raise ValueError(f"store path escapes the store root: {relpath!r}")
        return full

    def read_bytes(self, relpath: str) -> bytes:
        """The stored bytes for a relative path."""
        return self.path(relpath).read_bytes()

    def display_jpeg(self, relpath: str, max_side: int = DISPLAY_MAX_SIDE) -> bytes:
        """The stored image as a JPEG of at most ``max_side`` px (`encode_display_jpeg`; at its
        stored size for DISPLAY_FULL), made once and kept under ``display/``: a regenerable
        cache, left out of backups. The PNG is decoded by `open_image` (PNG only, checked)."""
        sha = self.path(relpath).stem
        return self._display_file(sha, max_side, lambda: self.open_image(relpath))

    def _display_file(self, sha: str, max_side: int, load: Callable[[], Image.Image]) -> bytes:
        max_side = int(max_side)
        if max_side < 0:
            raise ValueError(f"max_side must be positive or DISPLAY_FULL, got {max_side}")
        folder = "full" if max_side == DISPLAY_FULL else str(max_side)
        target = self.root / DISPLAY_DIR / folder / sha[:2] / f"{sha}.jpg"
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            data = b""
        if data:
            return data
        if max_side == DISPLAY_FULL:
            img = load()
            data = encode_display_jpeg(img, max(img.size), FULL_QUALITY)
        else:
            data = encode_display_jpeg(load(), max_side)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomic(target, data)
        return data

    def open_image(self, relpath: str) -> Image.Image:
        """A stored PNG as an RGB image (fully loaded; the file is closed)."""
        with Image.open(self.path(relpath), formats=["PNG"]) as im:
            im.load()
            return as_rgb(im).copy()


def load_rgb(root: Path, relpath: str) -> Image.Image:
    """Shortcut for ``ImageStore(root).open_image(relpath)``."""
    return ImageStore(root).open_image(relpath)
