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

#: Long sides tried, in turn, for a photo the page shrinks before sending: the first is far
#: above what the model looks at (a few hundred pixels), the last still above it.
SHRINK_SIDES = (2048, 1024, 512)
SHRINK_TO = SHRINK_SIDES[0]
#: JPEG quality of a shrunk photo.
SHRINK_QUALITY = 90
#: Share of the API's upload limit one photo may use (the rest is the request's own framing).
LIMIT_SHARE = 0.95
#: The first bytes of the formats phones save that neither the API nor this page can read.
HEIF_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIC",
    b"msf1": "HEIC",
    b"avif": "AVIF",
}
#: Extensions the upload box takes: every format the API decodes, plus the phone formats it
#: does not, so that those get a plain explanation in the results instead of being refused
#: silently by the browser.
ACCEPTED_TYPES = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "heic", "heif", "avif")
FORMATS_TEXT = "JPEG, PNG, WebP, GIF or BMP"
PREVIEW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class PhotoError(Exception):
    """This page cannot open the photo (for a preview or to shrink it); the message is for people."""


@dataclass(frozen=True)
class Picture:
    """One photo on the page (uploaded or an example).

    ``data`` is what goes to the API: the original bytes, or a shrunk JPEG if the original
    is over the limit (``note`` then says so). ``problem`` is set when the photo cannot be
    sent at all; it is then shown as that photo's result.
    """

    name: str
    data: bytes
    content_type: str
    original_bytes: int
    note: str | None = None
    problem: str | None = None

    @cached_property
    def key(self) -> str:
        """Names this photo's result in the session (the same photo twice shares one result)."""
        return f"{self.name}:{hashlib.blake2b(self.data, digest_size=8).hexdigest()}"

    @property
    def upload(self) -> tuple[str, bytes]:
        """What :meth:`catdog.client.Client.classify_many` takes: (file name, bytes)."""
        return self.name, self.data


def heif_kind(data: bytes) -> str | None:
    """ "HEIC" or "AVIF" if ``data`` is such a file (an ISO media ``ftyp`` box), else None."""
    if data[4:8] != b"ftyp":
        return None
    return HEIF_BRANDS.get(data[8:12])


def megabytes(size: int) -> str:
    """1.2 MB, or 350 KB under a megabyte (decimal units, as the API's limit)."""
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"


def prepare(
    name: str, data: bytes, content_type: str, *, limit_bytes: int, max_pixels: int
) -> Picture:
    """The :class:`Picture` for one upload: as it is, shrunk to fit ``limit_bytes``, or refused
    with a reason (HEIC/AVIF, or too large and not a photo this page can shrink)."""
    kind = heif_kind(data)
    if kind:
        return Picture(
            name, data, content_type, len(data),
            problem=f"This is a {kind} photo (the format iPhones and some Android phones save by "
            f"default), which catdog cannot read. Send it as {FORMATS_TEXT}: on an iPhone, choose "
            "Settings > Camera > Formats > Most Compatible, or share the photo as JPEG.",
        )  # fmt: skip
    limit = int(limit_bytes * LIMIT_SHARE)
    if len(data) <= limit:
        return Picture(name, data, content_type, len(data))
    try:
        shrunk = shrink(data, max_pixels=max_pixels, fit=limit)
    except PhotoError as exc:
        return Picture(
            name, data, content_type, len(data),
            problem=f"The photo is {megabytes(len(data))}, over the limit of "
            f"{megabytes(limit_bytes)}, and this page cannot make it smaller: {exc} "
            f"Send a smaller {FORMATS_TEXT} photo.",
        )  # fmt: skip
    if len(shrunk) > limit:  # a pathological photo that JPEG cannot compress: say so
        return Picture(
            name, data, content_type, len(data),
            problem=f"The photo is {megabytes(len(data))}, over the limit of "
            f"{megabytes(limit_bytes)}, and stays too large even when shrunk.",
        )  # fmt: skip
    return Picture(
        name, shrunk, "image/jpeg", len(data),
        note=f"Shrunk from {megabytes(len(data))} to {megabytes(len(shrunk))} before sending "
        f"(the limit is {megabytes(limit_bytes)}).",
    )  # fmt: skip


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
                raise PhotoError(
                    f"it has {opened.width} x {opened.height} pixels, more than the "
                    f"{max_pixels:,} allowed."
                )
            return ImageOps.exif_transpose(opened).convert("RGB")
    except PhotoError:
        raise
    except (*PREVIEW_ERRORS, Image.DecompressionBombWarning):
        raise PhotoError(f"it is not a {FORMATS_TEXT} photo this page can read.") from None


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
