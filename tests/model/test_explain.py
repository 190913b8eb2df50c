"""Classifier.explain with the bundled model: where the heatmap sits on real photos."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog.model.engine import Classifier
from catdog.model.errors import ExplainUnavailable
from catdog.model.explain import grid_shape
from catdog.model.preprocess import center_crop_box
from tests.conftest import CAT_PHOTOS, DATA, DOG_PHOTOS, encode

NOT_PETS = sorted((DATA / "not-pets").glob("*.jpg"))


@pytest.fixture(scope="module")
def upright() -> Image.Image:
    return Image.open(DOG_PHOTOS[1]).convert("RGB")


def test_heatmap_has_the_photos_shape_and_is_non_negative(classifier, upright):
    explanation = classifier.explain(encode(upright, "PNG"))
    grid = explanation.heatmap()
    assert grid.shape == grid_shape(*upright.size)
    rows, cols = grid.shape
    assert max(rows, cols) == 32 and (cols > rows) == (upright.width > upright.height)
    assert rows / cols == pytest.approx(upright.height / upright.width, abs=0.05)
    assert grid.min() >= 0.0 and grid.max() <= 1.0 + 1e-6 and grid.max() > 0.5
    # The map is drawn for the answer, and the answer is the one predict gives.
    assert explanation.label == explanation.prediction.label == classifier.predict(encode(upright, "PNG")).label
    assert explanation.label in classifier.labels


def _quadrants(grid: np.ndarray) -> list[float]:
    """Heatmap mass in the top-left, top-right, bottom-left and bottom-right quarters."""
    r, c = grid.shape[0] // 2, grid.shape[1] // 2
    return [float(q.sum()) for q in (grid[:r, :c], grid[:r, c:], grid[r:, :c], grid[r:, c:])]


def _pasted(photo, background, corner: int, side: int = 600, margin: int = 40) -> Image.Image:
    """A real pet photo in one corner (0 TL, 1 TR, 2 BL, 3 BR) of a real not-pet photo (or a
    grey canvas), inside the model's centre crop (89% of the side). On a busy background a
    small pet may be answered "other", and the map then rightly shows the background."""
    canvas = (Image.new("RGB", (side, side), (150, 150, 150)) if background is None
              else Image.open(background).convert("RGB").resize((side, side)))
    pet = Image.open(photo).convert("RGB")
    pet.thumbnail((270, 270))
    x = margin if corner % 2 == 0 else side - margin - pet.width
    y = margin if corner < 2 else side - margin - pet.height
    canvas.paste(pet, (x, y))
    return canvas


def test_an_exif_rotated_photo_gets_the_map_of_the_photo_as_shown(classifier, upright):
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise, as a camera held sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": shows the upright photo
    with_exif = classifier.explain(encode(stored, "PNG", exif=exif.tobytes())).heatmap()
    as_is = classifier.explain(encode(upright, "PNG")).heatmap()
    assert with_exif.shape == as_is.shape
    np.testing.assert_allclose(with_exif, as_is, atol=1e-5)


def test_the_map_follows_the_photo_as_shown_not_as_stored(classifier):
    """A dog in the top-left corner of the photo as shown; the file stores it sideways (the dog
    in its bottom-left) with an EXIF tag. The mass lands top-left; without the tag, bottom-left."""
    shown = _pasted(DOG_PHOTOS[1], None, corner=0)
    stored = shown.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = classifier.explain(encode(stored, "JPEG", quality=92, exif=exif.tobytes())).heatmap()
    assert tagged.shape == grid_shape(*shown.size)
    assert int(np.argmax(_quadrants(tagged))) == 0
    untagged = classifier.explain(encode(stored, "JPEG", quality=92)).heatmap()
    assert int(np.argmax(_quadrants(untagged))) == 2


def test_zero_outside_the_models_centre_crop(classifier, upright):
    wide = Image.new("RGB", (upright.width * 2, upright.height), (200, 190, 180))
    wide.paste(upright, (upright.width // 2, 0))
    explanation = classifier.explain(encode(wide, "PNG"))
    rows, cols = 40, 80
    grid = explanation.heatmap(rows, cols)
    left, _, right, _ = center_crop_box(wide.width, wide.height, classifier.recipe.input)
    centres = (np.arange(cols) + 0.5) * wide.width / cols
    outside = (centres < left) | (centres >= right)
    assert outside.sum() >= 20  # the crop leaves wide bands on both sides
    assert np.all(grid[:, outside] == 0.0)
    assert grid[:, ~outside].sum() > 0 and 0.9 < grid.max() <= 1.0  # peak 1 on the 9 x 9 map, resampled


def test_overlay_is_the_photo_size_and_leaves_the_outside_of_the_crop_untouched(classifier, upright):
    wide = Image.new("RGB", (upright.width * 2, upright.height), (200, 190, 180))
    wide.paste(upright, (upright.width // 2, 0))
    explanation = classifier.explain(encode(wide, "PNG"))
    overlay = explanation.overlay(wide)
    assert overlay.size == wide.size and overlay.mode == "RGB"
    left, _, right, _ = explanation.box
    a, b = np.asarray(overlay), np.asarray(wide)
    np.testing.assert_array_equal(a[:, : int(left) - 1], b[:, : int(left) - 1])
    np.testing.assert_array_equal(a[:, int(right) + 1:], b[:, int(right) + 1:])
    assert np.abs(a.astype(int) - b).max() > 60  # and the heatmap is visibly there inside it
    # At another scale (a thumbnail of the same photo) the overlay takes that size.
    small = wide.resize((wide.width // 3, wide.height // 3))
    assert explanation.overlay(small).size == small.size


@pytest.mark.parametrize("photo,background", [
    (CAT_PHOTOS[2], None), (DOG_PHOTOS[1], None), (DOG_PHOTOS[1], NOT_PETS[1]), (DOG_PHOTOS[2], NOT_PETS[1]),
], ids=["cat-on-grey", "dog-on-grey", "dog-on-tulips", "dog2-on-tulips"])
def test_a_pet_pasted_in_a_corner_gets_the_mass_there(classifier, photo, background):
    """A real pet photo in one corner of a grey canvas or a real not-pet photo: the map's mass follows it."""
    expected = photo.parent.name
    for corner in range(4):
        explanation = classifier.explain(encode(_pasted(photo, background, corner), "JPEG", quality=92))
        assert explanation.prediction.label == expected
        quadrants = _quadrants(explanation.heatmap(60, 60))
        share = quadrants[corner] / sum(quadrants)
        assert int(np.argmax(quadrants)) == corner and share > 0.5, (corner, np.round(quadrants, 1))


def without_class_maps(folder: Path, classifier: Classifier) -> Path:
    """The bundled model's accurate network alone with a recipe that does not declare its class
    maps: the output is in the file, but nothing says what it is, so catdog must not guess."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(classifier.path.read_bytes())
    recipe = json.loads(classifier.path.with_name("model.json").read_text())
    del recipe["explain"]
    recipe.pop("cascade", None)
    (folder / "model.json").write_text(json.dumps(recipe))
    return folder


def test_a_model_without_class_maps_says_so(tmp_path, classifier):
    generic = Classifier.load(without_class_maps(tmp_path / "m", classifier), threads=1, warmup=False)
    with pytest.raises(ExplainUnavailable) as err:
        generic.explain(CAT_PHOTOS[0])
    assert err.value.code == "explain_unavailable"
    assert "add_feature_output" in err.value.message
    assert generic.info()["explain"] is False and classifier.info()["explain"] is True
    assert generic.predict(CAT_PHOTOS[0]).label in generic.labels  # predicting still works


def test_bad_input_is_an_image_error(classifier):
    from catdog.model.errors import NotAnImage

    with pytest.raises(NotAnImage):
        classifier.explain(io.BytesIO(b"%PDF-1.4 not a photo").getvalue())
