"""The RunInference model handler: batching, one row per tensor, one model per process."""

from __future__ import annotations

import pickle

import pytest

pytest.importorskip("apache_beam", reason="needs the bulk extra: pip install -e '.[bulk]' (scripts/test.sh does)")

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.testing.util import assert_that, equal_to

from catdog.bulk.handler import ClassifierHandler, ModelSpec, shared_classifier
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS

SPEC = ModelSpec(threads=1)
PHOTOS = CAT_PHOTOS + DOG_PHOTOS

#: Sizes of the batches ClassifierHandler.run_inference received, in this process. The
#: local runner runs the pipeline in the test's own process, so a subclass can record here.
SEEN_BATCHES: list[int] = []


class RecordingHandler(ClassifierHandler):
    def run_inference(self, batch, model, inference_args=None):
        SEEN_BATCHES.append(len(batch))
        return super().run_inference(batch, model, inference_args)


@pytest.fixture(scope="module")
def tensors():
    clf = shared_classifier(SPEC)
    return [clf.prepare(p.read_bytes()) for p in PHOTOS]


def test_the_batch_size_is_fixed_for_beams_batching():
    assert ClassifierHandler(SPEC, batch_size=5).batch_elements_kwargs() == {"min_batch_size": 5, "max_batch_size": 5}
    with pytest.raises(ValueError):
        ClassifierHandler(SPEC, batch_size=0)


def test_run_inference_gives_one_row_per_tensor_in_order(tensors):
    handler = ClassifierHandler(SPEC, batch_size=len(tensors))
    clf = handler.load_model()
    rows = list(handler.run_inference(tensors, clf))
    assert len(rows) == len(PHOTOS)
    labels = list(clf.labels)
    for photo, row in zip(PHOTOS, rows):
        single = clf.predict(photo).to_dict()  # one photo at a time, the API's path
        assert row["label"] == single["label"]
        assert list(row["probabilities"]) == labels
        assert row["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
        assert row["confidence"] == pytest.approx(single["confidence"], abs=1e-5)
        assert row["sure"] == single["sure"]
        assert row["model"] == {"name": clf.recipe.name, "version": clf.recipe.version}
    # The fixture photos are unambiguous: their folder is the right answer.
    assert [r["label"] for r in rows] == [p.parent.name for p in PHOTOS]


def test_the_size_of_a_batch_is_its_tensors_bytes(tensors):
    handler = ClassifierHandler(SPEC)
    assert handler.get_num_bytes(tensors[:3]) == 3 * tensors[0].nbytes


@pytest.mark.slow
def test_runinference_feeds_the_handler_batches_of_the_configured_size(tensors):
    """Seven tensors, batches of three: 3 + 3 + 1, every row keyed by its path."""
    keyed = [(f"photo-{i}", tensors[i % len(tensors)]) for i in range(7)]
    clf = shared_classifier(SPEC)
    expected = [(key, clf.decide(clf.probabilities(t[None])[0]).label) for key, t in keyed]
    SEEN_BATCHES.clear()
    with beam.Pipeline(runner="DirectRunner") as p:
        labels = (p | beam.Create(keyed)
                  | RunInference(KeyedModelHandler(RecordingHandler(SPEC, batch_size=3)))
                  | beam.MapTuple(lambda key, row: (key, row["label"])))
        assert_that(labels, equal_to(expected))
    assert sum(SEEN_BATCHES) == 7
    assert max(SEEN_BATCHES) == 3
    # Only the last batch of a bundle may be short.
    assert sorted(SEEN_BATCHES).count(3) >= len(SEEN_BATCHES) - 1, SEEN_BATCHES


def test_a_process_loads_each_model_once():
    assert shared_classifier(SPEC) is shared_classifier(ModelSpec(threads=1))
    handler = ClassifierHandler(SPEC)
    assert handler.load_model() is shared_classifier(SPEC)


def test_the_handler_pickles_without_a_model():
    """Beam ships the handler to every worker: it must carry the spec, never a loaded model."""
    handler = ClassifierHandler(SPEC, batch_size=8)
    shared_classifier(SPEC)
    clone = pickle.loads(pickle.dumps(handler))
    assert clone.spec == SPEC and clone.batch_size == 8
    assert len(pickle.dumps(handler)) < 10_000


def test_unset_fields_come_from_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("CATDOG_THREADS", "3")
    monkeypatch.setenv("CATDOG_MODEL", str(tmp_path))
    spec = ModelSpec().resolved()
    assert spec.threads == 3 and spec.model == str(tmp_path)
    assert ModelSpec(model="m.onnx", threads=1).resolved().model == "m.onnx"



def test_a_cascade_model_runs_through_the_handler(mixed_cascade_dir):
    """catdog bulk follows a cascade without knowing it: the handler calls Classifier.probabilities."""
    from tests.cascades import PHOTOS as MIXED

    handler = ClassifierHandler(ModelSpec(model=str(mixed_cascade_dir), threads=1), batch_size=len(MIXED))
    clf = handler.load_model()
    assert clf.cascade is not None
    before = sum(clf.cascade.counts())
    rows = list(handler.run_inference([clf.prepare(p) for p in MIXED], clf))
    fast, slow = clf.cascade.counts()
    assert fast + slow - before == len(MIXED) and fast > 0 and slow > 0
    assert [r["label"] for r in rows] == [p.label for p in clf.predict_batch(MIXED)]
    assert rows[0]["model"]["name"] == "catdog-lite2-v1-cascade"
