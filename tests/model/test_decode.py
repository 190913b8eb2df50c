"""The bounded decoder: every accepted mode and format becomes upright RGB; bad bytes get typed errors."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from catdog.model import errors
from catdog.model.decode import decode_image, load_image, sniff, to_rgb
from tests.conftest import encode


@pytest.fixture(scope="module")
def photo(cat_photo) -> Image.Image:
    return Image.open(cat_photo).convert("RGB")


@pytest.mark.parametrize("fmt,params", [
    ("JPEG", {"quality": 90}), ("PNG", {}), ("WEBP", {"quality": 90}), ("GIF", {}), ("BMP", {}),
])
def test_every_accepted_format_decodes_to_rgb(photo, fmt, params):
    image = decode_image(encode(photo, fmt, **params))
    assert image.mode == "RGB"
    assert image.size == photo.size


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "I;16", "I", "1", "F"])
def test_every_mode_becomes_rgb(photo, mode):
    if mode == "PA":
        image = photo.convert("P").convert("PA")
    elif mode in ("I;16", "I", "F"):
        grey = np.asarray(photo.convert("L"), dtype=np.float64)
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        image = Image.fromarray((grey * (257 if mode == "I;16" else 1)).astype(dtype))
        assert image.mode == mode
    else:
        image = photo.convert(mode)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == photo.size
    # wide modes are scaled, not clipped: a mid-grey stays mid-grey
    assert 40 < np.asarray(rgb).mean() < 215


def test_sixteen_bit_png_is_scaled_not_clipped(photo):
    grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    data = encode(Image.fromarray(grey), "PNG")
    rgb = np.asarray(decode_image(data), dtype=np.int16)
    expected = np.asarray(photo.convert("L"), dtype=np.int16)
    assert np.abs(rgb[..., 0] - expected).max() <= 1


def test_transparency_is_flattened_on_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert np.asarray(decode_image(encode(image, "PNG"))).min() == 255


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated = decode_image(encode(photo, "JPEG", exif=exif.tobytes()))
    assert rotated.size == (photo.height, photo.width)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = decode_image(buf.getvalue())
    assert image.getpixel((8, 8))[0] > 200  # red


def test_jpeg_draft_mode_keeps_the_short_side_above_the_target(photo):
    big = photo.resize((photo.width * 4, photo.height * 4))
    image = decode_image(encode(big, "JPEG"), min_side=256)
    assert min(image.size) >= 256 and image.width < big.width


def test_empty_file():
    with pytest.raises(errors.EmptyFile):
        decode_image(b"")


@pytest.mark.parametrize("data,word", [
    (b"%PDF-1.7\n" + b"x" * 100, "PDF"),
    (b"<!DOCTYPE html><html><body>cat</body></html>", "HTML"),
    (b"PK\x03\x04" + b"\0" * 60, "ZIP"),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 60, "executable"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
    (b"just some words about a cat", "text"),
])
def test_non_images_are_named_in_the_message(data, word):
    with pytest.raises(errors.NotAnImage) as info:
        decode_image(data)
    assert word.lower() in info.value.message.lower()
    assert "send a JPEG" in info.value.message


def test_tiff_is_an_unsupported_format(photo):
    with pytest.raises(errors.UnsupportedFormat) as info:
        decode_image(encode(photo, "TIFF"))
    assert "TIFF" in info.value.message


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_jpeg(cat_bytes, fraction):
    with pytest.raises(errors.TruncatedImage):
        decode_image(cat_bytes[: int(len(cat_bytes) * fraction)])


def test_truncated_png(photo):
    data = encode(photo, "PNG")
    with pytest.raises(errors.TruncatedImage):
        decode_image(data[: len(data) // 2])


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_decompression_bomb_is_refused_before_decoding(side):
    with pytest.raises(errors.TooManyPixels) as info:
        decode_image(_png_claiming(side, side), max_pixels=40_000_000)
    assert "limit" in info.value.message


def test_a_real_bomb_of_zeros_is_refused():
    bomb = encode(Image.new("1", (9000, 9000)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(errors.TooManyPixels):
        decode_image(bomb, max_pixels=40_000_000)


def test_pixel_limit_is_configurable(photo):
    with pytest.raises(errors.TooManyPixels):
        decode_image(encode(photo, "PNG"), max_pixels=1000)


def test_zero_size_and_tiny_images():
    assert decode_image(encode(Image.new("RGB", (1, 1)), "PNG")).size == (1, 1)


def test_load_image_accepts_path_bytes_and_pil(cat_photo, cat_bytes, photo):
    assert load_image(cat_photo).size == load_image(cat_bytes).size == load_image(photo).size


def test_sniff_unknown_binary_is_none():
    assert sniff(bytes(range(256))) is None
