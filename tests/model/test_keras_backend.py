"""Keras models (the original design's ``cat_dog.h5``) served through the same engine.

Each test builds a tiny Keras model itself, so nothing is downloaded and no weights are
committed; the whole module is skipped when the optional ``keras`` extra is missing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from catdog.model.backends import KERAS_BACKENDS, KerasBackend, _keras_backend_name
from catdog.model.engine import Classifier
from catdog.model.errors import ModelError
from catdog.model.preprocess import prepare

if importlib.util.find_spec("keras") is None or not any(
    importlib.util.find_spec(name) for name in KERAS_BACKENDS
):
    pytest.skip("needs the keras extra: pip install 'catdog[keras]'", allow_module_level=True)

_keras_backend_name()  # exports KERAS_BACKEND before Keras' first import, as the backend does
keras = pytest.importorskip("keras")

SIDE = 64
# Keras' JAX backend (3.15) converts arrays the pre-NumPy-2 way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def tiny_cnn(seed: int = 0) -> keras.Model:
    """The original design's shape in miniature: 64x64x3 -> Conv2D -> pooling -> sigmoid."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((SIDE, SIDE, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])


def mean_red_minus_blue(bias: float = 0.0) -> keras.Model:
    """A crafted model: P(dog) = sigmoid(40 * (mean red - mean blue) + bias), inputs in [0, 1].

    Reddish photos are "dog", bluish ones "cat", so both labels can be forced.
    """
    model = keras.Sequential([
        keras.Input((SIDE, SIDE, 3)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.layers[-1].set_weights([np.array([[40.0], [0.0], [-40.0]], dtype=np.float32),
                                  np.array([bias], dtype=np.float32)])
    return model


@pytest.fixture
def tiny_h5(tmp_path):
    path = tmp_path / "cat_dog.h5"
    model = tiny_cnn()
    model.save(path)
    return path, model


def test_recipe_comes_from_the_model_itself(tiny_h5):
    path, _ = tiny_h5
    clf = Classifier.load(path, threads=1)
    spec = clf.recipe.input
    assert (spec.size, spec.resize, spec.layout, spec.crop) == (SIDE, SIDE, "NHWC", False)
    assert (spec.mean, spec.std, spec.scale) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 255.0)
    assert clf.recipe.output == "sigmoid"
    assert clf.recipe.labels == ("cat", "dog")
    assert clf.info()["file"] == "cat_dog.h5"


def test_probability_equals_keras_predict(tiny_h5, cat_photo):
    path, model = tiny_h5
    clf = Classifier.load(path, threads=1)
    x = prepare(cat_photo, clf.recipe.input)
    assert x.shape == (SIDE, SIDE, 3) and 0.0 <= x.min() and x.max() <= 1.0
    expected = float(model.predict(x[None], verbose=0)[0, 0])
    got = clf.predict(cat_photo)
    assert got.probabilities["dog"] == pytest.approx(expected, abs=1e-5)
    assert got.label == ("dog" if expected >= 0.5 else "cat")


def test_whole_photo_is_squashed_not_cropped(cat_photo):
    """The original design resized the whole photo to 64x64: no centre crop."""
    from PIL import Image

    from catdog.model.recipe import InputSpec

    spec = InputSpec(size=SIDE, resize=SIDE, crop=False, layout="NHWC",
                     mean=(0, 0, 0), std=(1, 1, 1))
    with Image.open(cat_photo) as image:
        image = image.convert("RGB")
        expected = np.asarray(image.resize((SIDE, SIDE), Image.Resampling.BICUBIC), np.float32) / 255
        assert image.width != image.height  # a crop would have changed the pixels
        np.testing.assert_allclose(prepare(image, spec), expected, atol=1e-6)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_crafted_model_gives_both_labels(tmp_path, suffix):
    path = tmp_path / f"crafted{suffix}"
    mean_red_minus_blue().save(path)
    clf = Classifier.load(path, threads=1)
    red = np.zeros((80, 120, 3), np.uint8)
    red[..., 0] = 220
    blue = np.zeros((80, 120, 3), np.uint8)
    blue[..., 2] = 220
    from PIL import Image

    reddish, bluish = clf.predict_batch([Image.fromarray(red), Image.fromarray(blue)])
    assert reddish.label == "dog" and reddish.confidence > 0.99
    assert bluish.label == "cat" and bluish.confidence > 0.99


def test_a_two_label_model_is_sure_exactly_when_its_confidence_reaches_the_level(tiny_h5, cat_photo, dog_photo):
    path, _ = tiny_h5
    clf = Classifier.load(path, threads=1)
    level = clf.recipe.sure_level
    for prediction in clf.predict_batch([cat_photo, dog_photo]):
        assert prediction.sure == (prediction.confidence >= level)
    assert clf.decide(np.array([1 - level, level])).sure
    below = clf.decide(np.array([1 - level + 0.01, level - 0.01]))
    assert below.label == "dog" and not below.sure  # the two-label rule: dog at >= 0.5


def test_two_way_softmax_is_read_as_probabilities(tmp_path, dog_photo):
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    path = tmp_path / "softmax.keras"
    model.save(path)
    clf = Classifier.load(path, threads=1)
    assert clf.recipe.output == "probabilities" and clf.recipe.input.size == 32
    x = prepare(dog_photo, clf.recipe.input)
    expected = model.predict(x[None], verbose=0)[0]
    got = clf.predict(dog_photo).probabilities
    assert [got["cat"], got["dog"]] == pytest.approx(expected.tolist(), abs=1e-5)


def test_model_json_beside_the_file_wins(tiny_h5):
    path, _ = tiny_h5
    from catdog.model.recipe import Recipe

    recipe = Classifier.load(path, threads=1, warmup=False).recipe
    recipe.model_copy(update={"name": "mine", "threshold": 0.8}).write(path.with_name("model.json"))
    clf = Classifier.load(path, threads=1)
    assert (clf.recipe.name, clf.recipe.threshold) == ("mine", 0.8)
    assert isinstance(clf.recipe, Recipe)


def test_missing_keras_says_how_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "keras" else real(name, *args))
    with pytest.raises(ModelError, match=r"pip install 'catdog\[keras\]'"):
        KerasBackend(tmp_path / "cat_dog.h5", threads=1)


def test_a_corrupt_h5_is_a_model_error(tmp_path):
    path = tmp_path / "broken.h5"
    path.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ModelError, match="Keras cannot load"):
        KerasBackend(path, threads=1)


def test_non_square_inputs_are_refused(tmp_path):
    model = keras.Sequential([
        keras.Input((32, 48, 3)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    path = tmp_path / "wide.h5"
    model.save(path)
    with pytest.raises(ModelError, match="square"):
        Classifier.load(path, threads=1)
