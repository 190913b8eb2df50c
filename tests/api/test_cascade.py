"""A cascade model served by the API, chosen with CATDOG_MODEL like any model: answers,
/v1/model's live counts of each path and the Prometheus counter."""

from __future__ import annotations

import io

import pytest

from catdog.api import create_app
from tests.api.test_operations import metric
from tests.api.test_predict import upload
from tests.cascades import PHOTOS


def client_of(model, monkeypatch):
    for name in ("CATDOG_API_KEYS", "CATDOG_RATE_LIMIT", "CATDOG_CORS_ORIGINS", "CATDOG_MAX_UPLOAD_MB",
                 "CATDOG_OPEN_WORLD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CATDOG_MODEL", str(model))
    monkeypatch.setenv("CATDOG_THREADS", "1")
    return create_app().test_client()


@pytest.fixture
def cascade_client(mixed_cascade_dir, monkeypatch):
    return client_of(mixed_cascade_dir, monkeypatch)


def test_predict_with_a_cascade_model(cascade_client):
    before = cascade_client.get("/v1/model").json
    assert before["name"] == "catdog-lite2-v1-cascade" and before["labels"] == ["cat", "dog"]
    assert before["cascade"]["fast"] == "catdog-lite0" and before["cascade"]["fast_answers"] == 0
    for photo in PHOTOS:
        response = cascade_client.post("/v1/predict", data=upload(photo.read_bytes()))
        assert response.status_code == 200, response.json
        if photo.parent.name in ("cat", "dog"):
            assert response.json["label"] == photo.parent.name
        assert response.json["model"]["name"] == "catdog-lite2-v1-cascade"
    counts = cascade_client.get("/v1/model").json["cascade"]
    assert counts["fast_answers"] + counts["slow_answers"] == len(PHOTOS)
    assert counts["fast_answers"] > 0 and counts["slow_answers"] > 0
    text = cascade_client.get("/metrics").get_data(as_text=True)
    assert metric(text, "catdog_cascade_answers_total", path="fast") == counts["fast_answers"]
    assert metric(text, "catdog_cascade_answers_total", path="slow") == counts["slow_answers"]


def test_a_batch_goes_through_the_cascade_too(cascade_client):
    files = [(io.BytesIO(photo.read_bytes()), photo.name) for photo in PHOTOS]
    response = cascade_client.post("/v1/predict/batch", data={"images": files})
    assert response.status_code == 200, response.json
    labels = [r["label"] for r in response.json["results"]]
    assert [label for photo, label in zip(PHOTOS, labels) if photo.parent.name in ("cat", "dog")] == \
        [photo.parent.name for photo in PHOTOS if photo.parent.name in ("cat", "dog")]
    counts = cascade_client.get("/v1/model").json["cascade"]
    assert counts["fast_answers"] + counts["slow_answers"] == len(PHOTOS)


def test_the_bundled_model_is_a_cascade_and_a_single_model_says_it_is_not(client, monkeypatch):
    """The default (2.2.0) counts its fast and slow answers; models/catdog-lite2-single, its
    accurate network alone, has no cascade."""
    from pathlib import Path

    cascade = client.get("/v1/model").json["cascade"]
    assert cascade["fast"] == "catdog-lite0-open" and 0.5 < cascade["handoff"] < 1
    single = client_of(Path(__file__).parents[2] / "models" / "catdog-lite2-single", monkeypatch)
    assert single.get("/v1/model").json["cascade"] is None
    single.post("/v1/predict", data=upload(PHOTOS[0].read_bytes()))
    assert metric(single.get("/metrics").get_data(as_text=True), "catdog_cascade_answers_total") == 0


def test_the_single_model_reads_the_bundled_networks_own_recipe():
    """models/catdog-lite2-single links to the bundled accurate network's file, so its recipe
    must be that network's (a retrained default once left it reading the previous one's
    temperature and threshold): the same version and calibration, without the cascade."""
    import json
    from pathlib import Path

    root = Path(__file__).parents[2]
    single_dir = root / "models" / "catdog-lite2-single"
    bundled = json.loads((root / "src" / "catdog" / "models" / "catdog-lite2" / "model.json").read_text())
    single = json.loads((single_dir / "model.json").read_text())
    assert (single_dir / "model.onnx").resolve() == (root / "src" / "catdog" / "models" / "catdog-lite2" /
                                                     "model.onnx").resolve()
    assert "cascade" not in single
    for key in ("version", "temperature", "other_threshold", "labels", "input", "sure_level"):
        assert single[key] == bundled[key], key
