"""Serving preprocessing is the training-time recipe, computed the cheap way."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from catdog.model.preprocess import center_crop_box, normalize, preprocess, resize_and_crop
from catdog.model.recipe import InputSpec

SPEC = InputSpec()


def test_shape_dtype_and_layout(cat_photo):
    x = preprocess(Image.open(cat_photo).convert("RGB"), SPEC)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    nhwc = preprocess(Image.open(cat_photo).convert("RGB"), InputSpec(layout="NHWC"))
    assert nhwc.shape == (224, 224, 3)
    np.testing.assert_array_equal(nhwc.transpose(2, 0, 1), x)


def test_one_step_resize_crop_matches_resize_then_crop(cat_photo):
    """The single resampling of the crop box equals timm's resize-short-side-then-centre-crop."""
    image = Image.open(cat_photo).convert("RGB")
    scale = SPEC.resize / min(image.size)
    resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    left, top = (resized.width - SPEC.size) // 2, (resized.height - SPEC.size) // 2
    reference = np.asarray(resized.crop((left, top, left + SPEC.size, top + SPEC.size)), dtype=np.float32)
    ours = np.asarray(resize_and_crop(image, SPEC), dtype=np.float32)
    # Same geometry up to a sub-pixel offset (timm rounds the crop to whole pixels):
    # identical at low frequency, so compare 4x-downsampled versions.
    def low(a):
        return a.reshape(56, 4, 56, 4, 3).mean(axis=(1, 3))
    assert np.abs(low(reference) - low(ours)).mean() < 2.0
    assert np.abs(reference - ours).mean() < 8.0


def test_crop_box_is_centered_and_square():
    left, top, right, bottom = center_crop_box(500, 375, SPEC)
    assert right - left == pytest.approx(bottom - top)
    assert (left + right) / 2 == pytest.approx(250) and (top + bottom) / 2 == pytest.approx(187.5)


def test_normalize_matches_the_textbook_formula():
    pixels = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    expected = ((pixels / 255.0 - np.array(SPEC.mean)) / np.array(SPEC.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(normalize(pixels, SPEC), expected, atol=1e-5)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_normalize_on_channel_planes_is_bit_identical_to_the_pixelwise_multiply_add(layout):
    """The in-place, plane-by-plane normalisation computes the same float32 operations as the
    straightforward HWC multiply-add (what training computed before): equal bit for bit."""
    spec = InputSpec(layout=layout)
    pixels = np.random.default_rng(1).integers(0, 256, (288, 288, 3), dtype=np.uint8)
    std = np.asarray(spec.std, dtype=np.float32)
    gain = (1.0 / (spec.scale * std)).astype(np.float32)
    offset = (-np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)
    straightforward = pixels.astype(np.float32) * gain + offset
    if layout == "NCHW":
        straightforward = straightforward.transpose(2, 0, 1)
    out = normalize(pixels, spec)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, straightforward)


def test_tiny_and_extreme_aspect_images_still_give_a_full_tensor():
    for size in [(1, 1), (3000, 10), (10, 3000)]:
        assert preprocess(Image.new("RGB", size, "white"), SPEC).shape == (3, 224, 224)


def test_normalisation_inside_the_graph_gives_the_same_answers(tmp_path, images_dir):
    """A model rewritten to take raw uint8 pixels (normalising in its graph) answers exactly as
    the float model fed by Python's normalisation; without model.json its uint8 input is detected."""
    pytest.importorskip("onnx")
    import json
    import shutil

    from catdog.model.engine import Classifier
    from catdog.model.recipe import Recipe
    from catdog.training.export import embed_normalization
    from tests.model.test_labels import colour_model

    source = tmp_path / "float"
    colour_model(source, labels=("cat", "dog"))
    recipe = json.loads((source / "model.json").read_text())
    recipe["input"] |= {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    (source / "model.json").write_text(json.dumps(recipe))
    recipe = Recipe.read(source / "model.json")
    served = tmp_path / "uint8"
    served.mkdir()
    spec = embed_normalization(source / "model.onnx", served / "model.onnx", recipe.input)
    assert (spec.dtype, spec.layout) == ("uint8", "NHWC")
    recipe.model_copy(update={"input": spec}).write(served / "model.json")
    floats, raw = Classifier.load(source, threads=1), Classifier.load(served, threads=1)
    photos = sorted(images_dir.rglob("*.jpg"))
    tensor = raw.prepare(photos[0])
    assert tensor.dtype == np.uint8 and tensor.shape == (spec.size, spec.size, 3)
    for a, b in zip(floats.predict_batch(photos), raw.predict_batch(photos)):
        assert a.label == b.label
        for label in a.probabilities:
            assert a.probabilities[label] == pytest.approx(b.probabilities[label], abs=1e-6)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(served / "model.onnx", bare / "model.onnx")
    guessed = Classifier.load(bare / "model.onnx", threads=1).recipe.input
    assert (guessed.dtype, guessed.layout, guessed.size) == ("uint8", "NHWC", spec.size)
