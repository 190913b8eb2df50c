"""The model cascade (issue 12) in the engine, on real models through real ONNX Runtime: a fast
model answers the photos it is sure of, the accurate one the rest (catdog.model.cascade).

The cascades are built by ``catdog cascade`` (tests/cascades.py, the session fixtures
``cascade_dir`` and ``mixed_cascade_dir`` in tests/conftest.py)."""

from __future__ import annotations

import itertools
import json
import threading

import numpy as np
import pytest

from catdog.model.cascade import handoff_floor
from catdog.model.engine import Classifier
from catdog.model.errors import ModelError
from catdog.model.recipe import Recipe
from catdog.model.rules import decide_indices
from tests.cascades import ACCURATE, FAST, PHOTOS, edit_json, variant

pytest.importorskip("torch", reason="catdog cascade needs the train extra (onnx, torch)")


def batch_of(clf: Classifier, photos=PHOTOS) -> np.ndarray:
    return np.stack([clf.prepare(p) for p in photos])


def test_the_command_writes_a_cascade_recipe(cascade_dir):
    recipe = Recipe.read(cascade_dir / "model.json")
    fast = Recipe.read(cascade_dir / "fast" / "model.json")
    accurate = Recipe.read(ACCURATE / "model.json")
    assert recipe.cascade is not None and recipe.cascade.fast == "fast"
    assert 0.5 <= recipe.cascade.handoff < 1
    held_out = recipe.cascade.metrics["holdout"]
    assert held_out["n"] == 4 and 0 <= held_out["slow_share"] <= 1
    assert held_out["open_world"]["cascade"]["errors"] <= held_out["open_world"]["accurate"]["errors"]
    assert recipe.name == "catdog-lite2-v1-cascade" and recipe.input == accurate.input
    # The fast copy takes the accurate model's input and says how.
    assert fast.input == accurate.input and fast.name == "catdog-lite0"
    assert "resizes it to its own 256 px" in fast.training["cascade_input"]
    assert (cascade_dir / "model.onnx").read_bytes() == (ACCURATE / "model.onnx").read_bytes()


def test_the_cascade_loads_both_models_and_counts_nothing_at_warmup(cascade_dir):
    clf = Classifier.load(cascade_dir, threads=1)
    assert clf.cascade is not None and clf.cascade.fast.recipe.name == "catdog-lite0"
    assert clf.labels == ("cat", "dog")
    assert clf.info()["cascade"] == {"fast": "catdog-lite0", "handoff": clf.recipe.cascade.handoff,
                                     "fast_answers": 0, "slow_answers": 0}
    assert Classifier.load(FAST, threads=1, warmup=False).info()["cascade"] is None


def test_handoff_one_half_is_the_fast_model_alone(cascade_dir, tmp_path):
    clf = Classifier.load(variant(cascade_dir, tmp_path / "c", handoff=0.5), threads=1)
    fast = Classifier.load(tmp_path / "c" / "fast", threads=1)
    x = batch_of(clf)
    np.testing.assert_array_equal(clf.probabilities(x), fast.probabilities(x))
    assert clf.cascade.counts() == (len(PHOTOS), 0)


def test_handoff_near_one_is_the_accurate_model_alone(cascade_dir, tmp_path):
    clf = Classifier.load(variant(cascade_dir, tmp_path / "c", handoff=0.999999), threads=1)
    accurate = Classifier.load(ACCURATE, threads=1)
    x = batch_of(clf)
    np.testing.assert_array_equal(clf.probabilities(x), accurate.probabilities(x))
    assert clf.cascade.counts() == (0, len(PHOTOS))
    assert [p.label for p in clf.predict_batch(PHOTOS)] == [p.label for p in accurate.predict_batch(PHOTOS)]


def test_a_mixed_batch_keeps_its_order_and_runs_the_accurate_model_once_on_the_rest(mixed_cascade_dir):
    clf = Classifier.load(mixed_cascade_dir, threads=1)
    fast = Classifier.load(mixed_cascade_dir / "fast", threads=1)
    accurate = Classifier.load(ACCURATE, threads=1)
    x = batch_of(clf)
    fast_probs, slow_probs = fast.probabilities(x), accurate.probabilities(x)
    sure = fast_probs.max(axis=1) >= clf.cascade.handoff
    assert 0 < sure.sum() < len(PHOTOS)
    expected = np.where(sure[:, None], fast_probs, slow_probs)

    calls = []
    run = clf.backend.run
    clf.backend.run = lambda batch: calls.append(len(batch)) or run(batch)  # type: ignore[method-assign]
    got = clf.probabilities(x)
    assert calls == [int((~sure).sum())]  # one call, on the unsure rows only
    np.testing.assert_array_equal(got[sure], fast_probs[sure])
    np.testing.assert_allclose(got[~sure], slow_probs[~sure], atol=1e-6)  # a smaller batch: same rows
    assert clf.cascade.counts() == (int(sure.sum()), int((~sure).sum()))
    # The answers are the recipe's rule on those probabilities, photo by photo, in order.
    labels = [p.label for p in clf.predict_batch(PHOTOS)]
    assert labels == [clf.labels[i] for i in decide_indices(expected)]
    pets = [(photo.parent.name, label) for photo, label in zip(PHOTOS, labels) if photo.parent.name in ("cat", "dog")]
    assert all(truth == label for truth, label in pets)


def test_decide_gives_the_fast_models_own_answer_on_the_rows_it_answers(mixed_cascade_dir):
    clf = Classifier.load(mixed_cascade_dir, threads=1)
    fast = clf.cascade.fast
    probs = clf.probabilities(batch_of(clf))
    for row in probs[probs.max(axis=1) >= clf.cascade.handoff]:
        assert clf.decide(row) == fast.decide(row)


def recipe(labels=("cat", "dog", "other"), **fields) -> Recipe:
    other = "other" if "other" in labels else None
    return Recipe(labels=labels, other_label=other, **fields)


def test_above_the_floor_both_rules_agree_on_every_sure_row():
    """The reason ``decide`` needs no cascade: random thresholds and probability rows whose
    largest value reaches the floor; the accurate and the fast rule answer alike (exact ties
    at the floor included)."""
    rng = np.random.default_rng(0)
    thresholds = [0.3, 0.45, 0.5, 0.55, 0.6585876160509438, 0.7, 0.93]
    for a, f in itertools.product(thresholds, repeat=2):
        for labels, key in (((("cat", "dog", "other")), "other_threshold"), (("cat", "dog"), "threshold")):
            accurate, fast = recipe(labels, **{key: a}), recipe(labels, **{key: f})
            floor = handoff_floor(accurate, fast)
            assert floor >= max(0.5, a, f, 1 - a, 1 - f)
            rows = rng.dirichlet(np.full(len(labels), 0.3), size=4000)
            edge = np.full((len(labels), len(labels)), (1 - floor) / max(1, len(labels) - 1))
            np.fill_diagonal(edge, floor)
            rows = np.concatenate([rows[rows.max(axis=1) >= floor], edge])
            other = 2 if len(labels) == 3 else None
            answers = [decide_indices(rows, threshold=r.threshold, other=other, other_threshold=r.other_threshold)
                       for r in (accurate, fast)]
            np.testing.assert_array_equal(*answers)


def test_a_two_label_threshold_below_one_half_raises_the_floor_above_one_minus_it():
    floor = handoff_floor(recipe(("cat", "dog"), threshold=0.3), recipe(("cat", "dog")))
    assert floor > 0.7 and floor == pytest.approx(0.7)


@pytest.mark.parametrize("change, message", [
    ({"labels": ["dog", "cat"]}, "same labels in the same order"),
    ({"input__size": 256}, "does not take catdog-lite2-v1-cascade's input"),
    ({"threshold": 0.9}, "below 0.9, the lowest at which both models' rules agree"),
])
def test_a_fast_model_that_cannot_stand_in_is_refused_in_one_line(cascade_dir, tmp_path, change, message):
    out = variant(cascade_dir, tmp_path / "c", handoff=0.6, fast_temperature=None)
    edit_json(out / "fast" / "model.json", **change)
    with pytest.raises(ModelError, match=message) as caught:
        Classifier.load(out, threads=1, warmup=False)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("fast, message", [(".", "is a cascade itself"), ("nowhere", "is not in")])
def test_a_fast_model_that_is_missing_or_a_cascade_is_refused(cascade_dir, tmp_path, fast, message):
    out = variant(cascade_dir, tmp_path / "c", fast_temperature=None)
    edit_json(out / "model.json", cascade__fast=fast)
    with pytest.raises(ModelError, match=message):
        Classifier.load(out, threads=1, warmup=False)


def test_a_handoff_outside_its_range_is_an_invalid_recipe(cascade_dir, tmp_path):
    out = variant(cascade_dir, tmp_path / "c", handoff=1.0, fast_temperature=None)
    with pytest.raises(ModelError, match="not valid"):
        Classifier.load(out, threads=1, warmup=False)


def test_counts_add_up_across_threads(mixed_cascade_dir):
    clf = Classifier.load(mixed_cascade_dir, threads=1, open_world=False)
    assert clf.cascade.fast.open_world is False  # the world is passed to the fast model
    threads = [threading.Thread(target=clf.predict_batch, args=(PHOTOS,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = clf.info()["cascade"]
    assert info["fast_answers"] + info["slow_answers"] == 4 * len(PHOTOS)
    assert info["fast_answers"] > 0 and info["slow_answers"] > 0
    assert json.loads(json.dumps(clf.info()))["cascade"] == info


def test_explain_uses_the_accurate_model_when_the_fast_one_has_no_heatmaps(mixed_cascade_dir, tmp_path):
    from catdog.training.export import enable_explain

    out = variant(mixed_cascade_dir, tmp_path / "c", fast_temperature=None)
    enable_explain(out)  # the accurate model (lite2-v1) has no heatmaps of its own
    clf = Classifier.load(out, threads=1)
    for photo in PHOTOS[:3]:
        explanation = clf.explain(photo)
        alone = clf.decide(clf.model_probabilities(clf.prepare(photo)[None])[0])
        assert explanation.prediction == alone
    assert clf.cascade.counts() == (0, 0)


def test_explain_answers_as_predict_does_when_both_models_have_heatmaps(mixed_cascade_dir, tmp_path):
    """Photos the fast model is sure of are explained by it (its answer, its class maps), the
    others by the accurate model: explain's answer is predict's on both paths."""
    from catdog.training.export import enable_explain

    out = variant(mixed_cascade_dir, tmp_path / "c", fast_temperature=None)
    enable_explain(out)
    enable_explain(out / "fast")
    clf = Classifier.load(out, threads=1)
    for photo in PHOTOS:
        explanation = clf.explain(photo)
        assert explanation.prediction == clf.predict(photo)
        assert explanation.label == explanation.prediction.label and explanation.cam.max() <= 1.0
    fast, slow = clf.cascade.counts()  # predict's, once per photo; explain counts nothing
    assert fast + slow == len(PHOTOS) and fast > 0 and slow > 0


def test_evaluate_reports_the_share_of_photos_on_the_slow_path(mixed_cascade_dir, images_dir):
    from catdog.training.evaluate import evaluate

    clf = Classifier.load(mixed_cascade_dir, threads=1)
    clf.predict_batch(PHOTOS)  # photos answered before do not count in the report
    report = evaluate(clf, images_dir, progress=False).report
    cascade = report["cascade"]
    assert cascade["fast"] == "catdog-lite0" and cascade["fast_answers"] + cascade["slow_answers"] == 6
    assert cascade["slow_share"] == pytest.approx(cascade["slow_answers"] / 6)
    assert report["accuracy"] == 1.0
