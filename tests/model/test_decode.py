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


@pytest.mark.parametrize("scale", [2, 4])
def test_draft_decoding_gives_the_model_the_same_tensor_within_tolerance(photo, scale):
    """DCT-domain downscaling (draft + whole-factor reduce) against a full decode, through the
    bundled model's own preprocessing: the tensors differ by resampling noise only (mean
    |diff| < 0.03 and 99th percentile < 0.15 in normalised units, i.e. about 1.7 and 9 grey
    levels of 255), and the model gives the same answer within 0.02 of probability."""
    from catdog.model.engine import Classifier
    from catdog.model.preprocess import preprocess

    clf = Classifier.load(threads=1)
    spec = clf.recipe.input
    big = photo.resize((photo.width * scale, photo.height * scale), Image.Resampling.BICUBIC)
    data = encode(big, "JPEG", quality=95)
    drafted = decode_image(data, min_side=spec.resize)
    full = decode_image(data)
    assert min(drafted.size) < min(full.size)  # the draft path was taken
    a, b = preprocess(drafted, spec), preprocess(full, spec)
    diff = np.abs(a - b)
    assert diff.mean() < 0.03 and np.percentile(diff, 99) < 0.15
    pa, pb = clf.probabilities(a[None])[0], clf.probabilities(b[None])[0]
    assert clf.decide(pa).label == clf.decide(pb).label
    assert np.abs(pa - pb).max() < 0.02


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


# -- bounded decoding: memory and time, not only pixels -------------------------------------------


def _png(image: Image.Image, **params) -> bytes:
    return encode(image, "PNG", compress_level=1, **params)  # fast: these images are big


def _normalised(tensor: np.ndarray, spec) -> np.ndarray:
    """A model input in normalised units, also for a model that takes uint8 pixels and
    normalises them in its graph (so the tolerance below means the same for both)."""
    if spec.dtype != "uint8":
        return tensor.astype(np.float64)
    shape = (3, 1, 1) if spec.layout == "NCHW" else (1, 1, 3)
    mean, std = np.reshape(spec.mean, shape), np.reshape(spec.std, shape)
    return (tensor.astype(np.float64) / spec.scale - mean) / std


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16"])
def test_reduced_decode_changes_what_the_model_sees_within_a_stated_tolerance(classifier, photo, mode):
    """Big non-JPEG photos are reduced by a whole factor while decoding (never below twice the
    resize side) before preprocessing resizes them. Tolerance, against decoding at full size:
    mean |difference| of the input tensor < 0.05 (normalised units: ~3 grey levels) and the
    calibrated probabilities within 0.01."""
    from catdog.model.preprocess import preprocess

    big = photo.resize((photo.width * 9, photo.height * 9), Image.Resampling.BICUBIC)
    if mode == "I;16":
        source = Image.fromarray(np.asarray(big.convert("L"), dtype=np.uint16) * 257)
    else:
        source = big.convert(mode)
    spec = classifier.recipe.input
    full = preprocess(to_rgb(source), spec)
    reduced = classifier.prepare(_png(source))
    assert np.abs(_normalised(full, spec) - _normalised(reduced, spec)).mean() < 0.05
    probs = classifier.probabilities(np.stack([full, reduced]))
    assert np.abs(probs[0] - probs[1]).max() < 0.01
    assert classifier.predict(_png(source)).label == "cat"


def test_reduction_keeps_the_short_side_at_least_twice_the_resize_side(photo):
    big = photo.resize((photo.width * 6, photo.height * 6))
    image = decode_image(_png(big.convert("RGBA")), min_side=100)
    assert min(image.size) >= 200 and min(image.size) < 400
    assert image.mode == "RGB"


def test_banded_conversion_equals_converting_at_once(photo):
    """Band by band, a palette image with transparency and a 16-bit one come out as whole-image
    conversion would (bands are whole multiples of the reduction factor)."""
    from catdog.model.decode import reduce_to_rgb

    palette = photo.resize((1500, 1100)).convert("P")
    palette.info["transparency"] = 0
    whole = Image.alpha_composite(Image.new("RGBA", palette.size, "white"), palette.convert("RGBA")).convert("RGB")
    for factor in (1, 3):
        expected = whole.reduce(factor) if factor > 1 else whole
        np.testing.assert_array_equal(np.asarray(reduce_to_rgb(palette, factor)), np.asarray(expected))
    wide = Image.fromarray(np.asarray(photo.resize((1500, 1100)).convert("L"), dtype=np.uint16) * 257)
    np.testing.assert_array_equal(np.asarray(reduce_to_rgb(wide, 1))[..., 0], np.asarray(wide) >> 8)


def test_exif_orientation_survives_reduction(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    big = photo.resize((photo.width * 4, photo.height * 4))
    image = decode_image(encode(big, "JPEG", exif=exif.tobytes()), min_side=100)
    assert image.height > image.width  # the landscape photo is shown upright, portrait


@pytest.mark.parametrize("build", [
    lambda side: _png(Image.new("I;16", (side, side), 1000)),
    lambda side: _png(Image.new("RGBA", (side, side), (1, 2, 3, 4))),
    lambda side: encode(Image.new("RGB", (side, side)), "WEBP", quality=10),
], ids=["16-bit PNG", "RGBA PNG", "WebP"])
def test_what_would_cost_too_much_memory_is_refused_from_the_header(build):
    """The cost is estimated from the header (no pixel decoded) and refused with its own code."""
    data = build(3000)
    with pytest.raises(errors.DecodeTooCostly) as caught:
        decode_image(data, min_side=324, max_decode_bytes=20_000_000)
    assert caught.value.code == "decode_too_costly" and "3000x3000" in caught.value.message
    assert decode_image(data, min_side=324).mode == "RGB"  # the default budget takes it


def test_the_default_budget_takes_a_40_mp_rgba_png_and_refuses_a_40_mp_webp():
    from catdog.model.decode import DEFAULT_MAX_DECODE_BYTES, decode_cost

    side = 6324
    rgba = Image.new("RGBA", (side, side))
    rgba.format = "PNG"
    webp = Image.new("RGB", (side, side))
    webp.format = "WEBP"
    assert decode_cost(rgba, 324) < DEFAULT_MAX_DECODE_BYTES < decode_cost(webp, 324)


def test_a_batch_budget_refuses_files_past_its_bytes_or_its_deadline(photo):
    from catdog.model.decode import BatchBudget, estimate_cost

    data = _png(photo.resize((2000, 1500)).convert("RGBA"))
    one = estimate_cost(data, min_side=324)
    assert one > 2000 * 1500 * 4
    budget = BatchBudget(max_bytes=int(one * 2.5), seconds=60)
    budget.charge(data, min_side=324)
    budget.charge(data, min_side=324)
    with pytest.raises(errors.BatchBudgetExceeded):
        budget.charge(data, min_side=324)
    budget.charge(b"not an image", min_side=324)  # decoding refuses it itself: costs nothing
    late = BatchBudget(max_bytes=10**12, seconds=0.0)
    late.started -= 1
    with pytest.raises(errors.BatchDeadlineExceeded):
        late.charge(data, min_side=324)


def test_decodes_running_at_once_share_one_memory_budget():
    """Threads decoding big images at once wait for each other; small ones never wait."""
    import threading

    from catdog.model.decode import DecodeGate

    gate = DecodeGate()
    inside, peak, lock = [0], [0], threading.Lock()

    def decode(cost: int) -> None:
        with gate.hold(cost, limit=100):
            with lock:
                inside[0] += cost
                peak[0] = max(peak[0], inside[0])
            threading.Event().wait(0.05)
            with lock:
                inside[0] -= cost

    threads = [threading.Thread(target=decode, args=(cost,)) for cost in (80, 80, 80, 150, 10, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert peak[0] <= 150  # never two 80s together; a lone 150 still runs
