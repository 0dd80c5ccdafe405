"""Tests for review.media.decode and review.media.store: safe decoding of hostile/tricky files
and the content-addressed store.

Every test file is generated here (Pillow, pillow-heif, zlib/struct); nothing is downloaded.
Rejection tests go through ``ingest`` (decode, then store) and check both the rejection code and
that the store folder is still empty.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageCms, ImageFile

from review.errors import ReviewError
from review.media import store as store_module
from review.media.decode import (
    MIN_SIDE,
    ImageRejected,
    decode_file,
    decode_image,
    encode_display_jpeg,
    from_array,
    to_array,
)
from review.media.store import ImageStore, StoredFile, load_rgb

# ---------------------------------------------------------------------------------------------
# Helpers and fixtures


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise_rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def gradient_rgb(w: int = 64, h: int = 64) -> Image.Image:
    """Smooth content, so lossy codecs (HEIC, JPEG) reproduce it closely."""
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1)
    return Image.fromarray(arr.astype(np.uint8))


def tiled(arr: np.ndarray) -> np.ndarray:
    """Repeat a small test pattern until it meets MIN_SIDE; row 0 starts with the pattern."""
    h, w = arr.shape[:2]
    return np.tile(arr, (-(-MIN_SIDE // h), -(-MIN_SIDE // w)) + (1,) * (arr.ndim - 2))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def build_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG assembled by hand (PNG spec: signature, IHDR, IDAT, IEND)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def zero_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG of the given size (all black): a real decompression bomb."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    return build_png(width, height, 1, 0, b"".join(parts))


def s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def build_matrix_trc_profile(
    description: str,
    red: tuple[float, float, float],
    green: tuple[float, float, float],
    blue: tuple[float, float, float],
    white: tuple[float, float, float],
    gamma: float,
) -> bytes:
    """An ICC v2 RGB display profile (matrix/TRC), built per ICC.1:2001-04 byte layout.

    Pillow's ImageCms can only create sRGB, LAB and XYZ profiles, so a non-sRGB RGB profile is
    written by hand: header, tag table, desc/wtpt/rXYZ/gXYZ/bXYZ/rTRC/gTRC/bTRC/cprt tags.
    """

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ " + b"\0" * 4 + b"".join(s15f16(c) for c in v)

    ascii_desc = description.encode("ascii") + b"\0"
    desc = (
        b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_desc)) + ascii_desc
        + b"\0" * 8  # Unicode language code + count (none)
        + b"\0" * 3 + b"\0" * 67  # ScriptCode code, count, 67 reserved bytes
    )
    curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    cprt = b"text" + b"\0" * 4 + b"No copyright, test profile\0"
    tags = [
        (b"desc", desc), (b"wtpt", xyz(white)), (b"rXYZ", xyz(red)), (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)), (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv),
        (b"cprt", cprt),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, payload in tags:
        payload += b"\0" * (-len(payload) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(payload))
        data += payload
    body = struct.pack(">I", len(tags)) + table + data
    size = 128 + len(body)
    header = (
        struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntr" + b"RGB " + b"XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 4 + b"\0" * 4
        + b"\0" * 8 + b"\0" * 8 + struct.pack(">I", 0)
        + s15f16(0.9642) + s15f16(1.0) + s15f16(0.8249)  # PCS illuminant D50
        + b"\0" * 4 + b"\0" * 16 + b"\0" * 28
    )
    assert len(header) == 128
    return header + body


# Adobe RGB (1998) colorants, chromatically adapted to D50, as in Adobe's own ICC profile.
ADOBE_RGB_ICC = build_matrix_trc_profile(
    "Adobe RGB (1998) test copy",
    red=(0.60974, 0.31111, 0.01947),
    green=(0.20528, 0.62567, 0.06087),
    blue=(0.14919, 0.06322, 0.74457),
    white=(0.95045, 1.0, 1.08905),
    gamma=563 / 256,
)


def adobe_to_srgb_reference(rgb8: np.ndarray) -> np.ndarray:
    """Independent reference: Adobe RGB (1998) spec 4.3.4 and IEC 61966-2-1 (sRGB) formulas."""
    lin = (rgb8 / 255.0) ** (563 / 256)
    adobe_to_xyz = np.array(
        [[0.57667, 0.18556, 0.18823], [0.29734, 0.62736, 0.07529], [0.02703, 0.07069, 0.99134]]
    )
    xyz_to_srgb = np.array(
        [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
    )
    s = lin @ adobe_to_xyz.T @ xyz_to_srgb.T
    assert s.min() >= 0 and s.max() <= 1, "test colours must lie inside the sRGB gamut"
    enc = np.where(s <= 0.0031308, 12.92 * s, 1.055 * s ** (1 / 2.4) - 0.055)
    return enc * 255.0


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data" / "images")


def stored_files(store: ImageStore) -> list[Path]:
    """The store's content files (not the display-JPEG cache under display/)."""
    return sorted(p for p in store.root.rglob("*")
                  if p.is_file() and p.relative_to(store.root).parts[0] != "display")


def ingest(store: ImageStore, data: bytes, **kw) -> StoredFile:
    """What the upload path does: decode first, store only after decoding succeeded."""
    return store.put_image(decode_image(data, **kw))


def assert_rejected(store: ImageStore, data: bytes, code: str, **kw) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        ingest(store, data, **kw)
    err = info.value
    assert err.code == code, str(err)
    assert isinstance(err, ReviewError)  # what the upload page and the CLI show as a message
    assert len(str(err)) > 40 and str(err).endswith("."), "message should tell the user what to do"
    assert stored_files(store) == [], "nothing may be stored after a rejection"
    return err


# ---------------------------------------------------------------------------------------------
# Rejections


def test_zero_bytes(store: ImageStore) -> None:
    assert_rejected(store, b"", "empty")


def test_oversized_bytes_message(store: ImageStore) -> None:
    err = assert_rejected(store, bytes(52_300_000), "too_large_bytes")
    assert str(err) == (
        "The file is 52.3 MB; the limit is 40 MB. Export a smaller JPEG and try again."
    )


def test_rejection_survives_pickle() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(ImageRejected("animated", "Two frames. Upload one.")))
    assert (err.code, str(err)) == ("animated", "Two frames. Upload one.")


def test_oversized_bytes_custom_cap_valid_image(store: ImageStore) -> None:
    data = encode(noise_rgb(), "PNG")
    assert len(data) > 5_000
    err = assert_rejected(store, data, "too_large_bytes", max_bytes=5_000)
    assert "the limit is 5 kB" in str(err)


def test_decode_file_checks_size_from_stat(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(encode(noise_rgb(), "JPEG"))
    with pytest.raises(ImageRejected) as info:
        decode_file(path, max_bytes=100)
    assert info.value.code == "too_large_bytes"


def test_truncated_jpeg(store: ImageStore) -> None:
    data = encode(noise_rgb(128, 96), "JPEG", quality=90)
    for cut in (len(data) // 3, len(data) // 2, len(data) - 200, len(data) - 2):
        assert_rejected(store, data[:cut], "truncated")


def test_truncated_png(store: ImageStore) -> None:
    data = encode(noise_rgb(128, 96), "PNG")
    assert_rejected(store, data[: len(data) // 2], "truncated")


def test_truncated_even_if_someone_enabled_load_truncated(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(noise_rgb(128, 96), "JPEG")
    assert_rejected(store, data[: len(data) // 2], "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_png_header_cut_short_is_corrupt(store: ImageStore) -> None:
    err = assert_rejected(store, encode(noise_rgb(), "PNG")[:30], "corrupt")
    assert "PNG" in str(err)


def test_damaged_png_data_is_corrupt(store: ImageStore) -> None:
    data = bytearray(encode(noise_rgb(), "PNG"))
    data[200] ^= 0xFF  # inside the IDAT zlib stream
    assert_rejected(store, bytes(data), "corrupt")


def set_tiff_next_ifd(data: bytes, target: int) -> bytes:
    """Point the first IFD's next-IFD pointer (the frame chain) at ``target``."""
    out = bytearray(data)
    ifd = struct.unpack_from("<I", out, 4)[0]
    count = struct.unpack_from("<H", out, ifd)[0]
    struct.pack_into("<I", out, ifd + 2 + 12 * count, target)
    return bytes(out)


@pytest.mark.parametrize("target", [10, 16, 100, -4])
def test_tiff_with_damaged_frame_chain_is_corrupt(store: ImageStore, target: int) -> None:
    # Regression: Pillow raised "TypeError: Missing dimensions" while counting the frames.
    data = encode(noise_rgb(), "TIFF")
    assert_rejected(store, set_tiff_next_ifd(data, target % len(data)), "corrupt")


def test_tiff_frame_chain_looping_to_itself_is_one_frame() -> None:
    data = encode(noise_rgb(), "TIFF")
    assert decode_image(set_tiff_next_ifd(data, 8)).size == (64, 48)


def test_heic_with_impossible_size_is_corrupt(store: ImageStore) -> None:
    # Regression: libheif's "Security limit exceeded" escaped as RuntimeError. 64 x 48 is coded
    # as 64 x 64 with a clean-aperture crop, so the header size Pillow reports stays 64 x 48
    # (within the caps) while the coded height (the ispe box) claims two billion rows.
    data = bytearray(encode(gradient_rgb(64, 48), "HEIF"))
    assert b"clap" in data
    at = data.find(b"ispe")
    struct.pack_into(">I", data, at + 12, 0x7C000040)  # image spatial extent: height
    assert_rejected(store, bytes(data), "corrupt")


@pytest.mark.parametrize(
    ("progressive", "fraction"), [(False, 0.3), (False, 0.6), (False, 0.95), (True, 0.3), (True, 0.6)])
def test_jpeg_closed_early_is_truncated(store: ImageStore, progressive: bool, fraction: float) -> None:
    # A cut file closed with an end-of-image marker: libjpeg would fill the rest with grey.
    # (A progressive file cut inside its last refinement scan has every pixel, at the previous
    # scan's precision, and is accepted: nothing says how many refinement bits it should hold.)
    data = encode(noise_rgb(128, 96), "JPEG", quality=90, progressive=progressive)
    assert_rejected(store, data[: int(len(data) * fraction)] + b"\xff\xd9", "truncated")


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_header_claiming_more_pixels_is_truncated(store: ImageStore, progressive: bool) -> None:
    # Regression: a 13.7 kB JPEG was accepted as 6000 x 6666, almost all of it grey.
    data = bytearray(encode(gradient_rgb(200, 150), "JPEG", quality=90, progressive=progressive))
    at = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, 6666, 6000)
    assert_rejected(store, bytes(data), "truncated")


@pytest.mark.parametrize("factor", [1.5, 3])
def test_progressive_jpeg_a_little_wider_than_its_scans_is_truncated(
    store: ImageStore, factor: float,
) -> None:
    """Regression: 1.5 to 3 times the width passed the bits-per-block bound, and libjpeg
    padded the second half of the picture with grey (85 of 150 rows at 3 times)."""
    data = bytearray(encode(gradient_rgb(200, 150), "JPEG", quality=90, progressive=True, optimize=True))
    struct.pack_into(">H", data, data.find(b"\xff\xc2") + 7, int(200 * factor))
    assert_rejected(store, bytes(data), "truncated")


@pytest.mark.parametrize(
    "kw", [{}, {"progressive": True}, {"optimize": True}, {"subsampling": 0, "quality": 95},
           {"restart_marker_blocks": 4}],
)
def test_complete_jpegs_decode_as_pillow_does(kw: dict) -> None:
    """The checks against padding change no pixel of a complete file."""
    for img in (noise_rgb(131, 77), gradient_rgb(64, 40), gradient_rgb(64, 40).convert("L")):
        data = encode(img, "JPEG", **kw)
        with Image.open(io.BytesIO(data)) as direct:
            expected = np.asarray(direct.convert("RGB"))
        assert np.array_equal(np.asarray(decode_image(data)), expected)


def test_png_stream_ending_before_the_last_row_is_truncated(store: ImageStore) -> None:
    # Regression: a 59 kB PNG was accepted as 200 x 100,000 pixels, 99.8 % black.
    rows = np.asarray(noise_rgb(200, 100))
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    assert decode_image(build_png(200, 100, 8, 2, zlib.compress(raw))).size == (200, 100)
    assert_rejected(store, build_png(200, 100_000, 8, 2, zlib.compress(raw)), "truncated")
    interlaced = bytearray(encode(noise_rgb(40, 30), "PNG"))
    interlaced[28] = 1  # IHDR interlace method: Adam7 needs more bytes than the stream holds
    interlaced[29:33] = struct.pack(">I", zlib.crc32(bytes(interlaced[12:29])))
    assert_rejected(store, bytes(interlaced), "truncated")


def test_uncompressed_tiff_with_rows_no_strip_covers_is_truncated(store: ImageStore) -> None:
    data = bytearray(encode(noise_rgb(64, 48), "TIFF"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 257:  # ImageLength
            kind = struct.unpack_from("<H", data, entry + 2)[0]
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, 480)
    assert_rejected(store, bytes(data), "truncated")


# Damage a decoder completes with one colour (issue 21): libtiff stops a G4 strip at a run of
# zero bytes without a word, libjpeg stops at a stray marker and fills grey, libheif leaves a
# tile it cannot decode at YUV zero. Each is refused, and nothing the decoders print reaches
# stderr.


def g4_tiff(rows_per_strip: int | None = None) -> bytes:
    """A dithered gradient as a Group 4 TIFF (one strip unless rows_per_strip)."""
    info = {278: rows_per_strip} if rows_per_strip else {}
    return encode(gradient_rgb(200, 160).convert("1"), "TIFF", compression="group4", tiffinfo=info)


def strip_span(tiff: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(tiff)) as im:
        return im.tag_v2[273][0], sum(im.tag_v2[279])


def test_g4_tiff_stopped_early_by_zeroed_data_is_refused(store: ImageStore) -> None:
    data = bytearray(g4_tiff())
    start, length = strip_span(bytes(data))
    cut = start + int(length * 0.6)
    data[cut:start + length] = bytes(start + length - cut)
    with Image.open(io.BytesIO(bytes(data))) as im:  # libtiff itself decodes it without error
        im.load()
        assert np.all(np.asarray(im)[-20:] == np.asarray(im)[-1, 0])
    err = assert_rejected(store, bytes(data), "corrupt")
    assert "damaged: the bottom" in str(err) and "% of the picture is missing" in str(err)


@pytest.mark.parametrize("compression", ["group4", "tiff_lzw"])
def test_damaged_tiff_prints_nothing_and_is_refused_plainly(
    store: ImageStore, capfd: pytest.CaptureFixture[str], compression: str,
) -> None:
    """Regression: damaged TIFFs printed one libtiff line per bad row (117) before the error;
    LZW's complaints name the file ("tempfile.tif: Using code not yet in table.")."""
    if compression == "group4":
        data = bytearray(g4_tiff())
    else:
        data = bytearray(encode(gradient_rgb(200, 160), "TIFF", compression=compression))
    start, length = strip_span(bytes(data))
    rng = np.random.default_rng(7)
    for at in range(start + length // 5, start + length - 40, length // 5):
        data[at:at + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = assert_rejected(store, bytes(data), "corrupt")
    assert "damaged" in str(err) and "libtiff" not in str(err) and "\n" not in str(err)
    out, errout = capfd.readouterr()
    assert (out, errout) == ("", "")
    assert caught == []


def test_tiff_with_damaged_exif_warns_nobody(capfd: pytest.CaptureFixture[str]) -> None:
    """Pillow's "Corrupt EXIF data" warnings are kept from the user; the picture is intact."""
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    data = bytearray(encode(noise_rgb(32, 24), "TIFF", exif=exif))
    entry = next(i for i in range(8, len(data) - 12, 2)  # the Make tag's IFD entry
                 if struct.unpack_from("<HH", data, i) == (0x010F, 2))
    struct.pack_into("<I", data, entry + 4, 10_000)  # its value now claims 10,000 bytes
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decode_image(bytes(data)).size == (32, 24)
    assert caught == [] and capfd.readouterr() == ("", "")


def test_clean_g4_tiffs_are_accepted() -> None:
    for data in (g4_tiff(), g4_tiff(rows_per_strip=8)):
        assert decode_image(data).size == (200, 160)


def scan_start(jpeg: bytes) -> int:
    at = jpeg.find(b"\xff\xda")
    return at + 2 + int.from_bytes(jpeg[at + 2:at + 4], "big")


@pytest.mark.parametrize("marker", [0xD3, 0xE4, 0xC0, 0x51])
def test_jpeg_with_a_stray_marker_in_its_data_is_refused(store: ImageStore, marker: int) -> None:
    """A damaged byte pair reading as a marker (a restart marker where no restart interval is
    defined, an APP4, a frame header, a reserved code) ends libjpeg's data: the rest is grey."""
    data = bytearray(encode(noise_rgb(128, 96), "JPEG", quality=90))
    at = scan_start(bytes(data)) + (len(data) - scan_start(bytes(data))) // 2
    data[at:at + 2] = bytes([0xFF, marker])
    err = assert_rejected(store, bytes(data), "corrupt")
    assert "damaged: the bottom" in str(err)


def test_progressive_jpeg_with_a_stray_marker_is_refused(store: ImageStore) -> None:
    data = bytearray(encode(noise_rgb(128, 96), "JPEG", quality=90, progressive=True))
    at = scan_start(bytes(data)) + 40
    data[at:at + 2] = b"\xff\xd5"
    assert_rejected(store, bytes(data), "corrupt")


def test_jpeg_compressed_tiff_with_a_damaged_strip_is_refused(store: ImageStore) -> None:
    """libtiff hands each strip to libjpeg, which pads it with grey at a stray marker."""
    data = bytearray(encode(noise_rgb(128, 96), "TIFF", compression="jpeg"))
    with Image.open(io.BytesIO(bytes(data))) as im:
        offset, count = im.tag_v2[273][0], im.tag_v2[279][0]
        clean = np.asarray(im.convert("RGB"))
    data[offset + count // 2:offset + count // 2 + 2] = b"\xff\xd3"
    with Image.open(io.BytesIO(bytes(data))) as im:  # libtiff decodes it without a word
        assert np.asarray(im.convert("RGB")).shape == clean.shape
    assert_rejected(store, bytes(data), "corrupt")


def test_jpeg_with_restart_markers_out_of_order_is_refused(store: ImageStore) -> None:
    data = bytearray(encode(noise_rgb(128, 96), "JPEG", quality=90, restart_marker_blocks=4))
    first = data.find(b"\xff\xd0", scan_start(bytes(data)))
    data[first + 1] = 0xD5  # libjpeg resynchronises and fills the segments it skipped
    assert_rejected(store, bytes(data), "corrupt")


def test_jpeg_with_a_trailing_restart_marker_is_accepted() -> None:
    """Some encoders write one restart marker after the last interval too: harmless."""
    data = encode(noise_rgb(128, 96), "JPEG", quality=90, restart_marker_blocks=4)
    count = sum(data.count(bytes([0xFF, 0xD0 + i])) for i in range(8))
    trailing = data[:-2] + bytes([0xFF, 0xD0 + count % 8]) + data[-2:]
    with Image.open(io.BytesIO(data)) as im:
        assert np.array_equal(np.asarray(decode_image(trailing)), np.asarray(im.convert("RGB")))


def test_heic_tile_left_undecoded_is_refused(store: ImageStore) -> None:
    """libheif leaves a grid tile whose data it cannot decode at YUV zero (flat dark green)."""
    pillow_heif.options.GRID_TILE_SIZE = 64
    try:
        clean = encode(gradient_rgb(256, 256), "HEIF", quality=70)
    finally:
        pillow_heif.options.GRID_TILE_SIZE = 0
    mdat = clean.find(b"mdat") + 4
    for at in range(mdat + 200, len(clean) - 64, 97):  # first damage libheif decodes to green
        data = clean[:at] + bytes(64) + clean[at + 64:]
        try:
            with Image.open(io.BytesIO(data)) as im:
                px = np.asarray(im.convert("RGB"))
        except Exception:  # noqa: BLE001 - this damage made libheif fail outright: try another
            continue
        if np.all(px[-16:, -16:] == (0, 136, 0)) or np.all(px[:16, :16] == (0, 136, 0)):
            break
    else:
        pytest.fail("no damage left a tile at YUV zero")
    err = assert_rejected(store, data, "corrupt")
    assert "% of the picture (whole tiles or slices) is missing" in str(err)
    assert decode_image(clean).size == (256, 256)


@pytest.mark.parametrize(
    ("fmt", "kw"),
    [("JPEG", {"quality": 90}), ("PNG", {}), ("WEBP", {"quality": 80}), ("WEBP", {"lossless": True}),
     ("TIFF", {}), ("TIFF", {"compression": "tiff_deflate"})],
)
def test_cut_files_are_refused(store: ImageStore, fmt: str, kw: dict) -> None:
    data = encode(noise_rgb(128, 96), fmt, **kw)
    for fraction in (0.1, 0.5, 0.9, 0.99):
        with pytest.raises(ImageRejected) as info:
            ingest(store, data[: int(len(data) * fraction)])
        assert info.value.code in ("truncated", "corrupt"), (fraction, info.value.code)
    assert stored_files(store) == []


def test_images_below_the_minimum_size_are_refused(store: ImageStore) -> None:
    err = assert_rejected(store, encode(noise_rgb(1, 1), "PNG"), "too_small")
    assert "1 x 1 pixels" in str(err) and f"at least {MIN_SIDE} x {MIN_SIDE}" in str(err)
    assert_rejected(store, encode(noise_rgb(MIN_SIDE, MIN_SIDE - 1), "PNG"), "too_small")
    assert decode_image(encode(noise_rgb(MIN_SIDE, MIN_SIDE), "PNG")).size == (MIN_SIDE, MIN_SIDE)


def test_minimum_size_is_what_restorer_scores_need() -> None:
    from review.media.restore.base import compute_metrics

    small = noise_rgb(MIN_SIDE, MIN_SIDE)
    assert "ssim" in compute_metrics(small, small, small)
    smaller = noise_rgb(MIN_SIDE - 1, MIN_SIDE - 1)
    with pytest.raises(ValueError, match="win_size"):
        compute_metrics(smaller, smaller, smaller)


def test_text_file_named_png(store: ImageStore, tmp_path: Path) -> None:
    path = tmp_path / "selfie.png"
    path.write_text("This is a shopping list, not a picture.\nmilk\neggs\n")
    with pytest.raises(ImageRejected) as info:
        store.put_image(decode_file(path))
    assert info.value.code == "unsupported_format"
    assert stored_files(store) == []


def test_format_comes_from_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"  # really a PNG
    src = noise_rgb()
    path.write_bytes(encode(src, "PNG"))
    assert np.array_equal(np.asarray(decode_file(path)), np.asarray(src))


def test_gif_is_refused_still_or_animated(store: ImageStore) -> None:
    frames = [noise_rgb(seed=1), noise_rgb(seed=2)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    err = assert_rejected(store, animated, "unsupported_format")
    assert "GIF" in str(err)
    assert_rejected(store, encode(frames[0], "GIF"), "unsupported_format")


def test_bmp_is_refused_by_name(store: ImageStore) -> None:
    err = assert_rejected(store, encode(noise_rgb(), "BMP"), "unsupported_format")
    assert "BMP" in str(err)


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "PNG"])
def test_multi_frame_files_are_refused(store: ImageStore, fmt: str) -> None:
    frames = [noise_rgb(seed=1), noise_rgb(seed=2), noise_rgb(seed=3)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.n_frames == 3  # the fixture really is multi-frame
    err = assert_rejected(store, data, "animated")
    assert "3 frames" in str(err)


def test_pixel_bomb_within_pillow_limit_uses_header_size(store: ImageStore) -> None:
    data = zero_png(8000, 8000)  # 64 MP > our 40 MP cap, < Pillow's 89 MP warning level
    assert len(data) < 100_000
    err = assert_rejected(store, data, "too_many_pixels")
    assert "8000 x 8000 pixels (64 megapixels)" in str(err)
    assert "limit is 40 megapixels" in str(err)


def test_pixel_bomb_30000_square(store: ImageStore) -> None:
    data = zero_png(30000, 30000)  # 900 MP, ~110 kB; Pillow's own DecompressionBombError
    assert len(data) < 200_000
    assert_rejected(store, data, "too_many_pixels")


def test_pillow_bomb_warning_becomes_rejection(store: ImageStore) -> None:
    # 100 MP is above Pillow's warning threshold (~89 MP), below its error threshold; our own
    # cap is raised out of the way so only Pillow's warning can stop it.
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 100_000_000
    assert_rejected(store, zero_png(10000, 10000), "too_many_pixels", max_pixels=10**9)


def test_pixel_cap_checked_before_decoding(store: ImageStore) -> None:
    # Header claims 9000 x 9000 RGB; the pixel data is garbage. Decoding would raise "corrupt";
    # getting "too_many_pixels" proves the cap is applied from the header, before decoding.
    data = build_png(9000, 9000, 8, 2, b"garbage, not zlib")
    assert_rejected(store, data, "too_many_pixels")
    assert_rejected(store, data, "corrupt", max_pixels=10**8)


def test_custom_pixel_cap(store: ImageStore) -> None:
    assert_rejected(store, encode(noise_rgb(64, 48), "PNG"), "too_many_pixels", max_pixels=3000)
    assert decode_image(encode(noise_rgb(64, 48), "PNG"), max_pixels=3072).size == (64, 48)


# ---------------------------------------------------------------------------------------------
# Accepted formats and conversions


@pytest.mark.parametrize("fmt,kw", [("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {})])
def test_lossless_formats_round_trip_exactly(fmt: str, kw: dict) -> None:
    src = noise_rgb()
    out = decode_image(encode(src, fmt, **kw))
    assert out.mode == "RGB" and out.info == {}
    assert np.array_equal(np.asarray(out), np.asarray(src))


def test_jpeg_decodes() -> None:
    src = gradient_rgb()
    out = decode_image(encode(src, "JPEG", quality=95))
    assert out.mode == "RGB" and out.size == src.size
    assert np.abs(np.asarray(out, float) - np.asarray(src, float)).mean() < 2


def test_mpo_phone_jpeg_is_accepted_as_first_frame() -> None:
    first, second = gradient_rgb(), noise_rgb(64, 64)
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=95)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.format == "MPO" and probe.n_frames == 2
    out = decode_image(data)
    assert np.abs(np.asarray(out, float) - np.asarray(first, float)).mean() < 2


def test_heic_round_trip_via_pillow_heif() -> None:
    src = gradient_rgb(96, 64)
    buf = io.BytesIO()
    pillow_heif.from_pillow(src).save(buf, quality=95)
    data = buf.getvalue()
    assert data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1")
    out = decode_image(data)
    assert out.mode == "RGB" and out.size == (96, 64)
    mse = np.mean((np.asarray(out, float) - np.asarray(src, float)) ** 2)
    psnr = 10 * np.log10(255**2 / mse)
    assert psnr > 35, psnr


def test_exif_orientation_6_is_applied() -> None:
    # Stored 40 wide x 20 high, red block in the stored top-left corner. Orientation 6 means
    # "rotate 90 degrees clockwise to display": the image becomes 20 x 40 and the top-left
    # corner lands top-right.
    arr = np.full((20, 40, 3), 255, np.uint8)
    arr[:6, :6] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif)
    out = np.asarray(decode_image(data))
    assert out.shape == (40, 20, 3)
    top_right, top_left = out[2, 17], out[2, 2]
    assert top_right[0] > 200 and top_right[1] < 60 and top_right[2] < 60, top_right
    assert top_left.min() > 200, top_left  # white
    assert out[37, 2].min() > 200 and out[37, 17].min() > 200


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = np.zeros((16, 48, 4), np.uint8)
    cmyk[:, :16] = (255, 0, 0, 0)  # cyan
    cmyk[:, 16:32] = (0, 255, 0, 0)  # magenta
    cmyk[:, 32:] = (0, 0, 0, 255)  # black
    src = Image.fromarray(cmyk, mode="CMYK")
    data = encode(src, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode == "CMYK"
    out = np.asarray(decode_image(data)).astype(int)
    assert np.abs(out[8, 8] - (0, 255, 255)).max() <= 6
    assert np.abs(out[8, 24] - (255, 0, 255)).max() <= 6
    assert np.abs(out[8, 40] - (0, 0, 0)).max() <= 6


def test_16bit_grey_png_scaled_not_clipped() -> None:
    values = tiled(np.array([[0, 128, 257, 32767, 32768, 65535]], np.uint16))
    data = encode(Image.fromarray(values), "PNG")
    assert data[24] == 16  # IHDR bit depth: really a 16-bit PNG
    out = np.asarray(decode_image(data))
    assert out.shape == (7, 12, 3)
    # round(v * 255 / 65535): 128 -> 0.498 -> 0, 257 -> 1, 32767 -> 127.498 -> 127, 32768 -> 128
    assert out[0, :6, 0].tolist() == [0, 0, 1, 127, 128, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16bit_grey_tiff_scaled() -> None:
    values = tiled(np.array([[0, 32768, 65535]], np.uint16))
    out = np.asarray(decode_image(encode(Image.fromarray(values), "TIFF")))
    assert out[0, :3, 0].tolist() == [0, 128, 255]


def test_16bit_rgb_png_scaled() -> None:
    # Pillow cannot write 16-bit RGB PNG; build one (colour type 2, bit depth 16) by hand.
    px = [(65535, 32768, 0), (0, 65535, 32768), (257, 514, 1028)]
    raw = (b"\x00" + b"".join(struct.pack(">3H", *p) for p in px * 3)) * 7
    out = np.asarray(decode_image(build_png(9, 7, 16, 2, zlib.compress(raw))))
    expected = np.array([[255, 128, 0], [0, 255, 128], [1, 2, 4]])
    assert np.abs(out[0, :3].astype(int) - expected).max() <= 1


def test_palette_png_with_transparency_onto_white() -> None:
    pal = Image.new("P", (8, 8))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    pal.putdata(tiled(np.array([[0, 1, 0, 1], [1, 0, 1, 0]])).flatten().tolist())
    data = encode(pal, "PNG", transparency=0)  # index 0 (black) fully transparent
    out = np.asarray(decode_image(data))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [255, 0, 0]


def test_rgba_composited_onto_white() -> None:
    arr = tiled(np.array([[[255, 0, 0, 255], [255, 0, 0, 128], [0, 0, 255, 0]]], np.uint8))
    out = np.asarray(decode_image(encode(Image.fromarray(arr, mode="RGBA"), "PNG"))).astype(int)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert np.abs(out[0, 1] - (255, 127, 127)).max() <= 1  # half red over white
    assert out[0, 2].tolist() == [255, 255, 255]


def test_la_and_1bit_and_grey() -> None:
    la = Image.fromarray(tiled(np.array([[[0, 255], [0, 0], [200, 255]]], np.uint8)), mode="LA")
    out = np.asarray(decode_image(encode(la, "PNG")))
    assert out[0, :3].tolist() == [[0, 0, 0], [255, 255, 255], [200, 200, 200]]
    bits = Image.new("1", (8, 7))
    bits.putpixel((3, 0), 1)
    out = np.asarray(decode_image(encode(bits, "PNG")))
    assert out[0, 3].tolist() == [255, 255, 255] and out[0, 2].tolist() == [0, 0, 0]
    grey = Image.fromarray(np.array([[17] + [99] * 7] * 7, np.uint8))
    assert np.asarray(decode_image(encode(grey, "JPEG", quality=100)))[0, 1].tolist() == [
        99,
        99,
        99,
    ]


def test_srgb_icc_profile_is_a_no_op() -> None:
    src = noise_rgb()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = decode_image(encode(src, "PNG", icc_profile=srgb))
    assert np.array_equal(np.asarray(out), np.asarray(src))
    assert "icc_profile" not in out.info


def test_adobe_rgb_icc_profile_converted_to_srgb() -> None:
    colours = np.array(
        [[100, 150, 200], [200, 80, 60], [128, 128, 128], [100, 170, 100], [230, 210, 180]],
        np.uint8,
    )
    src = Image.fromarray(tiled(colours[None, :, :]))
    data = encode(src, "PNG", icc_profile=ADOBE_RGB_ICC)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.info["icc_profile"] == ADOBE_RGB_ICC
    out = np.asarray(decode_image(data))[0, :5].astype(float)
    expected = adobe_to_srgb_reference(colours.astype(float))
    # LittleCMS (D50 PCS, Bradford) vs the direct D65 matrices: measured 0.49 levels apart.
    assert np.abs(out - expected).max() <= 1.0, (out, expected)
    # ...and the conversion did something: Adobe green is far more saturated than sRGB green.
    assert np.abs(out - colours).max() >= 20


def test_adobe_rgb_profile_in_jpeg_and_with_alpha() -> None:
    colours = tiled(np.array([[[100, 170, 100, 255], [100, 170, 100, 0]]], np.uint8))
    data = encode(Image.fromarray(colours, mode="RGBA"), "PNG", icc_profile=ADOBE_RGB_ICC)
    out = np.asarray(decode_image(data)).astype(float)
    expected = adobe_to_srgb_reference(np.array([[100.0, 170.0, 100.0]]))[0]
    assert np.abs(out[0, 0] - expected).max() <= 1.0
    assert out[0, 1].tolist() == [255, 255, 255]  # transparent pixel -> white
    jpg = encode(Image.fromarray(colours[..., :3]), "JPEG", quality=100, icc_profile=ADOBE_RGB_ICC)
    assert np.abs(np.asarray(decode_image(jpg))[0, 0] - expected).max() <= 3.0


def test_broken_icc_profile_is_ignored() -> None:
    src = noise_rgb()
    out = decode_image(encode(src, "PNG", icc_profile=b"definitely not an ICC profile"))
    assert np.array_equal(np.asarray(out), np.asarray(src))


# ---------------------------------------------------------------------------------------------
# Store


def test_put_image_layout_and_lossless(store: ImageStore) -> None:
    src = noise_rgb()
    ref = store.put_image(src)
    data = (store.root / ref.relpath).read_bytes()
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.relpath == f"{ref.sha256[:2]}/{ref.sha256}.png"
    assert data.startswith(b"\x89PNG")
    assert store.path(ref.relpath) == (store.root / ref.relpath).resolve()
    assert np.array_equal(np.asarray(store.open_image(ref.relpath)), np.asarray(src))
    assert np.array_equal(np.asarray(load_rgb(store.root, ref.relpath)), np.asarray(src))
    assert store.read_bytes(ref.relpath) == data


def test_put_image_is_idempotent_and_deterministic(store: ImageStore) -> None:
    src = noise_rgb()
    first = store.put_image(src)
    target = store.root / first.relpath
    stat1 = target.stat()
    # Same pixels carrying different metadata: the PNG bytes (and so the sha) must not change.
    twin = Image.frombytes("RGB", src.size, src.tobytes())
    twin.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    twin.info["exif"] = b"Exif\0\0junk"
    twin.info["comment"] = "hello"
    second = store.put_image(twin)
    assert second == first
    stat2 = target.stat()
    assert (stat2.st_ino, stat2.st_mtime_ns) == (stat1.st_ino, stat1.st_mtime_ns)  # no rewrite
    assert stored_files(store) == [target]
    assert store.put_image(noise_rgb(seed=5)) != first


def test_put_bytes_npy_kernel(store: ImageStore) -> None:
    kernel = np.outer(np.hanning(7), np.hanning(7))
    kernel /= kernel.sum()
    buf = io.BytesIO()
    np.save(buf, kernel)
    ref = store.put_bytes(buf.getvalue(), ".npy")
    assert ref.relpath.endswith(".npy") and ref.relpath.startswith(ref.sha256[:2] + "/")
    assert store.put_bytes(buf.getvalue(), "npy") == ref
    assert np.array_equal(np.load(io.BytesIO(store.read_bytes(ref.relpath))), kernel)


@pytest.mark.parametrize("ext", ["", "../png", "p/ng", "png\0", ".tar.gz", "x" * 11])
def test_put_bytes_rejects_bad_extensions(store: ImageStore, ext: str) -> None:
    with pytest.raises(ValueError):
        store.put_bytes(b"abc", ext)
    assert stored_files(store) == []


def test_no_temp_files_left_and_concurrent_writers(store: ImageStore) -> None:
    payload = os.urandom(200_000)
    results: list[StoredFile] = []

    def writer() -> None:
        results.append(store.put_bytes(payload, "bin"))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert stored_files(store) == [store.root / results[0].relpath]
    assert store.read_bytes(results[0].relpath) == payload


def test_failed_write_leaves_nothing(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_module.os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes(b"some bytes", "bin")
    assert stored_files(store) == []


def test_truncated_store_file_is_rewritten(store: ImageStore) -> None:
    ref = store.put_bytes(b"0123456789", "bin")
    (store.root / ref.relpath).write_bytes(b"01234")  # e.g. damaged by a crash elsewhere
    assert store.put_bytes(b"0123456789", "bin") == ref
    assert store.read_bytes(ref.relpath) == b"0123456789"


@pytest.mark.parametrize(
    "relpath",
    [
        "../secret.png",
        "/etc/passwd",
        "ab/../../secret.png",
        "..\\secret.png",
        "",
        "ab/" + "ab" + "0" * 62 + ".png/../../x",
        "cd/" + "ab" + "0" * 62 + ".png",  # folder does not match the hash
        "AB/" + "AB" + "0" * 62 + ".png",
        "ab/" + "ab" + "0" * 61 + ".png",
    ],
)
def test_path_traversal_refused(store: ImageStore, relpath: str) -> None:
    with pytest.raises(ValueError):
        store.path(relpath)
    with pytest.raises(ValueError):
        store.read_bytes(relpath)
    with pytest.raises(ValueError):
        store.open_image(relpath)


def test_symlink_out_of_root_refused(store: ImageStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    name = "ab" + "0" * 62 + ".png"
    (outside / name).write_bytes(b"secret")
    (store.root / "ab").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes"):
        store.read_bytes(f"ab/{name}")


def test_put_image_refuses_odd_modes(store: ImageStore) -> None:
    with pytest.raises(ValueError):
        store.put_image(Image.new("CMYK", (4, 4)))
    assert stored_files(store) == []


# ---------------------------------------------------------------------------------------------
# Display JPEG and array helpers


@pytest.mark.parametrize(
    "size,max_side,expected",
    [((1000, 500), 256, (256, 128)), ((333, 100), 100, (100, 30)), ((100, 50), 256, (100, 50)),
     ((300, 1200), 512, (128, 512))],
)
def test_display_jpeg_sizing(size: tuple[int, int], max_side: int, expected: tuple) -> None:
    data = encode_display_jpeg(gradient_rgb(*size), max_side)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == expected and im.mode == "RGB"


def test_display_jpeg_quality_and_content() -> None:
    src = noise_rgb(256, 256)
    small, large = encode_display_jpeg(src, 256, 50), encode_display_jpeg(src, 256, 95)
    assert len(small) < len(large)
    back = decode_image(encode_display_jpeg(gradient_rgb(), 64, 95))
    assert np.abs(np.asarray(back, float) - np.asarray(gradient_rgb(), float)).mean() < 2


def test_store_keeps_a_display_jpeg_of_every_stored_image(store: ImageStore) -> None:
    src = noise_rgb(900, 600)
    stored = store.put_image(src)
    kept = store.root / "display" / "512" / stored.sha256[:2] / f"{stored.sha256}.jpg"
    assert kept.read_bytes() == encode_display_jpeg(src, 512)  # made when stored
    assert store.display_jpeg(stored.relpath) == kept.read_bytes()
    kept.unlink()  # an older data folder, or a cleared cache: made again on first view
    again = store.display_jpeg(stored.relpath)
    assert again == encode_display_jpeg(store.open_image(stored.relpath), 512) and kept.is_file()
    small = store.display_jpeg(stored.relpath, 128)
    with Image.open(io.BytesIO(small)) as im:
        assert im.size == (128, 85)
    with pytest.raises(ValueError, match="not a store path"):
        store.display_jpeg("../etc/passwd")


def test_to_array_and_from_array() -> None:
    src = noise_rgb()
    arr = to_array(src)
    assert arr.dtype == np.float64 and arr.shape == (48, 64, 3)
    assert 0.0 <= arr.min() and arr.max() <= 1.0
    assert np.array_equal(np.asarray(from_array(arr)), np.asarray(src))
    out = np.asarray(from_array(np.array([[-0.2, 0.0, 0.5, 100 / 255 + 0.4 / 255, 1.7]])))
    assert out.tolist() == [[0, 0, 128, 100, 255]]
    assert from_array(np.zeros((2, 3, 3))).mode == "RGB"
    assert to_array(Image.new("L", (3, 2), 51)).shape == (2, 3)
    with pytest.raises(ValueError):
        from_array(np.array([[np.nan]]))
    with pytest.raises(ValueError):
        from_array(np.zeros((2, 2, 4)))
