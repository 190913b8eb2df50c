"""The engine on the bundled model: cat, dog or other, calibrated probabilities, batches, bad input, bad models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from catdog.config import Settings
from catdog.model import errors
from catdog.model.engine import Classifier, Prediction, resolve_model_path
from catdog.model.recipe import Recipe
from tests.conftest import CAT_PHOTOS, DATA, DOG_PHOTOS

REPO = DATA.parents[1]


@pytest.mark.parametrize("photo", CAT_PHOTOS, ids=lambda p: p.name)
def test_cat_photos_are_cats(classifier, photo):
    prediction = classifier.predict(photo)
    assert prediction.label == "cat", prediction


@pytest.mark.parametrize("photo", DOG_PHOTOS, ids=lambda p: p.name)
def test_dog_photos_are_dogs(classifier, photo):
    prediction = classifier.predict(photo)
    assert prediction.label == "dog", prediction


def test_probabilities_are_consistent(classifier, dog_bytes):
    p = classifier.predict(dog_bytes)
    assert set(p.probabilities) == {"cat", "dog", "other"}
    assert sum(p.probabilities.values()) == pytest.approx(1.0)
    assert p.confidence == pytest.approx(max(p.probabilities.values()))
    assert 0.5 <= p.confidence <= 1.0


def test_the_bundled_model_is_open_world(classifier):
    """cat, dog or other: other only when P(other) reaches the recipe's threshold (chosen on
    held-out pets), otherwise the likelier pet, even when other has the largest probability."""
    r = classifier.recipe
    assert r.labels == ("cat", "dog", "other") and r.other_label == "other"
    assert 0.5 <= r.other_threshold < 1.0
    assert classifier.decide(np.array([0.02, 0.01, 0.97 if r.other_threshold <= 0.97 else 0.999])).label == "other"
    below = max(0.5, r.other_threshold - 0.01)
    assert classifier.decide(np.array([(1 - below) * 0.4, (1 - below) * 0.6, below])).label == "dog"
    assert classifier.decide(np.array([0.6, 0.4, 0.0])).label == "cat"


@pytest.mark.parametrize("photo", sorted((DATA / "not-pets").glob("*.jpg")), ids=lambda p: p.name)
def test_photos_of_neither_are_never_a_sure_pet(classifier, photo):
    """Every fixture flower is "other", or, where the threshold that protects real pets keeps
    the answer a pet (3.1.0 on tulips.jpg: P(other) 0.75 under its 0.81), "other" is the most
    probable label and the answer says it is not sure (the model card's known failures)."""
    prediction = classifier.predict(photo)
    likeliest = max(prediction.probabilities, key=prediction.probabilities.__getitem__)
    assert prediction.label == "other" or (likeliest == "other" and not prediction.sure), prediction
    assert likeliest == "other", prediction


def test_a_two_label_model_still_works_and_never_says_other():
    lite0 = Classifier.load(REPO / "models" / "catdog-lite0", threads=1)
    assert lite0.labels == ("cat", "dog")
    for photo in sorted((DATA / "not-pets").glob("*.jpg")):
        assert lite0.predict(photo).label in ("cat", "dog")
    assert lite0.decide(np.array([0.49, 0.51])).label == "dog"
    assert lite0.decide(np.array([0.5, 0.5])).label == "dog"
    assert lite0.decide(np.array([0.51, 0.49])).label == "cat"


def test_closed_world_setting_turns_other_off(monkeypatch, dog_bytes):
    from catdog.commands._common import load_classifier

    monkeypatch.setenv("CATDOG_OPEN_WORLD", "false")
    clf = load_classifier(type("Args", (), {"model": None, "threads": 1})())
    p = clf.predict(dog_bytes)
    assert set(p.probabilities) == {"cat", "dog"} and p.label == "dog"


def test_same_answer_for_bytes_path_and_pil(classifier, cat_photo):
    from_path = classifier.predict(cat_photo)
    from_bytes = classifier.predict(cat_photo.read_bytes())
    from_pil = classifier.predict(Image.open(cat_photo))
    assert from_path == from_bytes
    assert from_pil.label == from_path.label
    assert from_pil.confidence == pytest.approx(from_path.confidence, abs=1e-3)


def test_batch_equals_single(classifier):
    photos = CAT_PHOTOS + DOG_PHOTOS
    batch = classifier.predict_batch(photos)
    for photo, p in zip(photos, batch):
        single = classifier.predict(photo)
        assert p.label == single.label
        assert p.confidence == pytest.approx(single.confidence, abs=1e-5)


def test_batch_reports_bad_files_in_place(classifier, cat_bytes, dog_bytes):
    results = classifier.predict_batch([cat_bytes, b"not an image", dog_bytes], return_errors=True)
    assert isinstance(results[0], Prediction) and results[0].label == "cat"
    assert isinstance(results[1], errors.NotAnImage)
    assert isinstance(results[2], Prediction) and results[2].label == "dog"
    with pytest.raises(errors.NotAnImage):
        classifier.predict_batch([cat_bytes, b"not an image"])


def test_predict_many_streams_in_batches(classifier):
    photos = (CAT_PHOTOS + DOG_PHOTOS) * 3
    out = list(classifier.predict_many(photos, batch_size=4))
    assert [src for src, _ in out] == photos
    assert all(isinstance(p, Prediction) for _, p in out)


def test_bad_input_raises_typed_errors(classifier):
    with pytest.raises(errors.EmptyFile):
        classifier.predict(b"")
    with pytest.raises(errors.ImageError):
        classifier.predict(b"\xff\xd8\xff\xe0 truncated jpeg")


def test_pixel_limit_comes_from_the_classifier(cat_photo):
    small = Classifier.load(threads=1, max_pixels=10_000)
    with pytest.raises(errors.TooManyPixels):
        small.predict(cat_photo)


def test_temperature_scales_confidence_without_changing_the_label(classifier, dog_photo):
    x = classifier.prepare(dog_photo)[None]
    base = classifier.probabilities(x)[0]
    hot = Classifier(classifier.backend, classifier.recipe.model_copy(update={"temperature": 100.0}))
    flat = hot.probabilities(x)[0]
    assert np.argmax(base) == np.argmax(flat)
    assert abs(flat[1] - 0.5) < abs(base[1] - 0.5)


def test_info_describes_the_model(classifier):
    info = classifier.info()
    assert info["labels"] == ["cat", "dog", "other"] and info["input_size"] == classifier.recipe.input.size
    assert info["name"] and info["version"]


def test_model_from_environment(monkeypatch, tmp_path):
    bundled = resolve_model_path()
    copy = tmp_path / "m"
    shutil.copytree(bundled.parent, copy)
    monkeypatch.setenv("CATDOG_MODEL", str(copy))
    # Settings reads the environment; the engine is handed what it read (Classifier.from_settings).
    assert resolve_model_path(Settings.from_env().model) == copy / bundled.name


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(errors.ModelError, match="No model file"):
        Classifier.load(tmp_path / "nope.onnx")
    with pytest.raises(errors.ModelError, match="No model file"):
        Classifier.load(tmp_path)


def test_corrupt_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(errors.ModelError, match="cannot load"):
        Classifier.load(bad)


def test_unknown_model_suffix(tmp_path):
    other = tmp_path / "model.pkl"
    other.write_bytes(b"x")
    with pytest.raises(errors.ModelError, match="reads model files ending in"):
        Classifier.load(other)


def test_invalid_recipe_is_a_clear_error(tmp_path):
    bundled = resolve_model_path()
    shutil.copy(bundled, tmp_path / "model.onnx")
    (tmp_path / "model.json").write_text('{"threshold": 7}')
    with pytest.raises(errors.ModelError, match="not valid"):
        Classifier.load(tmp_path)


def test_onnx_without_recipe_uses_the_documented_default_contract(tmp_path, cat_photo):
    two_labels = REPO / "models" / "catdog-lite0"
    shutil.copy(two_labels / "model.onnx", tmp_path / "model.onnx")
    bare = Classifier.load(tmp_path / "model.onnx", threads=1)
    assert bare.recipe.labels == ("cat", "dog") and bare.recipe.temperature == 1.0
    assert bare.predict(cat_photo).label == Classifier.load(two_labels, threads=1).predict(cat_photo).label


def test_three_outputs_without_a_recipe_are_refused_in_one_line(tmp_path):
    shutil.copy(resolve_model_path(), tmp_path / "model.onnx")
    with pytest.raises(errors.ModelError) as caught:
        Classifier.load(tmp_path / "model.onnx", threads=1)
    assert "model.json" in str(caught.value) and "\n" not in str(caught.value)


def test_recipe_round_trip(tmp_path):
    recipe = Recipe(name="x", version="2", temperature=1.7, metrics={"val": {"accuracy": 0.99}})
    recipe.write(tmp_path / "model.json")
    assert Recipe.read(tmp_path / "model.json") == recipe
