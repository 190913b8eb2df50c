"""The photos on the page: what the person gave, what is sent to the API, and the previews.

No Streamlit and no model here. The page opens photos only to show previews and to
shrink one that is over the API's upload limit; the API decodes every photo it
classifies. Opening is bounded like the API's (pixel limit checked before any pixel
is decoded, JPEG draft mode), so a hostile upload cannot hurt the page server.
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from dataclasses import dataclass
from functools import cached_property

from PIL import Image, ImageOps

from catdog.ui.words import Message

try:  # HEIC/HEIF previews and shrinking (the API decodes them the same way)
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - pillow-heif is a dependency; a bare install still runs
    pass
else:
    register_heif_opener()

#: Long sides tried, in turn, for a photo the page shrinks before sending: the first is far
#: above what the model looks at (a few hundred pixels), the last still above it.
SHRINK_SIDES = (2048, 1024, 512)
SHRINK_TO = SHRINK_SIDES[0]
#: JPEG quality of a shrunk photo.
SHRINK_QUALITY = 90
#: Share of the API's upload limit one photo may use (the rest is the request's own framing).
LIMIT_SHARE = 0.95
#: Extensions the upload box takes: every format the API decodes (HEIC/HEIF through
#: pillow-heif, AVIF through Pillow).
ACCEPTED_TYPES = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "heic", "heif", "avif")
PREVIEW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class PhotoError(Exception):
    """This page cannot open the photo (for a preview or to shrink it); ``reason`` says why."""

    def __init__(self, reason: Message):
        super().__init__(reason[0])
        self.reason = reason


@dataclass(frozen=True)
class Picture:
    """One photo on the page (uploaded or an example).

    ``data`` is what goes to the API: the original bytes, or a shrunk JPEG if the original
    is over the limit (``note`` then says so). ``problem`` is set when the photo cannot be
    sent at all; it is then shown as that photo's result. Both are messages of
    :mod:`catdog.ui.words`, put in words in the page's language.
    """

    name: str
    data: bytes
    content_type: str
    original_bytes: int
    note: Message | None = None
    problem: Message | None = None

    @cached_property
    def key(self) -> str:
        """Names this photo's result in the session (the same photo twice shares one result)."""
        return f"{self.name}:{hashlib.blake2b(self.data, digest_size=8).hexdigest()}"

    @property
    def upload(self) -> tuple[str, bytes]:
        """What :meth:`catdog.client.Client.classify_many` takes: (file name, bytes)."""
        return self.name, self.data


def prepare(
    name: str, data: bytes, content_type: str, *, limit_bytes: int, max_pixels: int
) -> Picture:
    """The :class:`Picture` for one upload: as it is, shrunk to fit ``limit_bytes``, or refused
    with a reason (too large and not a photo this page can shrink)."""
    limit = int(limit_bytes * LIMIT_SHARE)
    if len(data) <= limit:
        return Picture(name, data, content_type, len(data))
    sizes = {"size": len(data), "limit": limit_bytes}
    try:
        shrunk = shrink(data, max_pixels=max_pixels, fit=limit)
    except PhotoError as exc:
        return Picture(name, data, content_type, len(data), problem=("problem.too_big", {**sizes, "reason": exc.reason}))
    if len(shrunk) > limit:  # a pathological photo that JPEG cannot compress: say so
        return Picture(name, data, content_type, len(data), problem=("problem.stays_big", sizes))
    note = {"before": len(data), "after": len(shrunk), "limit": limit_bytes}
    return Picture(name, shrunk, "image/jpeg", len(data), note=("note.shrunk", note))


def open_photo(data: bytes, *, max_pixels: int, side: int) -> Image.Image:
    """The photo, upright, in RGB, decoded at no less than ``side`` px where the format allows
    decoding smaller (JPEG); raises :class:`PhotoError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            if opened.format == "JPEG":
                opened.draft("RGB", (side, side))  # decode at 1/2, 1/4 or 1/8 size: less memory
            if opened.width * opened.height > max_pixels:
                raise PhotoError(("reason.pixels", {"width": opened.width, "height": opened.height,
                                                    "max": f"{max_pixels:,}"}))
            return ImageOps.exif_transpose(opened).convert("RGB")
    except PhotoError:
        raise
    except (*PREVIEW_ERRORS, Image.DecompressionBombWarning):
        raise PhotoError(("reason.unreadable", {})) from None


def shrink(data: bytes, *, max_pixels: int, fit: int | None = None) -> bytes:
    """The photo as a JPEG whose long side is at most :data:`SHRINK_TO` px, or a smaller one of
    :data:`SHRINK_SIDES` if needed to fit in ``fit`` bytes; raises :class:`PhotoError`."""
    image = open_photo(data, max_pixels=max_pixels, side=SHRINK_TO)
    for side in SHRINK_SIDES:  # the first size that fits: as much detail as the limit allows
        smaller = image.copy()
        smaller.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        smaller.save(out, "JPEG", quality=SHRINK_QUALITY)
        if fit is None or out.tell() <= fit:
            break
    return out.getvalue()


def thumbnail_uri(data: bytes, side: int, *, max_pixels: int, crop: bool = False) -> str:
    """A ``data:`` URI of the photo in a ``side`` x ``side`` square; raises :class:`PhotoError`.

    The whole photo is fitted (never stretched, never cut) unless ``crop``. Inline data,
    not a URL: the page then needs no media server route and fetches nothing.
    """
    image = open_photo(data, max_pixels=max_pixels, side=side)
    if crop:
        image = ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS)
    else:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
