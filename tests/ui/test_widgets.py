"""The page's plain helpers: thumbnails that never stretch, percentages, bars, examples."""

from __future__ import annotations

import pytest
from PIL import Image

from catdog.model.errors import ImageError
from catdog.ui.widgets import (
    PAD_COLOUR,
    THUMBNAIL,
    Picture,
    example_files,
    label_text,
    load_example,
    percent,
    probability_bar,
    thumbnail,
)
from tests.conftest import encode


@pytest.mark.parametrize("size", [(500, 250), (250, 500), (120, 80), (3000, 3000)])
def test_thumbnail_is_200_square_and_keeps_the_aspect_ratio(size):
    width, height = size
    image = Image.new("RGB", size, (200, 30, 30))
    thumb = thumbnail(encode(image, "JPEG"))
    assert thumb.size == (THUMBNAIL, THUMBNAIL)
    # The photo fills one side; the padding fills the rest of the other side.
    bbox = Image.eval(thumb, lambda v: 0 if abs(v - 240) < 12 else 255).convert("L").getbbox()
    shown_w, shown_h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    assert shown_w / shown_h == pytest.approx(width / height, rel=0.05)
    assert max(shown_w, shown_h) == THUMBNAIL


def test_thumbnail_pads_with_the_page_grey():
    thumb = thumbnail(encode(Image.new("RGB", (400, 100), "black"), "PNG"))
    assert thumb.getpixel((100, 2)) == PAD_COLOUR


def test_thumbnail_of_a_photo(cat_bytes):
    assert thumbnail(cat_bytes).size == (THUMBNAIL, THUMBNAIL)


def test_cropped_thumbnail_has_no_padding():
    thumb = thumbnail(encode(Image.new("RGB", (400, 100), "black"), "PNG"), 120, crop=True)
    assert thumb.size == (120, 120)
    assert thumb.getpixel((60, 2)) == (0, 0, 0)


def test_thumbnail_of_a_non_image_raises_the_engines_error():
    with pytest.raises(ImageError, match="PDF"):
        thumbnail(b"%PDF-1.7 ...")


@pytest.mark.parametrize(
    "p, text", [(0.973, "97.3%"), (0.9999, ">99.9%"), (0.00004, "<0.1%"), (0.5, "50.0%")]
)
def test_percent(p, text):
    assert percent(p) == text


def test_label_text():
    assert (label_text("cat"), label_text("dog"), label_text("fox")) == (
        "🐱 Cat",
        "🐶 Dog",
        "🐾 Fox",
    )


def test_probability_bar_shows_both_probabilities_in_proportion():
    bar = probability_bar({"cat": 0.25, "dog": 0.75})
    assert "width:25.00%" in bar and "width:75.00%" in bar
    assert "P(cat) 25.0%" in bar and "P(dog) 75.0%" in bar


def test_probability_bar_escapes_labels():
    assert "<script>" not in probability_bar({"<script>": 1.0})


def test_examples_are_small_real_photos():
    files = example_files()
    assert 2 <= len(files) <= 4
    for path in files:
        assert path.stat().st_size < 40_000
        picture = load_example(path.name)
        assert picture.content_type == "image/jpeg"
        assert thumbnail(picture.data).size == (THUMBNAIL, THUMBNAIL)


def test_picture_key_depends_on_name_and_content():
    a = Picture("a.jpg", b"1", "image/jpeg")
    assert a.key == Picture("a.jpg", b"1", "image/jpeg").key
    assert a.key != Picture("a.jpg", b"2", "image/jpeg").key
    assert a.key != Picture("b.jpg", b"1", "image/jpeg").key
    assert a.upload == ("a.jpg", b"1")
