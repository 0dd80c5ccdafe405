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
  selfie would otherwise be rated as if the restorer had damaged it.
* Animations and multi-page files are rejected rather than silently reduced to frame one.
* EXIF orientation is applied (phone selfies are stored sideways with an orientation tag).
* Colour is normalised to 8-bit sRGB: embedded non-sRGB ICC profiles (Display P3 from
  iPhones, Adobe RGB, CMYK press profiles) are converted with LittleCMS, 16-bit samples are
  scaled (not clipped) to 8 bit and transparency is composited onto white.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from review.errors import ReviewError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
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

# warnings.catch_warnings() swaps process-wide state; serialise our use of it.
_WARNINGS_LOCK = threading.Lock()
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


def _open_header(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    """Identify the format and read the header only; Pillow's bomb warning becomes an error."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=list(_ALLOWED_FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _reject_pixels(None, max_pixels) from None
        except UnidentifiedImageError:
            raise _unidentified(data) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            # Pillow reports broken headers with a zoo of exception types.
            if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
                raise _truncated() from None
            raise _corrupt(str(exc) or type(exc).__name__) from None


def _load_pixels(im: ImageFile.ImageFile) -> None:
    """Decode the pixel data; truncation and decoder errors become rejections."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process switched it on; it would let half-files through.
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was True; review.media.decode resets it.")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        im.load()
    except (Image.DecompressionBombError, MemoryError):
        raise ImageRejected(
            "too_many_pixels",
            "The image is too large to decode. Resize it (for example to 4000 pixels on the "
            "long side) and try again.",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        text = str(exc).lower()
        if "truncated" in text or isinstance(exc, EOFError):
            raise _truncated() from None
        raise _corrupt(str(exc) or type(exc).__name__) from None


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


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode untrusted image bytes into an 8-bit sRGB RGB image, or raise ImageRejected.

    Rejection codes: ``empty``, ``too_large_bytes``, ``too_many_pixels``,
    ``unsupported_format``, ``truncated``, ``animated``, ``corrupt``.
    """
    if not data:
        raise ImageRejected(
            "empty", "The file is empty (0 bytes). Please choose the photo file again."
        )
    if len(data) > max_bytes:
        raise _reject_bytes(len(data), max_bytes)

    im = _open_header(data, max_pixels)
    try:
        width, height = im.size
        if width * height > max_pixels:
            raise _reject_pixels((width, height), max_pixels)
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and im.format not in _SINGLE_IMAGE_BY_DESIGN:
            kind = _FRIENDLY_NAMES.get(im.format or "", im.format)
            raise ImageRejected(
                "animated",
                f"This {kind} file contains {frames} frames (an animation or a multi-page "
                "file). Please upload a single still photo, for example one frame exported "
                "as JPEG or PNG.",
            )
        _load_pixels(im)
        try:
            oriented = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError, TypeError, KeyError) as exc:
            raise _corrupt(f"unreadable EXIF orientation: {exc}") from None
        return _normalise(oriented if oriented is not None else im)
    finally:
        im.close()


def decode_file(path: Path, **kw: Any) -> Image.Image:
    """Decode an image file with :func:`decode_image`; checks the size before reading it."""
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

