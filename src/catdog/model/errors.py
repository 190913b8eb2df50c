"""Typed errors for everything that can go wrong with an input image or a model file.

They are raised where the problem is found (decoding, loading). Each class declares its
stable ``code`` and its HTTP ``status`` once (see :class:`catdog.errors.CatdogError`);
``catdog.api.errors`` turns them into responses.
The CLI maps them to a per-file message. Messages say what was wrong *and* what
to do about it, because they are shown to people.
"""

from __future__ import annotations

from importlib.util import find_spec

from PIL import features

# The base is defined outside catdog.model (settings use it too) and re-exported here.
from catdog.errors import CatdogError


def _formats_text() -> str:
    """The photo formats catdog decodes (catdog.model.decode.ACCEPTED_FORMATS), as people name
    them: HEIC through pillow-heif (a dependency), AVIF where Pillow was built with libavif."""
    names = ["JPEG", "PNG", "WebP", *(["HEIC"] if find_spec("pillow_heif") else []),
             *(["AVIF"] if features.check("avif") else []), "GIF"]
    return f"a {', '.join(names)} or BMP photo"


SUPPORTED_FORMATS_TEXT = _formats_text()


def _megabytes(size: int) -> str:
    """Bytes as decimal megabytes, with enough digits that two different sizes never read alike."""
    return f"{size / 1e6:.3g} MB" if size < 10e6 else f"{size / 1e6:,.1f} MB"


class ModelError(CatdogError):
    """The model file is missing, unreadable or does not follow the model contract."""

    code = "model_error"


class ExplainUnavailable(CatdogError):
    """The served model cannot show where it looked (it has no class-activation-map output)."""

    code = "explain_unavailable"
    status = 422
    when = "/v1/explain on a model that cannot show where it looked (no class activation maps)"


class ImageError(CatdogError):
    """The input cannot be turned into an RGB image (the client's fault, never a bug)."""

    code = "invalid_image"
    status = 400


class EmptyFile(ImageError):
    code = "empty_file"
    when = "the file is 0 bytes"

    def __init__(self, message: str = f"The file is empty (0 bytes); send {SUPPORTED_FORMATS_TEXT}."):
        super().__init__(message)


class UnreadableFile(ImageError):
    """The file could not be read from disk (CLI only: the API never touches the filesystem)."""

    code = "unreadable_file"


class NotAnImage(ImageError):
    code = "not_an_image"
    status = 415
    when = "the content is not an image at all (a PDF or HTML file named .jpg)"

    def __init__(self, message: str | None = None, *, detected: str | None = None):
        if message is None:
            what = f"looks like {detected}" if detected else "is not an image catdog can read"
            message = f"The file {what}; send {SUPPORTED_FORMATS_TEXT}."
        super().__init__(message)


class UnsupportedFormat(ImageError):
    code = "unsupported_format"
    status = 415
    when = "an image format catdog does not take (TIFF, HEIC, ...)"

    def __init__(self, fmt: str):
        super().__init__(
            f"The file is a {fmt} image, which catdog does not accept; send {SUPPORTED_FORMATS_TEXT}."
        )
        self.format = fmt


class TruncatedImage(ImageError):
    code = "truncated_image"
    when = "an image header was recognised but the data is truncated or corrupt"

    def __init__(self, message: str = "The image data is truncated or corrupt; re-export or re-upload the photo."):
        super().__init__(message)


class TooManyPixels(ImageError):
    code = "too_many_pixels"
    status = 422
    when = "the image has more pixels than the limit (a decompression bomb)"

    def __init__(self, width: int | None, height: int | None, limit: int, *, pixels: int | None = None):
        pixels = pixels if pixels is not None else (width or 0) * (height or 0)
        size = f"{width}x{height} = {pixels:,} pixels" if width and height else f"{pixels:,} pixels"
        super().__init__(
            f"The image is {size}, over the limit of {limit:,}; scale it down "
            "(a few megapixels is plenty) and send it again."
        )
        self.width, self.height, self.pixels, self.limit = width, height, pixels, limit


class DecodeTooCostly(ImageError):
    """Within the pixel limit, but decoding would take more memory than one image may use
    (a 40 MP 16-bit or WebP image: tiny on the wire, hundreds of MB decoded)."""

    code = "decode_too_costly"
    status = 422
    when = ("decoding would take more memory than one image may use (a 40 MP 16-bit PNG or WebP: "
            "small on the wire, hundreds of MB decoded)")

    def __init__(self, width: int, height: int, mode: str, cost: int, limit: int):
        super().__init__(
            f"Decoding this {width}x{height} image (Pillow mode {mode}) would take about "
            f"{_megabytes(cost)} of memory, over the limit of {_megabytes(limit)}; send it as an "
            "8-bit JPEG or scale it down (a few megapixels is plenty)."
        )
        self.width, self.height, self.cost, self.limit = width, height, cost, limit


class BatchBudgetExceeded(ImageError):
    """A batch file left undecoded: the files before it used up the batch's decoding budget."""

    code = "batch_budget_exceeded"
    status = 413
    when = "per file, in a batch: the files before it used up the batch's decoding budget"

    def __init__(self, limit: int):
        super().__init__(
            f"This file was not decoded: the files before it in the batch used up its decoding "
            f"budget of {_megabytes(limit)}; send it in another request."
        )
        self.limit = limit


class BatchDeadlineExceeded(ImageError):
    """A batch file left undecoded: the batch ran out of time before reaching it."""

    code = "batch_deadline_exceeded"
    status = 413
    when = "per file, in a batch: the batch reached its time limit before this file"

    def __init__(self, seconds: float):
        super().__init__(
            f"This file was not decoded: the batch reached its time limit of {seconds:g} s before "
            "it; send it in another request."
        )
        self.seconds = seconds


class ImageTooLarge(ImageError):
    """The encoded file is over the byte limit (the API checks this before reading the body)."""

    code = "file_too_large"
    status = 413
    when = ("the request body is over the upload limit (from its Content-Length, or as a chunked "
            "body reaches it)")

    def __init__(self, size: int, limit: int):
        super().__init__(
            f"The file is {_megabytes(size)}, over the limit of {_megabytes(limit)}; "
            "send a smaller or more compressed photo."
        )
        self.size, self.limit = size, limit
