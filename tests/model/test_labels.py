"""The recipe owns the labels: any number of them, an optional "other" answer, and a clear
refusal when the labels and the model's output disagree. Driven through real ONNX Runtime
with a small crafted model whose answer is set by the photo's dominant colour."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from catdog.model.engine import Classifier
from catdog.model.errors import ModelError
from catdog.model.recipe import Recipe

onnx = pytest.importorskip("onnx")

SIDE = 64


def colour_model(directory, labels=("cat", "dog", "other"), **recipe) -> None:
    """Logits = 12 x mean colour: blue -> first label, red -> second, green -> third."""
    from onnx import TensorProto, helper

    k = len(labels)
    # rows: R, G, B input channels; columns: logits per label
    weights = np.zeros((3, k), np.float32)
    weights[2, 0], weights[0, 1] = 12.0, 12.0
    if k > 2:
        weights[1, 2] = 12.0
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "colour_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [3, k], weights.flatten().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "model.onnx")
    spec = {"size": SIDE, "resize": SIDE, "mean": [0, 0, 0], "std": [1, 1, 1]}
    (directory / "model.json").write_text(json.dumps({"name": "colours", "labels": list(labels),
                                                      "input": spec, **recipe}))


def photo(rgb) -> Image.Image:
    return Image.fromarray(np.full((80, 120, 3), rgb, np.uint8))


BLUE, RED, GREEN = (20, 20, 230), (230, 20, 20), (20, 230, 20)
GREENISH_RED = (200, 170, 20)  # mostly dog, some other


def test_three_labels_each_answer_and_probabilities_sum_to_one(tmp_path):
    colour_model(tmp_path, other_label="other", other_threshold=0.5)
    clf = Classifier.load(tmp_path, threads=1)
    assert clf.labels == ("cat", "dog", "other")
    answers = clf.predict_batch([photo(BLUE), photo(RED), photo(GREEN)])
    assert [a.label for a in answers] == ["cat", "dog", "other"]
    for answer in answers:
        assert set(answer.probabilities) == {"cat", "dog", "other"}
        assert sum(answer.probabilities.values()) == pytest.approx(1.0)
        assert answer.confidence == answer.probabilities[answer.label]


def test_other_needs_its_threshold_not_just_the_largest_probability(tmp_path):
    colour_model(tmp_path, other_label="other", other_threshold=0.95)
    clf = Classifier.load(tmp_path, threads=1)
    # green wins the argmax here, but not with 95%: the answer is the likelier pet
    almost_green = photo((150, 175, 20))
    p = clf.predict(almost_green)
    assert max(p.probabilities, key=p.probabilities.get) == "other"
    assert p.probabilities["other"] < 0.95
    assert p.label == "dog" and p.confidence == p.probabilities["dog"]
    assert clf.predict(photo(GREEN)).label == "other"


def test_closed_world_drops_other_and_renormalises(tmp_path):
    colour_model(tmp_path, other_label="other")
    clf = Classifier.load(tmp_path, threads=1, open_world=False)
    assert clf.labels == ("cat", "dog")
    p = clf.predict(photo(GREENISH_RED))
    assert set(p.probabilities) == {"cat", "dog"} and p.label == "dog"
    assert sum(p.probabilities.values()) == pytest.approx(1.0)
    assert clf.info()["labels"] == ["cat", "dog"] and clf.info()["other_label"] is None


def test_many_labels_without_other_take_the_most_probable(tmp_path):
    colour_model(tmp_path, labels=("blue", "red", "green"))
    clf = Classifier.load(tmp_path, threads=1)
    assert [p.label for p in clf.predict_batch([photo(BLUE), photo(RED), photo(GREEN)])] == ["blue", "red", "green"]


def test_two_label_model_never_answers_other(tmp_path):
    colour_model(tmp_path, labels=("cat", "dog"))
    clf = Classifier.load(tmp_path, threads=1)
    p = clf.predict(photo(GREEN))
    assert p.label in ("cat", "dog") and set(p.probabilities) == {"cat", "dog"}


def test_labels_that_do_not_match_the_output_are_refused_in_one_line(tmp_path):
    colour_model(tmp_path, labels=("cat", "dog", "other"))
    recipe = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps(recipe | {"labels": ["cat", "dog"]}))
    with pytest.raises(ModelError) as caught:
        Classifier.load(tmp_path, threads=1)
    message = str(caught.value)
    assert "\n" not in message and "2 labels" in message and "shape" in message


@pytest.mark.parametrize("bad", [
    {"labels": ["cat"]},
    {"labels": ["cat", "cat"]},
    {"labels": ["cat", "dog"], "other_label": "other"},
    {"labels": ["cat", "dog", "other"], "output": "sigmoid"},
])
def test_inconsistent_recipes_are_refused(bad):
    with pytest.raises(ValueError):
        Recipe.model_validate(bad)
