"""``sure``: an answer never reads as more than its own numbers back.

False whenever another label is more probable than the answer (the recipe protects real pets
from "other", so "cat" can be answered while "other" is likelier) or the answer's probability
is under the recipe's ``sure_level``; one rule, in :func:`catdog.model.rules.sure_rows`,
applied by the engine to every prediction. Driven through real ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import pytest

from catdog.model.engine import Classifier
from catdog.model.rules import sure_rows
from catdog.prediction import Prediction
from tests.model.test_labels import colour_model

LEVEL = 0.7


@pytest.mark.parametrize("probs,index,sure", [
    ([0.71, 0.29], 0, True),           # reaches the level, nothing likelier
    ([0.70, 0.30], 0, True),           # exactly at the level
    ([0.69, 0.31], 0, False),          # just under the level
    ([0.30, 0.01, 0.69], 0, False),    # answer protected from "other", which is likelier
    ([0.50, 0.50], 1, False),          # a tie under the level
    ([0.75, 0.0, 0.25], 0, True),
    ([0.20, 0.72, 0.08], 0, False),    # another label likelier and over the level
])
def test_rule_on_both_sides_of_each_threshold(probs, index, sure):
    got = sure_rows(np.array([probs]), np.array([index]), LEVEL)
    assert got.tolist() == [sure]


@pytest.fixture
def open_world(tmp_path):
    colour_model(tmp_path, other_label="other", other_threshold=0.8, sure_level=LEVEL)
    return Classifier.load(tmp_path, threads=1)


def test_a_protected_pet_is_answered_but_not_sure(open_world):
    # "other" is the most probable (0.69) but under its threshold (0.8): the answer stays a pet
    answer = open_world.decide(np.array([0.30, 0.01, 0.69]))
    assert answer.label == "cat" and not answer.sure
    answer = open_world.decide(np.array([0.10, 0.05, 0.85]))
    assert answer.label == "other" and answer.sure


@pytest.mark.parametrize("cat,sure", [(0.71, True), (0.69, False)])
def test_the_level_comes_from_the_recipe(open_world, cat, sure):
    answer = open_world.decide(np.array([cat, 0.0, 1 - cat]))
    assert answer.label == "cat" and answer.sure is sure


def test_every_prediction_carries_it_and_it_round_trips(open_world):
    from PIL import Image

    for rgb in [(20, 20, 230), (230, 20, 20), (20, 230, 20), (120, 110, 130)]:
        prediction = open_world.predict(Image.fromarray(np.full((80, 120, 3), rgb, np.uint8)))
        probs = np.array([prediction.probabilities[label] for label in open_world.labels])
        index = open_world.labels.index(prediction.label)
        assert prediction.sure == bool(sure_rows(probs[None], np.array([index]), LEVEL)[0])
        assert Prediction.from_dict(prediction.to_dict()) == Prediction(
            prediction.label, round(prediction.confidence, 6),
            {k: round(v, 6) for k, v in prediction.probabilities.items()}, prediction.sure)


def test_an_answer_from_a_server_without_the_field_is_sure_only_when_nothing_outweighs_it():
    assert Prediction.from_dict({"label": "cat", "confidence": 0.3,
                                 "probabilities": {"cat": 0.3, "other": 0.7}}).sure is False
    assert Prediction.from_dict({"label": "cat", "confidence": 0.9,
                                 "probabilities": {"cat": 0.9, "other": 0.1}}).sure is True
    with pytest.raises(TypeError):
        Prediction.from_dict({"label": "cat", "confidence": 0.9, "sure": "yes", "probabilities": {"cat": 0.9}})
