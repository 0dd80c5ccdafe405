"""Safe image decoding: arbitrary bytes in, a plain 8-bit sRGB image or a clear refusal out.

Every image a user hands us (an upload, a file on disk) goes through :func:`decode_image`, which
turns arbitrary bytes into a plain 8-bit sRGB ``RGB`` image or raises :class:`ImageRejected`
with a machine-readable ``code`` and a message a person can act on. Nothing is stored before
decoding has succeeded, so a rejected upload leaves no trace in the store.

Decoding policy, and why:

* Allow-list of formats (JPEG, PNG, WebP, TIFF, HEIC/HEIF), detected by Pillow from the file's
  content, never from its name: the name is user-controlled and says nothing about the bytes.
* Size caps on bytes and on header pixel count, checked *before* the pixels are decoded, so a
  tiny file that claims to be 30000 x 30000 cannot exhaust memory. Pillow's own
  decompression-bomb warning/error is turned into the same rejection.
* Truncated files are rejected (Pillow must not pad missing data with grey): a half-uploaded
  selfie would otherwise be rated as if the restorer had damaged it. ``LOAD_TRUNCATED_IMAGES``
  alone does not ensure this: libjpeg fills the rest of the picture with grey when the
  compressed data ends at an end-of-image marker before the last block, and Pillow's PNG
  decoder stops quietly when the zlib stream ends before the last row (leaving zeros). So a
  file whose header claims more pixels than its data holds is checked per format (see
  :func:`_check_jpeg`, :func:`_check_png`, :func:`_check_tiff_tiles`).
* Images smaller than :data:`MIN_SIDE` pixels on a side are refused: every restorer is scored
  with SSIM, whose 7 x 7 window does not fit in them.
* Damage that a decoder hides is refused too (see :func:`_check_filler`): libtiff decodes a
  G4/LZW/deflate strip whose data goes bad up to the bad code and leaves the rest of the strip
  one colour, saying so only on stderr; libheif leaves a HEIC tile or slice it cannot decode at
  YUV zero (flat green); libjpeg stops at a stray marker inside the compressed data and fills
  the rest with grey. What the C decoders print on stderr and the warnings Pillow raises while
  decoding are captured (:func:`_quiet_decoders`), never shown to the user; the refusal says
  how much of the picture is missing.
* Any exception Pillow or pillow-heif raises while opening or decoding becomes a rejection
  (damaged TIFF frame chains raise ``TypeError``, damaged HEIC ``RuntimeError``); see
  :func:`_decoding`.
* Animations and multi-page files are rejected rather than silently reduced to frame one.
* EXIF orientation is applied (phone selfies are stored sideways with an orientation tag).
* Colour is normalised to 8-bit sRGB: embedded non-sRGB ICC profiles (Display P3 from
  iPhones, Adobe RGB, CMYK press profiles) are converted with LittleCMS, 16-bit samples are
  scaled (not clipped) to 8 bit and transparency is composited onto white.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

from review.errors import ReviewError, regular_file_problem

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "MIN_SIDE",
    "ImageRejected",
    "as_rgb",
    "decode_file",
    "decode_image",
    "encode_display_jpeg",
    "from_array",
    "to_array",
]

log = logging.getLogger(__name__)

# HEIC is what iPhones produce by default; pillow-heif plugs it into Image.open as "HEIF".
pillow_heif.register_heif_opener()
# Never pad a truncated file with grey: see module docstring. Re-checked at each decode.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_BYTES = 40_000_000
DEFAULT_MAX_PIXELS = 40_000_000
# Smallest width and height we take: restorers are scored with skimage's structural_similarity,
# whose default 7 x 7 window must fit in the image (smaller inputs fail every restorer).
MIN_SIDE = 7

# Pillow format names we accept. "MPO" is how Pillow reports the multi-picture JPEGs that many
# phone cameras write (main image plus depth map or preview); its first frame is the photo.
_ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "HEIF")
_SINGLE_IMAGE_BY_DESIGN = frozenset({"MPO", "HEIF"})
# Formats we recognise only to name them in the rejection message; they are never decoded.
_NAMED_REFUSED_FORMATS: tuple[str, ...] = ("GIF", "BMP", "AVIF", "JPEG2000", "PSD", "ICO")
_FRIENDLY_NAMES = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "TIFF": "TIFF",
    "HEIF": "HEIC/HEIF",
    "GIF": "GIF",
    "BMP": "BMP",
    "AVIF": "AVIF",
    "JPEG2000": "JPEG 2000",
    "PSD": "Photoshop (PSD)",
    "ICO": "Windows icon (ICO)",
}
_ACCEPTED_TEXT = "JPEG, PNG, WebP, TIFF or HEIC"

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class ImageRejected(ReviewError):
    """A user-supplied image we refuse; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str]]:
        # Keep the code when the error crosses a process boundary (pickle).
        return (type(self), (self.code, self.message))


# ---------------------------------------------------------------------------------------------
# Decoding


def _human_bytes(n: int) -> str:
    """Decimal units, as file browsers show them (52.3 MB)."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}".removesuffix(".0") + " MB"
    if n >= 1_000:
        return f"{n / 1_000:.1f}".removesuffix(".0") + " kB"
    return f"{n} bytes"


def _human_megapixels(n: int) -> str:
    return f"{n / 1_000_000:.1f}".removesuffix(".0") + " megapixels"


def _reject_bytes(size: int, max_bytes: int) -> ImageRejected:
    return ImageRejected(
        "too_large_bytes",
        f"The file is {_human_bytes(size)}; the limit is {_human_bytes(max_bytes)}. "
        "Export a smaller JPEG and try again.",
    )


def _reject_pixels(size: tuple[int, int] | None, max_pixels: int) -> ImageRejected:
    if size is None:
        what = "The image is too large"
    else:
        w, h = size
        what = f"The image is {w} x {h} pixels ({_human_megapixels(w * h)})"
    return ImageRejected(
        "too_many_pixels",
        f"{what}; the limit is {_human_megapixels(max_pixels)}. "
        "Resize it (for example to 4000 pixels on the long side) and try again.",
    )


def _unidentified(data: bytes) -> ImageRejected:
    """Explain why no allowed plugin could open the bytes, using Pillow's own signatures."""
    prefix = data[:16]
    for fmt in _ALLOWED_FORMATS:
        entry = Image.OPEN.get(fmt)
        if entry is not None and entry[1] is not None and entry[1](prefix) is True:
            # The signature is one we accept but the header could not be parsed.
            return ImageRejected(
                "corrupt",
                f"The file starts like a {_FRIENDLY_NAMES[fmt]} image but its header is damaged "
                "or incomplete. Open it on your device, export or save it again, and upload "
                "the new file.",
            )
    name = None
    candidates = [f for f in _NAMED_REFUSED_FORMATS if f in Image.OPEN]
    try:
        with Image.open(io.BytesIO(data), formats=candidates) as probe:
            name = _FRIENDLY_NAMES.get(probe.format or "", probe.format)
    except Exception:  # identification is best effort, only to name the format
        name = None
    if name:
        return ImageRejected(
            "unsupported_format",
            f"{name} files are not accepted. Please upload a {_ACCEPTED_TEXT} image "
            "(export or save the picture in one of these formats and try again).",
        )
    return ImageRejected(
        "unsupported_format",
        "This file is not an image we can read (its content is not "
        f"{_ACCEPTED_TEXT}, whatever its name says). Please upload a photo in one of these formats.",
    )


def _corrupt(detail: str) -> ImageRejected:
    return ImageRejected(
        "corrupt",
        f"The image file is damaged and cannot be decoded ({detail}). "
        "Open it on your device, export or save it again, and upload the new file.",
    )


def _truncated() -> ImageRejected:
    return ImageRejected(
        "truncated",
        "The image file is incomplete (it ends before all the picture data). This usually means "
        "the upload or download was interrupted. Please upload the complete file again.",
    )


def _too_small(size: tuple[int, int]) -> ImageRejected:
    w, h = size
    return ImageRejected(
        "too_small",
        f"The image is {w} x {h} pixels; it must be at least {MIN_SIDE} x {MIN_SIDE} pixels "
        "(the restorers and their quality scores need that much). Please upload a larger photo.",
    )


@contextmanager
def _decoding(max_pixels: int) -> Iterator[None]:
    """Any exception from Pillow or pillow-heif inside the block becomes an ImageRejected.

    Decoders fed hostile bytes fail with whatever type the failing line happens to raise: a
    damaged TIFF frame chain gives ``TypeError: Missing dimensions``, a damaged HEIC a
    ``RuntimeError`` from libheif, others ``KeyError``, ``struct.error`` or ``AssertionError``.
    A list of types lets the next fuzzed file through as a traceback, so we catch
    ``Exception``; to keep our own bugs visible, the blocks wrapped in this contain nothing but
    calls into the imaging libraries on the user's bytes (open, frame count, load, EXIF
    transpose). Our rejections raised inside pass through unchanged.
    """
    try:
        yield
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise _reject_pixels(None, max_pixels) from None
    except Exception as exc:  # noqa: BLE001 - see docstring: a decoder boundary
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            raise _truncated() from None
        raise _corrupt(str(exc) or type(exc).__name__) from None


# libtiff's default error handler writes "Module: message." lines to stderr, the module being a
# function or the file's name ("tempfile.tif" in Pillow); Pillow silences its warnings, not its
# errors. Other threads' output caught in the same moment is passed back.
_LIBTIFF_LINE = re.compile(r"^[A-Za-z_][\w.-]*: \S")
# Serialises the stderr redirection and warnings.catch_warnings below (both process-wide).
_STDERR_LOCK = threading.Lock()


@contextmanager
def _quiet_decoders() -> Iterator[list[str]]:
    """Silence the decoders while the block runs; yields a list of libtiff's complaints.

    The list receives (after the block) the lines libtiff writes to the process's stderr, one
    per damaged row or strip (a damaged G4 file printed 117 of them). Python warnings Pillow
    raises (damaged EXIF and the like) are recorded and logged at debug level; Pillow's
    decompression-bomb warning becomes an error. None of it reaches the user, who gets the
    refusal (or nothing, for harmless metadata). Lines from other threads that happen to write
    to stderr in the same moment are written back to stderr.
    """
    messages: list[str] = []
    with _STDERR_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to redirect (a daemon): nothing to hide
            saved = -1
        with tempfile.TemporaryFile() as sink:
            if saved >= 0:
                os.dup2(sink.fileno(), 2)
            try:
                yield messages
            finally:
                if saved >= 0:
                    os.dup2(saved, 2)
                    os.close(saved)
                sink.seek(0)
                passed_back: list[str] = []
                for line in sink.read().decode("utf-8", "replace").splitlines():
                    (messages if _LIBTIFF_LINE.match(line) else passed_back).append(line)
                if passed_back and saved >= 0:
                    os.write(2, ("\n".join(passed_back) + "\n").encode())
        if messages or caught:
            log.debug("decoder messages: %s %s", messages, [str(w.message) for w in caught])


def _open_header(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    """Identify the format and read the header only; Pillow's bomb warning becomes an error."""
    with _quiet_decoders(), _decoding(max_pixels):
        try:
            return Image.open(io.BytesIO(data), formats=list(_ALLOWED_FORMATS))
        except UnidentifiedImageError:
            raise _unidentified(data) from None


def _reset_load_truncated() -> None:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process switched it on; it would let half-files through.
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was True; review.media.decode resets it.")
        ImageFile.LOAD_TRUNCATED_IMAGES = False


# ---------------------------------------------------------------------------------------------
# Does the data hold every pixel the header claims?

# A marker inside JPEG entropy-coded data: 0xFF followed by anything but a stuffed zero, a
# restart marker (D0-D7) or another fill byte.
_JPEG_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Without a restart interval, a restart marker ends the scan's data as well.
_JPEG_ANY_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xff]")
_JPEG_RESTART = re.compile(rb"\xff[\xd0-\xd7]")
_JPEG_HUFFMAN_DCT_FRAMES = {0xC0: False, 0xC1: False, 0xC2: True}  # SOF marker -> progressive
_JPEG_EOI = 0xD9
# Markers that may follow a scan: EOI, SOS, DHT, DQT, DRI, COM, DNL, DAC, APPn.
_JPEG_AFTER_SCAN = frozenset({_JPEG_EOI, 0xDA, 0xC4, 0xDB, 0xDD, 0xFE, 0xDC, 0xCC, *range(0xE0, 0xF0)})
# libjpeg reads up to 8 bytes ahead of the bits it needs (57-bit bit buffer); twice that.
_JPEG_LOOKAHEAD = b"\x00" * 16


class _JpegScan(NamedTuple):
    header: bytes  # the SOS payload
    start: int  # where its compressed data starts
    end: int  # where the marker that ends it starts (len(data) when none does)
    next_marker: int  # that marker's code, -1 when the data runs to the end of the file
    interval: int  # restart interval in force (0: none)
    restarts: int  # restart markers in order D0, D1, ... inside the data; -1 when out of order
    shortest: dict[tuple[int, int], int]  # (0 DC / 1 AC, table id) -> its shortest code, in bits


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _huffman_shortest(payload: bytes) -> dict[tuple[int, int], int]:
    """(class, id) -> length of the shortest code, for each table a DHT segment defines."""
    found, pos = {}, 0
    while pos + 17 <= len(payload):
        counts = payload[pos + 1:pos + 17]
        lengths = [i + 1 for i, c in enumerate(counts) if c]
        if lengths:
            found[(payload[pos] >> 4, payload[pos] & 15)] = lengths[0]
        pos += 17 + sum(counts)
    return found


def _jpeg_segments(data: bytes) -> tuple[int, bytes, list[_JpegScan], bool] | None:
    """(SOF marker, SOF payload, scans, intact).

    ``intact`` is False when the marker that ends a scan is not one a scan can end at, or the
    segments after a scan cannot be followed: the compressed data holds a stray marker (a
    damaged byte), and libjpeg would stop there and fill the rest of the scan with grey. A
    restart marker ends a scan too when no restart interval is defined (libjpeg then stops
    at it just the same). None when the marker structure before the first scan cannot be
    followed; Pillow then has the last word.
    """
    pos, frame = 2, None
    scans: list[_JpegScan] = []
    intact, interval = True, 0
    shortest: dict[tuple[int, int], int] = {}
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:  # garbage between segments: libjpeg skips to the next marker too
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if scans and marker not in _JPEG_AFTER_SCAN:
            intact = False
            break
        if marker == _JPEG_EOI:
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        payload = data[pos + 4:pos + 2 + length]
        if length < 2 or len(payload) != length - 2:
            if not scans:
                return None
            intact = len(payload) == len(data) - pos - 4  # a cut file: Pillow reports it
            break
        pos += 2 + length
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = (marker, payload)
        elif marker == 0xC4:  # DHT: one or more Huffman tables
            shortest.update(_huffman_shortest(payload))
        elif marker == 0xDD and length == 4:  # DRI: restart interval, in MCUs (0: none)
            interval = int.from_bytes(payload, "big")
        elif marker == 0xDA:
            found = (_JPEG_MARKER_IN_SCAN if interval else _JPEG_ANY_MARKER_IN_SCAN).search(data, pos)
            end = found.start() if found else len(data)
            next_marker = data[end + 1] if found else -1
            restarts = [m.group()[1] - 0xD0 for m in _JPEG_RESTART.finditer(data, pos, end)]
            in_order = all(r == i % 8 for i, r in enumerate(restarts))
            count = len(restarts) if in_order else -1
            scans.append(_JpegScan(payload, pos, end, next_marker, interval, count, dict(shortest)))
            pos = end
    if frame is None or not scans:
        return None
    return frame[0], frame[1], scans, intact


def _scan_needs_more(data: bytes, end: int) -> bool:
    """Would libjpeg read past ``end`` (where a scan's data stops at a marker) to finish it?

    The file is cut there and closed three ways: at once, after 16 zero bytes, after 16 bytes
    of 0x55. A scan that holds all its blocks never reads those bytes, so the three decode
    alike; one that is short takes them for data and decodes differently. Decoded at an eighth
    of the size (DC only), which is what the first scan of each coefficient codes.
    """
    pictures = set()
    for junk in (b"", bytes(16), b"\x55" * 16):
        try:
            closed = io.BytesIO(data[:end] + junk + b"\xff\xd9")
            with _quiet_decoders(), Image.open(closed, formats=["JPEG"]) as im:
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
                pictures.add(im.tobytes())
        except Exception:  # noqa: BLE001 - a decoder boundary: no answer, Pillow decides later
            return False
    return len(pictures) > 1


def _check_jpeg(data: bytes) -> tuple[bytes | None, bool]:
    """Refuse a JPEG whose scans cannot hold the picture; return bytes that cannot be padded.

    libjpeg fills the rest of a scan with grey when its data ends early at a marker, so a
    file cut short and closed with an end-of-image marker, or with inflated dimensions in its
    header, decodes "successfully". Four checks: every block costs at least the shortest
    codes of its Huffman tables in the first scan that codes it (a 13.7 kB file cannot hold
    6000 x 6666 pixels), and in a file of several scans that first scan must not need bytes
    past its end (:func:`_scan_needs_more`); restart markers come in order, one per interval;
    a progressive
    file must refine every coefficient to the last bit (a cut file lacks its later scans); and
    a single-scan file is decoded without the marker that ends its data (end-of-image, or a
    stray marker left by a damaged byte), followed by a few zero bytes of look-ahead, so that
    libjpeg, missing data, asks for more (Pillow then reports the file truncated) instead of
    meeting the marker and padding. Returns those bytes (or None to decode ``data`` as it is)
    and whether the marker structure is intact (see :func:`_jpeg_segments`).
    """
    layout = _jpeg_segments(data)
    if layout is None or layout[0] not in _JPEG_HUFFMAN_DCT_FRAMES:
        return None, True  # arithmetic-coded, lossless or unparsable: Pillow decides alone
    marker, frame, scans, intact = layout
    if len(frame) < 6 or len(frame) < 6 + 3 * frame[5]:
        return None, intact
    height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
    sampling = {frame[6 + 3 * i]: (frame[7 + 3 * i] >> 4, frame[7 + 3 * i] & 15) for i in range(frame[5])}
    if not sampling or min(min(hv) for hv in sampling.values()) < 1:
        return None, intact
    h_max = max(h for h, _ in sampling.values())
    v_max = max(v for _, v in sampling.values())
    coded: dict[int, set[int]] = {c: set() for c in sampling}
    lost = False
    for payload, start, end, _next, interval, restarts, shortest in scans:
        if not payload or len(payload) < 1 + 2 * payload[0] + 3:
            return None, intact
        n = payload[0]
        comps = [payload[1 + 2 * i] for i in range(n)]
        ss, se, approx = payload[1 + 2 * n], payload[2 + 2 * n], payload[3 + 2 * n]
        if any(c not in sampling for c in comps):
            return None, intact
        if n == 1:  # a non-interleaved scan: its units are the component's blocks
            h, v = sampling[comps[0]]
            units = (_ceil_div(_ceil_div(width * h, h_max), 8)
                     * _ceil_div(_ceil_div(height * v, v_max), 8))
            blocks = {comps[0]: units}
        else:
            units = _ceil_div(width, 8 * h_max) * _ceil_div(height, 8 * v_max)
            blocks = {c: units * sampling[c][0] * sampling[c][1] for c in comps}
        # One marker after each interval but the last (a trailing one, as some encoders write,
        # is harmless); fewer, or out of order, and libjpeg fills the segments it skipped.
        if interval and restarts - (_ceil_div(units, interval) - 1) not in (0, 1):
            lost = True
        if ss == 0 and approx >> 4 == 0:  # first scan coding these components' DC
            # Every block costs at least the shortest DC code of its table, and in a sequential
            # scan at least one AC code too (the end-of-block code, or a coefficient's).
            tables = {payload[1 + 2 * i]: payload[2 + 2 * i] for i in range(n)}
            needed = sum(count * (shortest.get((0, tables[c] >> 4), 1)
                                  + (shortest.get((1, tables[c] & 15), 1) if se > 0 else 0))
                         for c, count in blocks.items())
            available_bits = 8 * (end - start - data.count(b"\xff\x00", start, end)
                                  - 2 * max(restarts, 0))
            if available_bits < needed or len(scans) > 1 and _scan_needs_more(data, end):
                raise _truncated() if intact else _damaged(0, height)
        if approx & 15 == 0:  # this scan leaves the coefficients ss..se exact
            for c in comps:
                coded[c].update(range(ss, min(se, 63) + 1))
    if _JPEG_HUFFMAN_DCT_FRAMES[marker] and any(len(k) < 64 for k in coded.values()):
        raise _truncated() if intact else _damaged(0, height)
    end, next_marker = scans[0].end, scans[0].next_marker
    if lost:
        return None, False
    if len(scans) == 1 and next_marker != -1:
        return data[:end] + _JPEG_LOOKAHEAD, intact and next_marker == _JPEG_EOI
    return None, intact


def _jpeg_dc_out_of_range(data: bytes, max_pixels: int) -> bool:
    """Does a block's DC coefficient lie outside what 8-bit samples can give?

    A damaged DC difference shifts the level of every later block of its component (DC is coded
    as differences), often until the picture clips to black or white: valid-looking data, no
    filler. Decoded with every quantisation table's DC entry set to 1 and its AC entries to 0,
    at an eighth of the size (a pixel per block; subsampled chroma's 2 x 2 IDCT then sees DC
    only too) and without colour conversion, a sound file's blocks stay within 128 +- 128 / q
    of the real DC quantiser q; a drifted one leaves that range.
    """
    pos, q_dc, entries, frame = 2, {}, [], None
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        body = data[pos + 4:pos + 2 + length]
        if data[pos + 1] == 0xDB:  # DQT: one or more tables, 8- or 16-bit entries
            at = 0
            while at < len(body):
                wide, table = body[at] >> 4, body[at] & 15
                if at + 1 + 64 * (1 + wide) > len(body):
                    return False
                q_dc[table] = int.from_bytes(body[at + 1:at + 2 + wide], "big")
                entries.append((pos + 4 + at + 1, wide))
                at += 1 + 64 * (1 + wide)
        elif data[pos + 1] in _JPEG_HUFFMAN_DCT_FRAMES:
            frame = body
        pos += 2 + length
    if frame is None or len(frame) < 6 + 3 * frame[5] or frame[0] != 8 or not entries:
        return False
    probe = bytearray(data)
    for at, wide in entries:  # DC quantiser 1, AC quantisers 0: the scaled IDCTs see DC only
        probe[at:at + 64 * (1 + wide)] = (1).to_bytes(1 + wide, "big") + bytes(63 * (1 + wide))
    try:
        with _quiet_decoders(), _decoding(max_pixels), Image.open(io.BytesIO(probe), formats=["JPEG"]) as im:
            if (im.mode, im.info.get("adobe_transform")) in (("RGB", 0), ("CMYK", 2)):
                return False  # stored as RGB, or YCCK that libjpeg converts: no raw components
            im.draft({"RGB": "YCbCr"}.get(im.mode, im.mode), (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            blocks = np.asarray(im).reshape(im.size[1], im.size[0], -1)
    except ImageRejected:
        return False
    if blocks.shape[2] != frame[5]:
        return False
    for i in range(frame[5]):
        q = q_dc.get(frame[8 + 3 * i], 0)
        if q >= 2:
            reach = 128 / q + 2  # rounding and upsampled chroma
            if blocks[..., i].min() < 127.5 - reach or blocks[..., i].max() > 127.5 + reach:
                return True
    return False


def _check_tiff_jpeg(im: TiffImagePlugin.TiffImageFile, data: bytes, max_pixels: int) -> None:
    """Run the JPEG checks on each strip or tile of a JPEG-compressed TIFF.

    Each holds a JPEG stream whose tables are in the JPEGTables tag; libtiff decodes it with
    libjpeg, which pads a short or damaged one with grey as it does a JPEG file, and libtiff
    keeps libjpeg's warnings to itself.
    """
    if im.info.get("compression") != "jpeg":
        return
    tags = im.tag_v2
    offsets, counts = tags.get(273) or tags.get(324) or (), tags.get(279) or tags.get(325) or ()
    tables = tags.get(347)
    prefix = b"\xff\xd8"
    if isinstance(tables, bytes) and tables.startswith(b"\xff\xd8") and tables.endswith(b"\xff\xd9"):
        prefix = tables[:-2]
    for offset, count in zip(offsets, counts, strict=False):
        chunk = data[offset:offset + count]
        if not chunk.startswith(b"\xff\xd8"):
            continue  # libtiff refuses it itself
        stream = prefix + chunk[2:]
        unpaddable, intact = _check_jpeg(stream)
        if unpaddable is None and intact:
            continue
        if unpaddable is not None:
            try:
                with _quiet_decoders(), _decoding(max_pixels):
                    with Image.open(io.BytesIO(unpaddable), formats=["JPEG"]) as part:
                        part.load()
                continue
            except ImageRejected:
                pass
        raise _damaged(0, im.size[1])


def _check_tiff_tiles(im: TiffImagePlugin.TiffImageFile) -> None:
    """Refuse a TIFF whose strips or tiles do not cover the image.

    Uncompressed TIFFs are decoded strip by strip; rows no strip covers (a header edited to
    claim more rows, or fewer strip offsets than rows need) are left black without an error.
    """
    width, height = im.size
    covered = 0
    for tile in im.tile:
        if tile.extents is None:  # a tile without a box covers nothing
            continue
        x0, y0, x1, y1 = tile.extents
        covered += max(0, min(x1, width) - max(x0, 0)) * max(0, min(y1, height) - max(y0, 0))
    if covered < width * height:
        raise _truncated()


def _png_raw_size(width: int, height: int, depth: int, colour: int, interlaced: bool) -> int | None:
    """Bytes of filtered scanlines the IDAT stream must inflate to (PNG spec, section 7-8)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None:
        return None

    def rows(w: int, h: int) -> int:
        return h * (1 + _ceil_div(w * channels * depth, 8)) if w and h else 0

    if not interlaced:
        return rows(width, height)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2))
    return sum(rows(_ceil_div(width - x0, dx), _ceil_div(height - y0, dy)) for x0, y0, dx, dy in passes)


def _check_png(data: bytes) -> None:
    """Refuse a PNG whose zlib stream ends before the last row.

    Pillow's PNG decoder stops without complaint when the compressed stream is complete but
    short (a header edited to claim more rows, or a cut file with a proper stream end), and
    leaves the missing rows black.
    """
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR" and len(body) == 13:
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif idat:
            break
        pos += 12 + length
    if header is None or not idat:
        return
    expected = _png_raw_size(int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big"),
                             header[8], header[9], header[12] == 1)
    if expected is None:
        return
    inflater = zlib.decompressobj()
    try:
        produced = len(inflater.decompress(b"".join(idat), 1 << 20))
        while inflater.unconsumed_tail and produced < expected:
            produced += len(inflater.decompress(inflater.unconsumed_tail, 1 << 20))
    except zlib.error as exc:
        raise _corrupt(f"PNG data: {exc}") from None
    if produced < expected:
        raise _truncated()


def _scale_16_to_8(arr: np.ndarray) -> np.ndarray:
    """Map 0..65535 onto 0..255 with rounding (65535 -> 255, 32768 -> 128), not clipping."""
    wide = np.clip(arr.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _to_8bit_base_mode(im: Image.Image) -> Image.Image:
    """Reduce any Pillow mode to one of L, LA, RGB, RGBA, CMYK (8 bits per sample)."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return im
    if mode.startswith("I;16") or mode == "I":
        # 16-bit greyscale (PNG/TIFF). Mode "I" holds 16-bit data widened to 32 bits.
        return Image.fromarray(_scale_16_to_8(np.asarray(im)))
    if mode == "F":
        raise ImageRejected(
            "unsupported_format",
            "32-bit floating-point images are not supported. Export the picture as an 8- or "
            "16-bit JPEG, PNG or TIFF and try again.",
        )
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("La",):
        return im.convert("LA")
    if mode in ("RGBa", "RGBX", "YCbCr"):
        return im.convert("RGBA" if mode == "RGBa" else "RGB")
    try:
        return im.convert("RGB")
    except ValueError:
        raise ImageRejected(
            "unsupported_format",
            f"Images with colour mode {mode} are not supported. Export the picture as an "
            "ordinary RGB JPEG or PNG and try again.",
        ) from None


def _icc_to_srgb(im: Image.Image) -> Image.Image:
    """Convert from an embedded ICC profile to sRGB; result mode is RGB or RGBA.

    A profile that is missing, unreadable, already sRGB, or does not match the pixel layout
    is ignored (untagged pixels are taken as sRGB, as browsers do).
    """
    icc = im.info.get("icc_profile")
    alpha = im.getchannel("A") if im.mode in ("LA", "RGBA") else None
    base_mode = {"LA": "L", "RGBA": "RGB"}.get(im.mode, im.mode)
    expected_space = {"L": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}[base_mode]
    converted = None
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            space = (profile.profile.xcolor_space or "").strip()
            description = (profile.profile.profile_description or "").lower()
            is_srgb = space == "RGB" and "srgb" in description
            if space == expected_space and not is_srgb:
                base = im.convert(base_mode) if alpha is not None else im
                converted = ImageCms.profileToProfile(
                    base, profile, _SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL,
                    outputMode="RGB",
                )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            log.info("ignoring unusable ICC profile: %s", exc)
            converted = None
    if converted is None:
        converted = (im.convert(base_mode) if alpha is not None else im).convert("RGB")
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def _flatten_onto_white(im: Image.Image) -> Image.Image:
    """Composite transparency onto white: what a viewer shows, and what raters should see."""
    if im.mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB")


def _normalise(im: Image.Image) -> Image.Image:
    """Any loaded Pillow image -> fresh 8-bit sRGB RGB image with no metadata attached."""
    rgb = _flatten_onto_white(_icc_to_srgb(_to_8bit_base_mode(im)))
    # A fresh image carries no info dict (ICC, EXIF, XMP): encodings are then deterministic.
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


# ---------------------------------------------------------------------------------------------
# Damage the decoders hide: parts of the picture filled with one colour

# libtiff modules whose complaints are about metadata (tags, the directory chain), not pixels.
_LIBTIFF_METADATA = frozenset({
    "TIFFFetchNormalTag", "TIFFReadDirectory", "TIFFFetchDirectory", "TIFFReadCustomDirectory",
    "TIFFReadDirectoryCheckOrder", "TIFFAdvanceDirectory", "TIFFReadGPSDirectory",
    "TIFFReadEXIFDirectory", "TIFFFetchSubjectDistance",
})
# Blocks this size, all one colour, libheif left at YUV zero: see _heic_missing_share.
_HEIC_BLOCK = 16
# G of YCbCr (0, 0, 0) in RGB for BT.601, BT.709 and BT.2020, limited and full range, +-1.
_YUV_ZERO_GREENS = np.array(sorted({g + d for g in (136, 135, 77, 84, 89, 94) for d in (-1, 0, 1)}))


def _damaged(missing_rows: int, height: int, what: str = "") -> ImageRejected:
    """The refusal, saying how much is missing where that is known."""
    share = missing_rows / height if height else 0.0
    if share > 0:
        where = (f"the bottom {max(1, round(100 * share))} % of the picture is missing (a viewer "
                 "would show it as one flat colour)")
    else:
        where = what or "part of its picture data is unreadable (a viewer would show it wrong)"
    return ImageRejected(
        "corrupt",
        f"The image file is damaged: {where}. "
        "Open it on your device, export or save it again, and upload the new file.",
    )


def _bottom_fill_rows(pixels: np.ndarray) -> int:
    """Rows at the bottom that are all one colour, the colour of the last row."""
    rows = pixels.reshape(pixels.shape[0], -1, pixels.shape[2] if pixels.ndim == 3 else 1)
    last = rows[-1]
    if not (last == last[0]).all():
        return 0
    same = np.all(rows == last[0], axis=(1, 2))
    differs = np.flatnonzero(~same)
    return len(same) - (int(differs[-1]) + 1 if len(differs) else 0)


def _jpeg_fill_rows(data: bytes, max_pixels: int) -> int:
    """How many bottom rows libjpeg fills when it decodes a damaged file as it is (0: unknown)."""
    try:
        with _quiet_decoders(), _decoding(max_pixels), Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
            im.load()
            return _bottom_fill_rows(np.asarray(im))
    except ImageRejected:
        return 0


def _heic_missing_share(pixels: np.ndarray) -> float:
    """Share of the picture in blocks libheif could not decode and left at YUV zero.

    libheif leaves a grid tile or slice it cannot decode at Y = Cb = Cr = 0, which every
    YCbCr matrix turns into one dark pure green (R = B = 0; G is 136 for BT.601 limited
    range, 135 full range, 77 / 84 for BT.709, 89 / 94 for BT.2020). A photo never holds a
    16 x 16 block of exactly one of these colours; the check runs on the decoded pixels,
    before any ICC conversion.
    """
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return 0.0
    n = _HEIC_BLOCK
    h, w = pixels.shape[0] // n * n, pixels.shape[1] // n * n
    rgb = pixels[:h, :w, :3]
    green = (rgb[..., 0] <= 1) & (rgb[..., 2] <= 1) & np.isin(rgb[..., 1], _YUV_ZERO_GREENS)
    full = green.reshape(h // n, n, w // n, n).all(axis=(1, 3))
    missing = 0
    for by, bx in zip(*np.nonzero(full), strict=True):
        block = rgb[by * n:(by + 1) * n, bx * n:(bx + 1) * n].reshape(-1, 3)
        missing += bool((block == block[0]).all())
    return missing * n * n / (pixels.shape[0] * pixels.shape[1])


def _g4_data_unused(pixels: TiffImagePlugin.TiffImageFile) -> bool:
    """Did libtiff stop decoding a Group 4 (fax) TIFF before the end of its data?

    A damaged G4 strip (a run of zero bytes reads as the end-of-data code) makes libtiff stop
    without a word and leave the strip's remaining rows one colour. G4 coding is fixed by the
    standard (T.6): the same pixels in the same strips code to the same bits, give or take
    padding. So a file whose strips hold clearly more data than the decoded pixels re-encode to
    carried data the decoder never used.
    """
    if pixels.info.get("compression") != "group4" or pixels.mode != "1":
        return False
    stored = sum(pixels.tag_v2.get(279) or pixels.tag_v2.get(325) or ())
    rows_per_strip = pixels.tag_v2.get(278)
    if not isinstance(rows_per_strip, int) or pixels.tag_v2.get(325) is not None:
        return False  # tiled, or strips we cannot reproduce: no comparison
    out = io.BytesIO()
    pixels.save(out, format="TIFF", compression="group4", tiffinfo={278: min(rows_per_strip, pixels.size[1])})
    out.seek(0)
    with TiffImagePlugin.TiffImageFile(out) as again:
        needed = sum(again.tag_v2.get(279) or ())
    return stored > needed * 1.05 + 64


def _check_filler(pixels: ImageFile.ImageFile, complaints: list[str]) -> None:
    """Refuse a decoded image the decoder completed with filler (see the module docstring)."""
    height = pixels.size[1]
    if isinstance(pixels, TiffImagePlugin.TiffImageFile):  # format TIFF
        damage = [m for m in complaints if m.split(":", 1)[0] not in _LIBTIFF_METADATA]
        if damage:
            log.info("refusing a damaged TIFF; libtiff said: %s", damage[:3])
            raise _damaged(_bottom_fill_rows(np.asarray(pixels)), height)
        if _g4_data_unused(pixels):
            raise _damaged(_bottom_fill_rows(np.asarray(pixels)), height)
    elif pixels.format == "HEIF" and pixels.mode in ("RGB", "RGBA"):
        share = _heic_missing_share(np.asarray(pixels))
        if share > 0:
            raise _damaged(0, height, f"{max(1, round(100 * share))} % of the picture (whole tiles "
                                      "or slices) is missing (a viewer would show flat green blocks)")


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode untrusted image bytes into an 8-bit sRGB RGB image, or raise ImageRejected.

    Rejection codes: ``empty``, ``too_large_bytes``, ``too_many_pixels``,
    ``too_small``, ``unsupported_format``, ``truncated``, ``animated``, ``corrupt`` (and, from
    :func:`decode_file`, ``not_a_file``).
    """
    if not data:
        raise ImageRejected(
            "empty", "The file is empty (0 bytes). Please choose the photo file again."
        )
    if len(data) > max_bytes:
        raise _reject_bytes(len(data), max_bytes)

    im = _open_header(data, max_pixels)
    pixels: ImageFile.ImageFile | None = None
    try:
        with _quiet_decoders(), _decoding(max_pixels):
            width, height = im.size
            frames = getattr(im, "n_frames", 1)  # TIFF walks its frame chain here
        if width * height > max_pixels:
            raise _reject_pixels((width, height), max_pixels)
        if min(width, height) < MIN_SIDE:
            raise _too_small((width, height))
        if frames > 1 and im.format not in _SINGLE_IMAGE_BY_DESIGN:
            kind = _FRIENDLY_NAMES.get(im.format or "", im.format)
            raise ImageRejected(
                "animated",
                f"This {kind} file contains {frames} frames (an animation or a multi-page "
                "file). Please upload a single still photo, for example one frame exported "
                "as JPEG or PNG.",
            )
        unpaddable, intact = None, True
        if im.format in ("JPEG", "MPO"):
            unpaddable, intact = _check_jpeg(data)
        elif im.format == "PNG":
            _check_png(data)
        elif isinstance(im, TiffImagePlugin.TiffImageFile):  # format TIFF (the only TIFF allowed)
            _check_tiff_tiles(im)
            _check_tiff_jpeg(im, data, max_pixels)
        _reset_load_truncated()
        if not intact and unpaddable is None:  # a stray marker in a multi-scan JPEG
            raise _damaged(_jpeg_fill_rows(data, max_pixels), height)
        with _quiet_decoders() as complaints:
            try:
                with _decoding(max_pixels):
                    pixels = Image.open(io.BytesIO(unpaddable), formats=["JPEG"]) if unpaddable else im
                    pixels.load()
                    oriented = ImageOps.exif_transpose(pixels)
            except ImageRejected as err:
                if intact or err.code != "truncated":
                    raise
                stray_marker = True  # the data stops at a damaged byte, not at the file's end
            else:
                stray_marker = False
        if stray_marker:  # what libjpeg shows: the data up to the marker, then grey
            closed = unpaddable[:-len(_JPEG_LOOKAHEAD)] + b"\xff\xd9" if unpaddable else data
            raise _damaged(_jpeg_fill_rows(closed, max_pixels), height)
        assert pixels is not None
        _check_filler(pixels, complaints)
        if im.format in ("JPEG", "MPO") and _jpeg_dc_out_of_range(data, max_pixels):
            raise _damaged(_bottom_fill_rows(np.asarray(pixels)), height)
        return _normalise(oriented if oriented is not None else pixels)
    finally:
        if pixels is not None and pixels is not im:
            pixels.close()
        im.close()


def decode_file(path: Path, **kw: Any) -> Image.Image:
    """Decode an image file with :func:`decode_image`; checks the kind of file (a FIFO would
    block the read forever) and the size before reading it."""
    problem = regular_file_problem(path)
    if problem is not None:
        raise ImageRejected("not_a_file", f"{problem}. Give the path of the image file itself.")
    max_bytes = kw.get("max_bytes", DEFAULT_MAX_BYTES)
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise _reject_bytes(size, max_bytes)
    return decode_image(Path(path).read_bytes(), **kw)


# ---------------------------------------------------------------------------------------------
# Encoding and array helpers


def as_rgb(img: Image.Image) -> Image.Image:
    """Any decoded image as 8-bit sRGB RGB (alpha composited onto white)."""
    if img.mode == "RGB":
        return img
    img.load()
    return _flatten_onto_white(_icc_to_srgb(_to_8bit_base_mode(img)))


def encode_display_jpeg(img: Image.Image, max_side: int, quality: int = 85) -> bytes:
    """Pre-sized JPEG bytes for the UI (st.image re-encodes PIL inputs on every rerun).

    Keeps the aspect ratio, never upscales. Chroma is not subsampled (4:4:4): raters judge fine
    detail such as lips, eyes and text, which 4:2:0 smears.
    """
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    rgb = as_rgb(img)
    width, height = rgb.size
    scale = max_side / max(width, height)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality, subsampling=0, optimize=False)
    return out.getvalue()


def to_array(img: Image.Image) -> np.ndarray:
    """Image -> float64 array in [0, 1]: (H, W, 3) for colour, (H, W) for mode L."""
    if img.mode != "L":
        img = as_rgb(img)
    return np.asarray(img, dtype=np.float64) / 255.0


def from_array(arr: np.ndarray) -> Image.Image:
    """Float array in [0, 1] ((H, W) or (H, W, 3)) -> 8-bit image; clips, then rounds."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"expected an (H, W) or (H, W, 3) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("array contains NaN or infinite values")
    u8 = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(u8)  # uint8 (H, W) -> L, (H, W, 3) -> RGB

