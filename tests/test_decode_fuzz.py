"""Fuzzing the image decoder and the upload path with hypothesis (seeded, bounded in time).

The corpus is real JPEG (baseline and progressive), PNG, WebP (lossy and lossless), TIFF
(raw and deflate), GIF and HEIC files encoded here from scikit-image's sample pictures. Each
example mutates one of them (bit flips, byte and integer overwrites in the header, truncation,
splices from another file, deleted or repeated ranges). The property: every input is either
accepted as an 8-bit RGB image within the caps or refused with ImageRejected, nothing else
escapes, and a refused upload stores nothing.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pillow_heif  # noqa: F401 - registers the HEIF writer used for the corpus
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data as samples
from sqlalchemy import func, select

from db.models import DegradedImage, SourceImage
from review.database import Lab
from review.media import catalog
from review.media.decode import MIN_SIDE, ImageRejected, decode_image

# Pillow warns (UserWarning) about the damaged metadata it skips; the property is about errors.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

MAX_PIXELS = 1_000_000  # small caps keep a mutated header from costing seconds per example
MAX_BYTES = 2_000_000
SIGNATURE = 12
FUZZ = settings(derandomize=True, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _corpus() -> list[bytes]:
    photo = Image.fromarray(samples.astronaut()).resize((48, 40))
    cat = Image.fromarray(samples.chelsea()).resize((40, 32))
    grey = Image.fromarray(samples.camera()).resize((32, 32))
    return [
        _encode(photo, "JPEG", quality=85),
        _encode(cat, "JPEG", quality=70, progressive=True),
        _encode(grey, "JPEG", quality=90),
        _encode(photo, "PNG"),
        _encode(grey, "PNG", optimize=True),
        _encode(cat, "WEBP", quality=80),
        _encode(grey, "WEBP", lossless=True),
        _encode(photo, "TIFF"),
        _encode(cat, "TIFF", compression="tiff_deflate"),
        _encode(photo, "GIF"),
        _encode(cat, "HEIF", quality=60),
    ]


CORPUS = _corpus()


def _header_fields(data: bytes) -> list[tuple[int, str]]:
    """(offset, struct format) of the fields that say how large the picture is and where its
    data lies: TIFF IFD values and next-IFD pointer, JPEG SOF size, PNG IHDR size, HEIC ispe
    size, WebP VP8 size."""
    fields: list[tuple[int, str]] = []
    if data[:4] == b"II*\x00":
        ifd = struct.unpack_from("<I", data, 4)[0]
        if ifd + 2 <= len(data):
            count = struct.unpack_from("<H", data, ifd)[0]
            fields += [(ifd + 2 + 12 * i + 8, "<I") for i in range(count)]
            fields.append((ifd + 2 + 12 * count, "<I"))
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        if (at := data.find(marker)) > 0:
            fields += [(at + 5, ">H"), (at + 7, ">H")]
    if data.startswith(b"\x89PNG"):
        fields += [(16, ">I"), (20, ">I")]
    if (at := data.find(b"ispe")) > 0:
        fields += [(at + 8, ">I"), (at + 12, ">I")]
    if (at := data.find(b"VP8 ")) > 0:
        fields += [(at + 14, "<H"), (at + 16, "<H")]
    return [(o, f) for o, f in fields if o + struct.calcsize(f) <= len(data)]


def _fix_png_header_crc(data: bytearray) -> None:
    if data.startswith(b"\x89PNG") and len(data) >= 33 and data[12:16] == b"IHDR":
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus file with one to four mutations, biased towards the header.

    The first 12 bytes (the signatures) are left alone but by truncation and splices: a file
    that no longer says what it is only exercises the "unsupported format" refusal.
    """
    data = bytearray(CORPUS[draw(st.integers(0, len(CORPUS) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        if n < SIGNATURE + 2:
            break
        head = min(n - 1, 256)
        where = draw(st.one_of(st.integers(SIGNATURE, head), st.integers(SIGNATURE, n - 1)))
        kind = draw(st.sampled_from(
            ["field", "field", "flip", "byte", "int16", "int32", "truncate", "splice", "delete", "repeat"]))
        fields = _header_fields(bytes(data))
        if kind == "field" and fields:
            offset, fmt = draw(st.sampled_from(fields))
            value = draw(st.one_of(st.sampled_from([0, 1, 6, 7, 8, 6666, 100_000, 2**31 - 1, 2**32 - 1]),
                                   st.integers(0, n)))
            size = struct.calcsize(fmt)
            data[offset:offset + size] = struct.pack(fmt, value % (1 << (8 * size)))
            _fix_png_header_crc(data)
        elif kind == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[where] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0xD9, 0xDA]))
        elif kind in ("int16", "int32"):
            size = 2 if kind == "int16" else 4
            value = draw(st.one_of(  # sizes, counts, or an offset into the file (TIFF IFD chains)
                st.sampled_from([0, 1, 7, 255, 256, 4096, 6666, 65535, 2**31 - 1, 2**32 - 1]),
                st.integers(0, n)))
            order = draw(st.sampled_from("<>"))
            packed = struct.pack(order + ("H" if size == 2 else "I"), value % (1 << (8 * size)))
            data[where:where + size] = packed
        elif kind == "truncate":
            del data[max(1, where):]
        elif kind == "splice":
            other = CORPUS[draw(st.integers(0, len(CORPUS) - 1))]
            start = draw(st.integers(0, len(other) - 1))
            data[where:where + draw(st.integers(0, 64))] = other[start:start + draw(st.integers(1, 256))]
        elif kind == "delete":
            del data[where:where + draw(st.integers(1, 64))]
        else:
            data[where:where] = data[where:where + draw(st.integers(1, 64))]
    return bytes(data)


def _accepted_or_refused(decode: Callable[[], Image.Image]) -> Image.Image | None:
    """The property: an 8-bit RGB image within the caps, or ImageRejected; nothing else."""
    try:
        img = decode()
    except ImageRejected as err:
        assert err.code and str(err)
        return None
    assert img.mode == "RGB"
    assert np.asarray(img).dtype == np.uint8
    assert MIN_SIDE <= min(img.size) and img.width * img.height <= MAX_PIXELS
    return img


def test_corpus_is_accepted() -> None:
    """The unmutated corpus decodes (GIF is refused by design), so mutations start from real files."""
    for data in CORPUS:
        if data.startswith(b"GIF"):
            with pytest.raises(ImageRejected):
                decode_image(data)
        else:
            assert decode_image(data).mode == "RGB"


@pytest.mark.slow
@settings(FUZZ, max_examples=1500)
@given(data=mutated())
def test_fuzzed_bytes_are_accepted_or_refused(data: bytes) -> None:
    _accepted_or_refused(lambda: decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS))


def _stored(lab: Lab) -> tuple[int, int, list[Path]]:
    with lab.sessions() as s:
        sources = s.scalar(select(func.count()).select_from(SourceImage))
        degraded = s.scalar(select(func.count()).select_from(DegradedImage))
    files = [p for p in lab.store.root.rglob("*") if p.is_file()]
    return sources, degraded, files


@pytest.mark.slow
@settings(FUZZ, max_examples=300)
@given(data=mutated(), already_blurred=st.booleans())
def test_fuzzed_uploads_store_nothing_when_refused(lab: Lab, data: bytes, already_blurred: bool) -> None:
    """What the upload tab does (review/ui/generate_page.py): decode, then add to the catalog."""
    before = _stored(lab)

    def upload() -> Image.Image:
        img = decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
        add = catalog.add_blurred_photo if already_blurred else catalog.add_source
        with lab.sessions() as s, s.begin():
            add(s, lab.store, img, title="fuzz.jpg", origin="upload", licence="", content="face")
        return img

    if _accepted_or_refused(upload) is None:
        assert _stored(lab) == before, "a refused upload must store nothing"
