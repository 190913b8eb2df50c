"""What the page does with a photo before the API sees it: previews, shrinking, refusals."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from catdog.ui.photos import (
    SHRINK_TO,
    PhotoError,
    Picture,
    open_photo,
    prepare,
    shrink,
    thumbnail_uri,
)
from catdog.ui.words import Words
from tests.conftest import encode

MP = 40_000_000
EN = Words("en")


def noise(size: tuple[int, int]) -> Image.Image:
    """A photo that does not compress: big files from small images."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_a_photo_under_the_limit_is_sent_as_it_is(cat_bytes):
    picture = prepare("tom.jpg", cat_bytes, "image/jpeg", limit_bytes=10**7, max_pixels=MP)
    assert picture.data is cat_bytes and picture.content_type == "image/jpeg"
    assert picture.note is None and picture.problem is None
    assert picture.upload == ("tom.jpg", cat_bytes)


def test_a_photo_over_the_limit_is_shrunk_to_a_jpeg_that_fits():
    big = encode(noise((3000, 2000)), "PNG")
    limit = len(big) // 2
    picture = prepare("phone.png", big, "image/png", limit_bytes=limit, max_pixels=MP)
    assert picture.problem is None and picture.content_type == "image/jpeg"
    assert len(picture.data) < limit
    assert max(Image.open(io.BytesIO(picture.data)).size) == SHRINK_TO
    assert EN.say(picture.note).startswith(f"Shrunk from {len(big) / 1e6:.1f} MB to ")
    assert picture.original_bytes == len(big)


def test_shrinking_keeps_the_photo_upright():
    image = Image.new("RGB", (300, 100), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    assert Image.open(io.BytesIO(shrink(out.getvalue(), max_pixels=MP))).size == (100, 300)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_iphone_photos_are_previewed_and_shrunk_like_any_other(cat_bytes, fmt):
    """HEIC/HEIF (pillow-heif) and AVIF (Pillow) open here as they do in the API."""
    photo = encode(Image.open(io.BytesIO(cat_bytes)).convert("RGB"), fmt, quality=90)
    assert decoded(thumbnail_uri(photo, 64, max_pixels=MP)).size[0] == 64
    picture = prepare("IMG_0001.HEIC", photo, "image/heic", limit_bytes=10**7, max_pixels=MP)
    assert picture.problem is None and picture.data is photo  # sent as it is: the API reads it
    assert Image.open(io.BytesIO(shrink(photo, max_pixels=MP))).format == "JPEG"


def test_a_file_over_the_limit_that_is_not_a_photo_is_refused_with_sizes():
    picture = prepare("big.pdf", b"%PDF-1.7" + b"x" * 2000, "application/pdf", limit_bytes=1000,
                      max_pixels=MP)  # fmt: skip
    said = EN.say(picture.problem)
    assert said.startswith("The photo is 2 KB, over the limit of 1 KB")
    assert "cannot make it smaller" in said


def test_too_many_pixels_are_refused_before_decoding():
    huge = encode(Image.new("L", (5000, 5000)), "PNG")  # small file, 25 MP
    with pytest.raises(PhotoError) as raised:
        open_photo(huge, max_pixels=10_000_000, side=64)
    assert "5000 x 5000 pixels" in EN.say(raised.value.reason)


@pytest.mark.parametrize("data", [b"", b"%PDF-1.7 not a photo", b"\xff\xd8\xff\xe0 truncated"])
def test_unreadable_files_are_a_photo_error(data):
    with pytest.raises(PhotoError) as raised:
        thumbnail_uri(data, 64, max_pixels=MP)
    assert EN.say(raised.value.reason) == "it is not a photo this page can read."


@pytest.mark.parametrize("size", [(500, 250), (250, 500), (3000, 3000)])
def test_thumbnails_fit_the_square_and_keep_the_aspect_ratio(size):
    thumb = decoded(thumbnail_uri(encode(Image.new("RGB", size), "JPEG"), 128, max_pixels=MP))
    assert max(thumb.size) == 128
    assert thumb.width / thumb.height == pytest.approx(size[0] / size[1], rel=0.02)


def test_cropped_thumbnails_fill_the_square(cat_bytes):
    assert decoded(thumbnail_uri(cat_bytes, 100, max_pixels=MP, crop=True)).size == (100, 100)


def test_picture_key_depends_on_name_and_content():
    a = Picture("a.jpg", b"1", "image/jpeg", 1)
    assert a.key == Picture("a.jpg", b"1", "image/jpeg", 1).key
    assert a.key != Picture("a.jpg", b"2", "image/jpeg", 1).key
    assert a.key != Picture("b.jpg", b"1", "image/jpeg", 1).key


def test_the_web_ui_never_loads_the_model_runtime():
    """The page's modules import neither ONNX Runtime nor catdog.model (a UI-only container)."""
    code = (
        "import sys, catdog.ui.widgets, catdog.ui.photos, catdog.ui.markup, catdog.ui.export, catdog.config\n"
        "print(sorted(m for m in sys.modules if m.startswith(('onnxruntime', 'catdog.model'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
