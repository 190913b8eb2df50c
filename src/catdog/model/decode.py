"""Bytes to an upright RGB image, with every limit checked before the expensive work.

The order matters for safety: the format is decided by content (Pillow's magic
bytes, never the file name), the pixel count and the memory decoding will take are
checked from the header before a single pixel is decoded, and only then is the image
decoded, then converted and reduced a band at a time (never several full-size copies).
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError, features

from catdog.model.errors import (
    BatchBudgetExceeded,
    BatchDeadlineExceeded,
    DecodeTooCostly,
    EmptyFile,
    ImageError,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
    UnsupportedFormat,
)

ImageSource = bytes | bytearray | memoryview | str | Path | Image.Image

try:  # HEIC/HEIF, what most phones save, through libheif (pillow-heif registers Pillow's opener)
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - a dependency; without it HEIC is refused as unsupported
    _HEIF: tuple[str, ...] = ()
else:
    register_heif_opener(thumbnails=False)
    _HEIF = ("HEIF",)
#: AVIF through Pillow's own plugin, where Pillow was built with libavif.
_AVIF = ("AVIF",) if features.check("avif") else ()

#: Formats catdog decodes (Pillow's JPEG opener also yields MPO, how many phones store
#: JPEGs). Keeping the list short keeps Pillow's riskier plugins (EPS runs
#: Ghostscript) out of reach.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", *_HEIF, *_AVIF)
#: File name endings that folder scans (CLI, training) pick up.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
                           | ({".heic", ".heif"} if _HEIF else set()) | ({".avif"} if _AVIF else set()))

#: 40 megapixels covers any phone or DSLR photo; beyond that a file is a bomb or a mistake.
DEFAULT_MAX_PIXELS = 40_000_000
#: Memory one decode may take (see :func:`decode_cost`): a 40 MP RGBA PNG (160 MB) fits, a
#: 40 MP WebP (two 160 MB copies) does not; two workers decoding at once stay well inside 1 GiB.
DEFAULT_MAX_DECODE_BYTES = 200_000_000

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
#: ISO media brands (bytes 8-12, after ``ftyp``) of the HEIF and AVIF files decoded here.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")


def _accepted_signature(data: bytes) -> bool:
    """Starts like a file of an accepted format (damaged if Pillow cannot open it)."""
    if data.startswith(_ACCEPTED_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return True
    brand = data[8:12] if data[4:8] == b"ftyp" else b""
    return bool((_HEIF and brand in _HEIF_BRANDS) or (_AVIF and brand in _AVIF_BRANDS))


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
        if _accepted_signature(data):
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


#: What one pixel of a decoded image costs in Pillow's memory, by mode (Pillow keeps 1, L and P
#: in one byte, the 16-bit modes in two, and every other mode, RGB included, in four).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
#: Decoders that build the image in buffers of their own before Pillow copies it in. Pillow's
#: WebP plugin gets the whole frame from libwebp as bytes and copies it through a stream into
#: the image: a 40 MP WebP peaks at +610 MB, about four full-size copies (bench/stress.py).
#: libheif and libavif decode to planes of their own (YUV, then RGB) before Pillow copies them.
_DECODE_COPIES = {"WEBP": 4, "HEIF": 3, "AVIF": 3}
#: Working memory of the band-by-band conversion and Pillow's decoders, beyond the image itself.
_WORKING_BYTES = 8 << 20
#: Rows of the source converted at a time: a band of at most this many bytes in its widest mode.
_BAND_BYTES = 4 << 20
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


#: Whole-factor reduction stops at twice the size preprocessing resizes to, as Pillow's own
#: ``reducing_gap=2`` does: the box-filter step then changes little of what the model sees
#: (tests/model/test_decode.py states the tolerance).
REDUCING_GAP = 2


def reduce_factor(width: int, height: int, min_side: int | None) -> int:
    """The whole factor a decoded image is reduced by: the short side stays >= 2 x ``min_side``."""
    if not min_side:
        return 1
    return max(1, min(width, height) // (min_side * REDUCING_GAP))


def decode_cost(image: Image.Image, min_side: int | None = None) -> int:
    """Bytes of memory decoding ``image`` (opened, not loaded) would take at its peak.

    The full-size image in its own mode (a JPEG already at its draft scale), plus what the
    decoder copies, plus the reduced RGB result and the working bands. Only the header is read.
    """
    width, height = image.size
    native = width * height * _BYTES_PER_PIXEL.get(image.mode, 4) * _DECODE_COPIES.get(image.format or "", 1)
    factor = reduce_factor(width, height, min_side)
    return native + (width // factor + 1) * (height // factor + 1) * 4 + _WORKING_BYTES


def _sixteen_bit_scale(image: Image.Image) -> tuple[int, float]:
    """(right shift, float gain) that map a wide mode onto 0..255, chosen once for the whole image.

    Pillow's convert() clips wide modes to 0..255 instead of scaling them. 16-bit data is
    shifted by 8 (exact, integer); 32-bit ``I`` and ``F`` images whose values fit in 8 bits
    are taken as they are, else as 16-bit.
    """
    if image.mode.startswith("I;16"):
        return 8, 255.0 / 65535.0
    _low, high = image.getextrema()  # one pass over the pixels, no copy
    wide = high > 255  # type: ignore[operator]
    return (8 if wide else 0), (255.0 / 65535.0 if wide else 1.0)


def _band_to_rgb(band: Image.Image, shift: int, gain: float) -> Image.Image:
    """One band of any mode to 8-bit RGB; transparency is flattened onto white, as viewers show it."""
    if band.mode == "RGB":
        return band
    if band.mode in _WIDE_MODES:
        arr = np.asarray(band)
        if arr.dtype.kind == "f":
            grey = np.clip(arr * gain, 0, 255).astype(np.uint8)
        else:
            grey = (np.clip(arr, 0, 65535).astype(np.uint32) >> shift).clip(0, 255).astype(np.uint8)
        band = Image.fromarray(grey, "L")
    if band.mode == "P" and "transparency" in band.info:
        band = band.convert("RGBA")
    if band.mode in _ALPHA_MODES:
        rgba = band.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return band.convert("RGB")


def reduce_to_rgb(image: Image.Image, factor: int = 1) -> Image.Image:
    """A loaded image of any mode to RGB, ``factor`` times smaller on each side, band by band.

    Converting a 40 MP palette or 16-bit image at full size costs several full-size copies
    (RGBA, a white background, the composite, RGB: ~0.8 GB); converting and reducing a few
    rows at a time costs the bands and the small result. Bands are a whole number of
    ``factor`` rows, so the result is the same as reducing the whole converted image.
    """
    if image.mode == "RGB":
        return image.reduce(factor) if factor > 1 else image
    plain = image.mode in ("L", "CMYK", "YCbCr") or (image.mode == "P" and "transparency" not in image.info)
    if factor == 1 and plain:
        return image.convert("RGB")  # one conversion straight into the result: no copy to avoid
    shift, gain = _sixteen_bit_scale(image) if image.mode in _WIDE_MODES else (0, 1.0)
    width, height = image.size
    rows = max(factor, _BAND_BYTES // (width * 4) // factor * factor)
    out = Image.new("RGB", ((width + factor - 1) // factor, (height + factor - 1) // factor))
    for top in range(0, height, rows):
        band = _band_to_rgb(image.crop((0, top, width, min(top + rows, height))), shift, gain)
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB at full size; transparency is flattened onto white."""
    return reduce_to_rgb(image, 1)


class DecodeGate:
    """Memory that decodes running at once in this process may take, in all.

    A server worker decodes several uploads at once (gthread workers, one per thread). Each
    decode is bounded by ``max_decode_bytes``; without a shared bound, four threads decoding
    four 40 MP RGBA PNGs would take four times that. A decode waits here until its estimated
    cost fits beside the others (one always runs, whatever its cost): photos, which cost a few
    MB, never wait; bombs are decoded one after another.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._in_flight = 0
        #: Estimated bytes of every decode so far: the server gives memory back to the system
        #: after requests that decoded a lot (catdog.api.memory).
        self.decoded = 0

    @contextmanager
    def hold(self, cost: int, limit: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight == 0 or self._in_flight + cost <= limit)
            self._in_flight += cost
            self.decoded += cost
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= cost
                self._changed.notify_all()


#: The one gate of this process: decoding memory is a per-process resource, like a pool.
DECODE_GATE = DecodeGate()


def _upright(image: Image.Image, orientation: int | None) -> Image.Image:
    method = _ORIENTATION.get(orientation or 1)
    return image.transpose(method) if method is not None else image


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> Image.Image:
    """Decode encoded image bytes into an upright RGB ``PIL.Image``.

    ``min_side`` lets the decoder shrink the image as long as both sides stay >= ``min_side``:
    JPEGs decode at a reduced scale (libjpeg's DCT scaling, "draft mode": a 12 MP phone photo
    decodes 4-8x faster), and every image is then reduced by a whole factor (short side kept
    >= 2 x ``min_side``) while it is converted to RGB, band by band. Memory
    holds one full-size image in the file's own mode, never several converted copies.

    ``max_decode_bytes`` bounds what that one image may cost (:func:`decode_cost`, from the
    header alone): a 40 MP 16-bit or RGBA PNG is within the pixel limit but not free.

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
        cost = decode_cost(image, min_side)
        if cost > max_decode_bytes:
            raise DecodeTooCostly(width, height, image.mode, cost, max_decode_bytes)
        with DECODE_GATE.hold(cost, max_decode_bytes):
            try:
                image.load()
                # After load(), inside the gate: for a PNG, getexif() loads the whole image itself.
                orientation = image.getexif().get(ExifTags.Base.Orientation)
                reduced = reduce_to_rgb(image, reduce_factor(*image.size, min_side))
            finally:
                if "reduced" not in locals() or reduced is not image:
                    # Pillow's image files hold reference cycles: without close() the full-size
                    # pixels would wait for the garbage collector, outside the gate.
                    image.close()
        return _upright(reduced, orientation)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise TooManyPixels(width, height, max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, ZeroDivisionError):
        raise TruncatedImage() from None


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None,
               max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> Image.Image:
    """Accept bytes, a path or a PIL image; return an upright RGB image."""
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source) or source)
    if isinstance(source, (str, Path)):
        data = Path(source).read_bytes()
    else:
        data = bytes(source)
    return decode_image(data, max_pixels=max_pixels, min_side=min_side, max_decode_bytes=max_decode_bytes)


@dataclass
class BatchBudget:
    """What one batch may spend on decoding, in all: estimated bytes and wall-clock time.

    The engine charges each file before decoding it; a file that would go over either limit
    gets a per-file error instead, so a batch answers within its deadline (well before the
    server's worker timeout) whatever it holds.
    """

    max_bytes: int
    seconds: float
    started: float = field(default_factory=time.monotonic)
    spent: int = 0
    #: All or nothing (the v2 protocol, where one bad element fails the request): every file's
    #: header is checked and charged before any is decoded, so a request that cannot fit is
    #: refused before any work (:meth:`catdog.model.engine.Classifier.predict_batch`).
    whole: bool = False

    def charge(self, source: ImageSource, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> None:
        """Count ``source`` against the budget, or raise the per-file error that it is spent."""
        if time.monotonic() - self.started > self.seconds:
            raise BatchDeadlineExceeded(self.seconds)
        cost = estimate_cost(source, min_side=min_side, max_pixels=max_pixels)
        if cost > max_decode_bytes or cost == 0:
            return  # decoding refuses it on its own, with its own error
        if self.spent + cost > self.max_bytes:
            raise BatchBudgetExceeded(self.max_bytes)
        self.spent += cost


def check_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None,
                 max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> int:
    """The refusals :func:`decode_image` would make from the header alone (not an image, too
    many pixels, too costly to decode), raised without decoding; else the decode's cost."""
    image = _open(bytes(data))
    try:
        width, height = image.size
        if width < 1 or height < 1:
            raise NotAnImage("The image has no pixels (0 width or height); send a real photo.")
        if width * height > max_pixels:
            raise TooManyPixels(width, height, max_pixels)
        if min_side and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (min_side, min_side))
        cost = decode_cost(image, min_side)
        if cost > max_decode_bytes:
            raise DecodeTooCostly(width, height, image.mode, cost, max_decode_bytes)
        return cost
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, ZeroDivisionError):
        raise TruncatedImage() from None
    finally:
        image.close()


def estimate_cost(source: ImageSource, *, min_side: int | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """:func:`decode_cost` of encoded bytes, from the header alone; 0 for what decoding will refuse."""
    if not isinstance(source, (bytes, bytearray, memoryview)):
        return 0
    try:
        image = _open(bytes(source))
        if image.width * image.height > max_pixels:
            return 0
        if min_side and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (min_side, min_side))
        return decode_cost(image, min_side)
    except (ImageError, OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError):
        return 0
