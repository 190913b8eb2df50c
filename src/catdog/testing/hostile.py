"""The hostile-input corpus: every way an upload can be wrong, generated at run time.

Nothing here is a committed binary. Each case is built from one real photo (and a seed
for the fuzzed ones), so the corpus is reviewable as code and the same on every run.
A :class:`Case` is one HTTP request (method, path, Content-Type, body, extra headers)
plus the answers the API may give it:

* one exact ``(status, code)`` for every case whose outcome is decided by the contract
  (a PDF named ``cat.jpg`` is ``415 not_an_image``, whatever its name says);
* ``OK`` (a prediction) for valid-but-odd images: CMYK, 16-bit, animated, 1x1;
* ``ANY_IMAGE_ANSWER`` only for flipped header bytes, whose effect depends on which
  byte they hit (a flipped byte inside a JPEG comment changes nothing).

Used by catdog's ``tests/reliability/test_hostile_inputs.py`` (Flask test client and a real
gunicorn server) and ``bench/stress.py`` (the invalid share of its mix). Requests that
only a raw socket can send (an enormous HTTP header, a body dribbled slowly) are built
by the ``raw_*`` functions at the end.
"""

from __future__ import annotations

import functools
import gzip
import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace

from PIL import Image

#: One acceptable answer: (HTTP status, error code), the code None for a prediction.
Answer = tuple[int, "str | None"]

OK: frozenset[Answer] = frozenset({(200, None)})


def error(status: int, code: str) -> frozenset[Answer]:
    return frozenset({(status, code)})


#: Every way the API may refuse an image for its content.
REJECTED_IMAGE: frozenset[Answer] = frozenset({
    (400, "truncated_image"), (415, "not_an_image"), (415, "unsupported_format"), (422, "too_many_pixels"),
})
#: A form body that cannot be parsed (cut short, wrong boundary, non-UTF-8 part headers).
MALFORMED: frozenset[Answer] = frozenset({(400, "malformed_form")})
#: A body type prediction endpoints do not read (refused before parsing).
UNSUPPORTED_BODY: frozenset[Answer] = frozenset({(415, "unsupported_media_type")})
#: A mutated image may still decode (the mutation hit a byte nothing reads) or be refused.
ANY_IMAGE_ANSWER: frozenset[Answer] = OK | REJECTED_IMAGE

BOUNDARY = "catdog-hostile-0b1d7c2e9f"
PATH = "/v1/predict"
BATCH_PATH = "/v1/predict/batch"

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Case:
    """One hostile request and the answers the API may give it."""

    name: str
    body: bytes
    content_type: str | None
    expected: frozenset[Answer]
    #: The label a 200 must carry when the pixels are the real photo's (else None: not checked).
    label: str | None = None
    method: str = "POST"
    path: str = PATH
    headers: tuple[tuple[str, str], ...] = ()
    #: The uploaded file's bytes, for cases that upload one file (the CLI gets the same bytes).
    file: bytes | None = None

    @property
    def valid(self) -> bool:
        """True when the only right answer is a prediction."""
        return self.expected == OK

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return headers

    def __repr__(self) -> str:  # keeps pytest's failure output free of megabytes of body
        return f"Case({self.name!r}, {len(self.body)} bytes, expected={sorted(self.expected, key=str)})"


@dataclass(frozen=True)
class Part:
    """One part of a multipart body, as raw bytes so names can be anything (even non-UTF-8)."""

    field: bytes
    data: bytes
    filename: bytes | None = b"photo.jpg"
    content_type: bytes | None = b"image/jpeg"
    extra_headers: bytes = b""


def multipart(*parts: Part, boundary: str = BOUNDARY) -> tuple[bytes, str]:
    """Encode parts as ``multipart/form-data``; returns (body, Content-Type)."""
    marker = boundary.encode()
    chunks = []
    for part in parts:
        if b"--" + marker in part.data:  # not an assert: python -O would drop it (bandit B101)
            raise ValueError("the boundary must not occur in a part")
        disposition = b'form-data; name="' + part.field + b'"'
        if part.filename is not None:
            disposition += b'; filename="' + part.filename + b'"'
        head = b"Content-Disposition: " + disposition + b"\r\n"
        if part.content_type is not None:
            head += b"Content-Type: " + part.content_type + b"\r\n"
        chunks.append(b"--" + marker + b"\r\n" + head + part.extra_headers + b"\r\n" + part.data + b"\r\n")
    return b"".join(chunks) + b"--" + marker + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def upload(name: str, data: bytes, expected: frozenset[Answer], *, label: str | None = None,
           filename: bytes = b"cat.jpg", field: bytes = b"image", path: str = PATH) -> Case:
    """A case that sends ``data`` as one multipart file, named ``cat.jpg`` unless told otherwise."""
    body, content_type = multipart(Part(field, data, filename))
    return Case(name, body, content_type, expected, label=label, path=path, file=data)


def raw(name: str, data: bytes, content_type: str | None, expected: frozenset[Answer], *,
        label: str | None = None) -> Case:
    """A case that sends ``data`` as the whole request body."""
    return Case(name, data, content_type, expected, label=label)


# -- image builders ---------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, scanlines: bytes, *, bit_depth: int = 8, color_type: int = 0,
        extra_chunks: bytes = b"") -> bytes:
    """A PNG written chunk by chunk, so its header can claim anything its data does not hold."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + extra_chunks
            + _chunk(b"IDAT", zlib.compress(scanlines, 9)) + _chunk(b"IEND", b""))


def png_claiming(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header claims ``width`` x ``height``: a decompression bomb's shape."""
    return png(width, height, b"\x00\x00")


def bilevel_png(side: int) -> bytes:
    """A real, fully decodable 1-bit ``side`` x ``side`` PNG: megapixels in a few kilobytes."""
    row = b"\x00" + bytes((side + 7) // 8)
    return png(side, side, row * side, bit_depth=1)


def jpeg_claiming(photo: bytes, width: int, height: int) -> bytes:
    """The photo with its frame header (SOF) rewritten to claim ``width`` x ``height``."""
    data = bytearray(photo)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            data[at + 5:at + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise ValueError("no SOF marker in the photo")


def animated_gif(image: Image.Image) -> bytes:
    frames = [image.convert("P"), image.rotate(90).convert("P"), image.rotate(180).convert("P")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        archive.writestr("Evil.class", b"\xca\xfe\xba\xbe" + bytes(32))
    return buffer.getvalue()


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
       b'<script>alert(document.cookie)</script><circle cx="32" cy="32" r="30"/></svg>')
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script><img src=x onerror=alert(2)></body></html>"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>\nendobj\n%%EOF\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(240)
WINDOWS_EXE = b"MZ\x90\x00\x03" + bytes(59) + b"PE\x00\x00" + bytes(200)
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)


# -- the corpus, by theme ---------------------------------------------------------------------


def _missing_and_empty(photo: bytes) -> list[Case]:
    text_only, text_type = multipart(Part(b"note", b"hello", None, None))
    image_as_text, _ = multipart(Part(b"image", photo[:200], None, None))
    no_parts = f"--{BOUNDARY}--\r\n".encode()
    multipart_type = f"multipart/form-data; boundary={BOUNDARY}"
    return [
        raw("empty body", b"", None, error(400, "missing_field")),
        raw("empty raw image body", b"", "image/jpeg", error(400, "empty_file")),
        upload("empty file part", b"", error(400, "empty_file")),
        raw("multipart without parts", no_parts, multipart_type, error(400, "missing_field")),
        raw("only a text field", text_only, text_type, error(400, "missing_field")),
        raw("image sent as a text field", image_as_text, text_type, error(400, "missing_field")),
        upload("wrong field name 'file'", photo, error(400, "missing_field"), field=b"file"),
        upload("wrong field name 'images'", photo, error(400, "missing_field"), field=b"images"),
        upload("non-UTF-8 field name", photo, MALFORMED, field=b"\xff\xfeim\x80ge"),
    ]


def _not_images() -> list[Case]:
    not_image = error(415, "not_an_image")
    return [
        upload("plain text named .jpg", b"This is not a cat, it is a text file.\n", not_image),
        upload("HTML named .jpg", HTML, not_image),
        upload("PDF named .jpg", PDF, not_image),
        upload("ZIP named .jpg", zip_archive(), not_image),
        upload("ELF executable named .jpg", ELF, not_image),
        upload("Windows executable named .jpg", WINDOWS_EXE, not_image),
        upload("gzip named .jpg", gzip.compress(b"cat " * 1000), not_image),
        upload("JSON named .jpg", b'{"label": "cat", "confidence": 1.0}', not_image),
        upload("SVG with a script", SVG, not_image, filename=b"cat.svg"),
        upload("single NUL byte", b"\x00", not_image),
        upload("TIFF image", encode(Image.new("RGB", (32, 32), "gray"), "TIFF"), error(415, "unsupported_format")),
    ]


def claiming(data: bytes, width: int, height: int) -> bytes:
    """A HEIC or AVIF file whose ``ispe`` boxes (the image's size in its header) claim another size."""
    out, start = bytearray(data), 0
    while (at := out.find(b"ispe", start)) >= 0:
        out[at + 8 : at + 16] = struct.pack(">II", width, height)  # after the version and flags
        start = at + 4
    return bytes(out)


def _phone_formats(image: Image.Image) -> list[Case]:
    """HEIC/HEIF (pillow-heif) and AVIF (Pillow): real photos are answered; cut, lying or
    oversized headers get the same errors, under the same budgets, as every other format."""
    from catdog.model.decode import ACCEPTED_FORMATS  # the formats this install decodes

    cases = []
    photo = image.resize((256, 192))
    for fmt, ext in (("HEIF", "heic"), ("AVIF", "avif")):
        if fmt not in ACCEPTED_FORMATS:
            continue
        data = encode(photo, fmt, quality=90)
        name = f"{fmt} photo"
        cases += [
            upload(name, data, OK, label="cat", filename=f"cat.{ext}".encode()),
            upload(f"{name} cut to its header", data[:40], error(400, "truncated_image")),
            upload(f"{name} cut in half", data[: len(data) // 2], error(400, "truncated_image")),
            # libavif refuses such a header itself, before Pillow sees a size: a damaged file.
            upload(f"{name} claiming 50000x50000", claiming(data, 50_000, 50_000),
                   error(422, "too_many_pixels") | error(400, "truncated_image")),
            upload(f"{name} claiming 6200x6200 (decode memory over budget)", claiming(data, 6200, 6200),
                   error(422, "decode_too_costly")),
        ]
    if "HEIF" in ACCEPTED_FORMATS:
        cases.append(upload("HEIC header only", HEIC, error(400, "truncated_image")))
    else:
        cases.append(upload("HEIC header", HEIC, error(415, "unsupported_format")))
    return cases


def _truncations(jpeg: bytes, png_photo: bytes) -> list[Case]:
    """Each format cut at 12 offsets: inside the signature (not recognisable), else truncated."""
    cases = []
    for fmt, data, signature, early in (
        ("JPEG", jpeg, JPEG_SIGNATURE, (1, 2, 3, 4, 11, 64, 300, 1000)),
        ("PNG", png_photo, PNG_SIGNATURE, (1, 4, 8, 16, 33, 100, 1000, 5000)),
    ):
        n = len(data)
        for offset in (*early, n // 4, n // 2, 3 * n // 4, n - 1000):
            expected = (error(415, "not_an_image") if offset < len(signature)
                        else error(400, "truncated_image"))
            cases.append(upload(f"{fmt} truncated at {offset} of {n}", data[:offset], expected))
    return cases


def _flipped_headers(jpeg: bytes, png_photo: bytes) -> list[Case]:
    """One byte of the first 64 inverted: signatures, lengths, dimensions, CRCs, markers."""
    cases = []
    for fmt, data, positions in (("JPEG", jpeg, (0, 1, 2, 3, 5, 12, 21, 24, 40, 63)),
                                 ("PNG", png_photo, (0, 1, 7, 9, 12, 17, 20, 29, 33, 40, 63))):
        for position in positions:
            mutated = bytearray(data)
            mutated[position] ^= 0xFF
            cases.append(upload(f"{fmt} byte {position} flipped", bytes(mutated), ANY_IMAGE_ANSWER))
    return cases


def _odd_but_valid(image: Image.Image) -> list[Case]:
    """Valid images in unusual shapes and modes: each must get a prediction."""
    pixel = Image.new("RGB", (1, 1), (120, 90, 60))
    return [
        upload("1x1 PNG", encode(pixel, "PNG"), OK),
        upload("1x1 JPEG", encode(pixel, "JPEG"), OK),
        upload("1x1 GIF", encode(pixel.convert("P"), "GIF"), OK),
        upload("1x1 transparent PNG", encode(Image.new("RGBA", (1, 1)), "PNG"), OK),
        upload("1x5000 sliver PNG", encode(Image.new("L", (1, 5000), 128), "PNG"), OK),
        upload("5000x1 sliver PNG", encode(Image.new("L", (5000, 1), 128), "PNG"), OK),
        upload("animated GIF", animated_gif(image), OK),
        upload("CMYK JPEG", encode(image.convert("CMYK"), "JPEG", quality=90), OK),
        upload("16-bit grayscale PNG", encode(image.convert("I;16"), "PNG"), OK),
        upload("palette PNG with transparency", encode(image.convert("P"), "PNG", transparency=0), OK),
        upload("progressive JPEG", encode(image, "JPEG", progressive=True), OK, label="cat"),
        upload("WebP", encode(image, "WEBP"), OK, label="cat"),
        upload("BMP", encode(image, "BMP"), OK, label="cat"),
    ]


def _zero_size_and_bombs(jpeg: bytes) -> list[Case]:
    text_bomb = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(8 << 20), 9))
    return [
        # Zero is not a legal width or height in any of these formats: a damaged header.
        upload("PNG claiming 0x0", png_claiming(0, 0), error(400, "truncated_image")),
        upload("PNG claiming 0x10", png_claiming(0, 10), error(400, "truncated_image")),
        upload("GIF claiming 0x0",
               b"GIF89a\x00\x00\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00;",
               error(400, "truncated_image")),
        upload("PNG claiming 50000x50000", png_claiming(50_000, 50_000), error(422, "too_many_pixels")),
        upload("PNG claiming 8000x8000 (under Pillow's own limit)", png_claiming(8000, 8000),
               error(422, "too_many_pixels")),
        upload("real 9000x9000 1-bit PNG", bilevel_png(9000), error(422, "too_many_pixels")),
        upload("JPEG claiming 65000x65000", jpeg_claiming(jpeg, 65_000, 65_000), error(422, "too_many_pixels")),
        upload("PNG with an 8 MB zTXt bomb", png(1, 1, b"\x00\x00", extra_chunks=text_bomb),
               error(400, "truncated_image")),
    ]


#: Just under the 40 MP pixel limit: what issue 17's decoded-size bombs used.
BOMB_SIDE = 6324


@functools.cache
def uniform_png(side: int, color_type: int, bit_depth: int = 8, extra_chunks: bytes = b"") -> bytes:
    """A real, fully decodable ``side`` x ``side`` PNG of one colour, compressed row by row
    (tens of KB on the wire, never the whole image in memory while building it)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = b"\x00" + bytes(side * channels * bit_depth // 8)
    if color_type == 6:
        row = b"\x00" + b"\x10\x20\x30\x80" * side
    packer = zlib.compressobj(6)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, color_type, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + extra_chunks + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))


@functools.cache
def flat_png(width: int, height: int) -> bytes:
    """A real ``width`` x ``height`` 8-bit RGB PNG of one colour (a scanned page, a flat render)."""
    row = b"\x00" + b"\xe0\xe0\xe0" * width
    packer = zlib.compressobj(6)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def palette_bomb(side: int = BOMB_SIDE) -> bytes:
    """A palette PNG with transparency: tens of KB on the wire, ~0.8 GB when converted at full size."""
    return uniform_png(side, 3, extra_chunks=_chunk(b"PLTE", b"\x10\x20\x30" * 2) + _chunk(b"tRNS", b"\x00"))


@functools.cache
def webp_bomb(side: int = BOMB_SIDE) -> bytes:
    return encode(Image.new("RGB", (side, side), (16, 32, 48)), "WEBP", lossless=True, quality=0, method=0)


def _decoded_size_bombs() -> list[Case]:
    """Issue 17, finding 1: under the pixel limit, tiny on the wire, huge once decoded. Each is
    decoded band by band into a reduced image (a prediction) or, when even its one full-size
    decode would cost too much, refused from its header."""
    return [
        upload("16-bit grayscale PNG bomb (6324x6324, ~80 KB)", uniform_png(BOMB_SIDE, 0, 16), OK),
        upload("palette PNG bomb with transparency (6324x6324, ~40 KB)", palette_bomb(), OK),
        upload("RGBA PNG bomb (6324x6324)", uniform_png(BOMB_SIDE, 6), OK),
        upload("lossless WebP bomb (6324x6324, 38 bytes)", webp_bomb(), error(422, "decode_too_costly")),
    ]


EXPLAIN_OVERLAY_PATH = "/v1/explain?overlay=png"


def _every_endpoint_alike() -> list[Case]:
    """Issue 28: the same photo gets the same accept or refuse on every endpoint. A flat
    7300x5470 PNG was 200 on /v1/predict and 422 on /v1/explain (whose overlay decoded it a
    second time, at a larger size); the decoded-size bombs cost explain 3-8 s of CPU each."""
    flat = flat_png(7300, 5470)
    cases = [upload("flat 7300x5470 RGB PNG", flat, OK),
             replace(upload("flat 7300x5470 RGB PNG to explain with an overlay", flat, OK,
                            path=EXPLAIN_OVERLAY_PATH), file=None)]
    for bomb in _decoded_size_bombs():
        cases.append(replace(bomb, name=f"{bomb.name} to explain with an overlay", path=EXPLAIN_OVERLAY_PATH,
                             file=None))
    return cases


def _polyglots_and_names(jpeg: bytes, png_photo: bytes) -> list[Case]:
    archive = zip_archive()
    gif = encode(Image.new("P", (16, 16)), "GIF")
    junk_header = b"X-Junk: " + b"A" * 200_000 + b"\r\n"
    body, content_type = multipart(Part(b"image", jpeg, b"cat.jpg", extra_headers=junk_header))
    return [
        upload("JPEG with a ZIP appended", jpeg + archive, OK, label="cat"),
        upload("JPEG with HTML appended", jpeg + HTML, OK, label="cat"),
        upload("GIFAR (GIF with a JAR appended)", gif + archive, OK),
        upload("ZIP with a JPEG appended", archive + jpeg, error(415, "not_an_image")),
        upload("HTML with a JPEG appended", HTML + jpeg, error(415, "not_an_image")),
        upload("path traversal file name", jpeg, OK, label="cat", filename=b"../../etc/passwd.jpg"),
        upload("absolute Windows path file name", jpeg, OK, label="cat", filename=b"C:\\Windows\\win.ini.jpg"),
        upload("non-UTF-8 file name", jpeg, MALFORMED, filename=b"\xff\xfe\x80\x81cat\xc3(.jpg"),
        upload("NUL byte in the file name", jpeg, OK, label="cat", filename=b"cat.jpg\x00.exe"),
        upload("4 KB file name", jpeg, OK, label="cat", filename=b"c" * 4096 + b".jpg"),
        upload("PNG named .jpg", png_photo, OK, label="cat"),
        raw("enormous multipart part header (200 KB)", body, content_type, OK, label="cat"),
    ]


def _content_types(jpeg: bytes, png_photo: bytes, form_flood_bytes: int) -> list[Case]:
    multipart_type = f"multipart/form-data; boundary={BOUNDARY}"
    form, _ = multipart(Part(b"image", jpeg))
    return [
        raw("JPEG sent as application/json", jpeg, "application/json", UNSUPPORTED_BODY),
        raw("JPEG sent as text/plain", jpeg, "text/plain", UNSUPPORTED_BODY),
        raw("JPEG with no Content-Type", jpeg, None, UNSUPPORTED_BODY),
        raw("PDF sent as image/png", PDF, "image/png", error(415, "not_an_image")),
        raw("SVG sent as image/svg+xml", SVG, "image/svg+xml", error(415, "not_an_image")),
        raw("PNG sent as image/jpeg", png_photo, "image/jpeg", OK, label="cat"),
        raw("JPEG sent as image/gif", jpeg, "image/gif", OK, label="cat"),
        raw("multipart without a boundary", form, "multipart/form-data", MALFORMED),
        raw("multipart with the wrong boundary", form, "multipart/form-data; boundary=other", MALFORMED),
        raw("multipart body without its closing boundary", form[: -len(BOUNDARY) - 6], multipart_type, MALFORMED),
        raw("form-urlencoded image", b"image=" + jpeg[:300].hex().encode(), "application/x-www-form-urlencoded",
            UNSUPPORTED_BODY),
        # Issue 17, finding 4: 4.9 M empty fields cost seconds and 400 MB to parse; refused unparsed.
        raw("form-urlencoded flood (millions of empty fields)", b"a&" * (form_flood_bytes // 2),
            "application/x-www-form-urlencoded", UNSUPPORTED_BODY),
        Case("JSON body to the batch endpoint", b'{"images": ["aGVsbG8="]}', "application/json",
             UNSUPPORTED_BODY, path=BATCH_PATH),
        Case("raw image body to the batch endpoint", jpeg, "image/jpeg", UNSUPPORTED_BODY, path=BATCH_PATH),
    ]


def _requests(jpeg: bytes, upload_limit: int | None, max_batch: int) -> list[Case]:
    """Shape of the request itself: routes, methods, batch size, part count, body size."""
    many_parts, many_type = multipart(*(Part(b"f%d" % i, b"x", None, None) for i in range(1500)))
    too_many, batch_type = multipart(*(Part(b"images", jpeg[:64], b"%d.jpg" % i) for i in range(max_batch + 1)))
    mixed, _ = multipart(Part(b"images", jpeg), Part(b"images", PDF), Part(b"images", b""),
                         Part(b"images", png_claiming(50_000, 50_000)))
    cases = [
        Case("GET on the predict endpoint", b"", None, error(405, "method_not_allowed"), method="GET"),
        Case("DELETE on the predict endpoint", b"", None, error(405, "method_not_allowed"), method="DELETE"),
        Case("POST to an unknown path", jpeg, "image/jpeg", error(404, "not_found"), path="/v9/predict"),
        Case("POST to a path with traversal", jpeg, "image/jpeg", error(404, "not_found"),
             path="/v1/predict/../../etc/passwd"),
        raw("1500 form parts", many_parts, many_type, error(413, "file_too_large")),
        Case(f"batch of {max_batch + 1} files", too_many, batch_type, error(400, "too_many_files"), path=BATCH_PATH),
        Case("batch mixing a photo, a PDF, an empty file and a bomb", mixed, batch_type, OK, path=BATCH_PATH),
        Case("batch with the single-file field name", *multipart(Part(b"image", jpeg)),
             error(400, "missing_field"), path=BATCH_PATH),
    ]
    if upload_limit:
        padding = bytes(upload_limit + 1 - len(jpeg))  # JPEG decoders ignore what follows the image
        cases += [
            upload("multipart body over the upload limit", jpeg + padding, error(413, "file_too_large")),
            raw("raw body over the upload limit", jpeg + padding, "image/jpeg", error(413, "file_too_large")),
        ]
    return cases


def _fuzzed(seed: int) -> list[Case]:
    """Seeded random bytes: alone (never an image), or behind a real format's signature."""
    rng = random.Random(seed)  # nosec B311 - reproducible fuzzing, not secrecy
    cases = [upload(f"random {n} bytes (seed {seed})", rng.randbytes(n), error(415, "not_an_image"))
             for n in (3, 17, 255, 1024, 4096, 65_536)]
    for fmt, magic in (("JPEG", JPEG_SIGNATURE + b"\xe0"), ("PNG", PNG_SIGNATURE), ("GIF", b"GIF89a"),
                       ("WebP", b"RIFF\x00\x10\x00\x00WEBPVP8 "), ("BMP", b"BM")):
        for n in (16, 2048):
            cases.append(upload(f"{fmt} signature + {n} random bytes (seed {seed})",
                                magic + rng.randbytes(n), REJECTED_IMAGE))
    return cases


def corpus(photo: bytes, *, seed: int = 0, upload_limit: int | None = None, max_batch: int = 32) -> list[Case]:
    """Every case, built from ``photo`` (a real cat JPEG: valid cases must come back "cat").

    ``upload_limit`` (bytes) adds the over-the-limit bodies, which are that large; leave it
    out where sending megabytes per case is not wanted.
    """
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    png_photo = encode(image, "PNG")
    cases = [
        *_missing_and_empty(photo),
        *_not_images(),
        *_phone_formats(image),
        *_truncations(photo, png_photo),
        *_flipped_headers(photo, png_photo),
        *_odd_but_valid(image),
        *_zero_size_and_bombs(photo),
        *_decoded_size_bombs(),
        *_every_endpoint_alike(),
        *_polyglots_and_names(photo, png_photo),
        *_content_types(photo, png_photo, form_flood_bytes=int(0.95 * (upload_limit or 1_000_000))),
        *_requests(photo, upload_limit, max_batch),
        *_fuzzed(seed),
    ]
    names = [case.name for case in cases]
    if len(names) != len(set(names)):
        raise ValueError("case names must be unique")
    return cases


# -- requests only a raw socket can send ------------------------------------------------------


def raw_request(method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """An HTTP/1.1 request as bytes, exactly as given (no client library normalising it)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers),
             "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def raw_protocol_cases() -> dict[str, bytes]:
    """Malformed HTTP that the server's parser (gunicorn) must refuse with a 4xx before the app runs."""
    return {
        "enormous header (64 KB)": raw_request("GET", "/healthz", [("X-Big", "x" * 65_536)]),
        "200 header fields": raw_request("GET", "/healthz", [(f"X-H{i}", "1") for i in range(200)]),
        "8 KB request line": raw_request("GET", "/healthz?" + "a" * 8192, []),
        "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",
        "header without a colon": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Broken\r\n\r\n",
        "negative Content-Length": raw_request("POST", PATH, [("Content-Length", "-1")]),
        "two different Content-Lengths": raw_request("POST", PATH, [("Content-Length", "5"), ("Content-Length", "7")],
                                                     b"12345"),
    }


# -- issue 28: what only a raw socket or a whole request can send ------------------------------

#: Connections that send nothing at all (issue 28: 300 stopped the service for 20 s and more).
SILENT_CONNECTIONS = 300
V2_INFER_PATH = "/v2/models/catdog/infer"


def pipelined(photo: bytes) -> bytes:
    """Two requests in one write, the second sent before the first is answered (HTTP/1.1
    pipelining): a photo to predict, then a health check. Both must be answered in order,
    or the connection closed after the first answer."""
    first = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
             f"Content-Length: {len(photo)}\r\n\r\n").encode("latin-1") + photo
    return first + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def v2_bomb_batch(count: int = 32) -> bytes:
    """An Open Inference Protocol request of ``count`` palette bombs (issue 28: /v2 decoded for
    18 s before answering 413; the request must be refused from the headers, before decoding)."""
    import base64
    import json

    data = [base64.b64encode(palette_bomb()).decode("ascii")] * count
    return json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [count], "data": data}]}).encode()
