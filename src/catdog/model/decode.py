"""Bytes to an upright RGB image, with every limit checked before the expensive work.

The order matters for safety: the format is decided by content (Pillow's magic
bytes, never the file name), the pixel count is checked from the header before
a single pixel is decoded, and only then is the image decoded.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from catdog.model.errors import (
    EmptyFile,
    ImageError,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
    UnsupportedFormat,
)

ImageSource = bytes | bytearray | memoryview | str | Path | Image.Image

#: Formats catdog decodes (Pillow's JPEG opener also yields MPO, how many phones store
#: JPEGs). Keeping the list short keeps Pillow's riskier plugins (EPS runs
#: Ghostscript) out of reach.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
#: File name endings that folder scans (CLI, training) pick up.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})

#: 40 megapixels covers any phone or DSLR photo; beyond that a file is a bomb or a mistake.
DEFAULT_MAX_PIXELS = 40_000_000

# Signatures of things people upload by mistake, only to word the error message.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"8BPS", "a Photoshop document"),
)
_UNSUPPORTED_IMAGE_WORDS = ("TIFF", "JPEG 2000", "Photoshop", "HEIC")
#: Signatures of the accepted formats: bytes that start like one of them but that Pillow
#: cannot open are a damaged photo (400), not a foreign file (415).
_ACCEPTED_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def sniff(data: bytes) -> str | None:
    """Name what non-image bytes look like ("a PDF document"), or None if unknown."""
    head = bytes(data[:512])
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "an HEIC/AVIF image"
    text = head.lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "an SVG drawing"
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if text.startswith((b'{"', b"[{", b'["')):
        return "JSON text"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "plain text"
    return None


def _open(data: bytes) -> Image.Image:
    if not data:
        raise EmptyFile()
    Image.init()  # registers every plugin once, so MPO/WebP are known before formats= is checked
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is stricter; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(None, None, DEFAULT_MAX_PIXELS, pixels=_bomb_pixels(exc)) from None
    except UnidentifiedImageError:
        if data.startswith(_ACCEPTED_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise TruncatedImage() from None
        detected = sniff(data)
        if detected and any(word in detected for word in _UNSUPPORTED_IMAGE_WORDS):
            raise UnsupportedFormat(detected.split(" ", 1)[1].removesuffix(" image")) from None
        raise NotAnImage(detected=detected) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
        # Pillow found a known header and then choked on it.
        raise TruncatedImage("The image header is corrupt; re-export or re-upload the photo.") from None


def _bomb_pixels(exc: Exception) -> int | None:
    # Pillow words it "Image size (N pixels) exceeds limit of ..." and does not give the sides.
    digits = [int(tok) for tok in str(exc).replace("(", " ").split() if tok.isdigit()]
    return digits[0] if digits else None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is flattened onto white, as viewers show it."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Pillow's convert() clips wide modes to 0..255 instead of scaling them.
        arr = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
) -> Image.Image:
    """Decode encoded image bytes into an upright RGB ``PIL.Image``.

    ``min_side`` lets JPEGs decode at a reduced scale (libjpeg's DCT scaling, "draft
    mode") as long as both sides stay >= ``min_side``: a 12 MP phone photo then
    decodes 4-8x faster, and the model sees the same pixels it would after resizing.

    Raises an :class:`~catdog.model.errors.ImageError` subclass for every bad input.
    """
    image = _open(bytes(data) if not isinstance(data, bytes) else data)
    width, height = image.size
    if width < 1 or height < 1:
        raise NotAnImage("The image has no pixels (0 width or height); send a real photo.")
    if width * height > max_pixels:
        raise TooManyPixels(width, height, max_pixels)
    try:
        if min_side and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (min_side, min_side))
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise TooManyPixels(width, height, max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, ZeroDivisionError):
        raise TruncatedImage() from None


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None) -> Image.Image:
    """Accept bytes, a path or a PIL image; return an upright RGB image."""
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source) or source)
    if isinstance(source, (str, Path)):
        data = Path(source).read_bytes()
    else:
        data = bytes(source)
    return decode_image(data, max_pixels=max_pixels, min_side=min_side)
